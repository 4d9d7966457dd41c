/**
 * Interns (worker, dp_rank) pairs as small dense integers ("owner ids"), so indexers and the router
 * can keep per-owner state in typed arrays and share one numbering. Ids are reused after release.
 */
import type { WorkerId, WorkerRank } from './events.ts';

export class OwnerTable {
  private readonly byWorker = new Map<WorkerId, Map<number, number>>();
  private workers: (WorkerId | undefined)[] = [];
  private ranks: number[] = [];
  private readonly free: number[] = [];

  /** The owner id of (workerId, dpRank), creating it if needed. */
  intern(workerId: WorkerId, dpRank: number): number {
    let ranks = this.byWorker.get(workerId);
    if (ranks === undefined) {
      ranks = new Map();
      this.byWorker.set(workerId, ranks);
    }
    const existing = ranks.get(dpRank);
    if (existing !== undefined) return existing;
    const id = this.free.length > 0 ? this.free.pop()! : this.workers.length;
    this.workers[id] = workerId;
    this.ranks[id] = dpRank;
    ranks.set(dpRank, id);
    return id;
  }

  /** The owner id of (workerId, dpRank), or -1 when it was never interned. */
  find(workerId: WorkerId, dpRank: number): number {
    return this.byWorker.get(workerId)?.get(dpRank) ?? -1;
  }

  /** Owner ids of every rank of a worker that has been interned. */
  ownersOf(workerId: WorkerId): number[] {
    const ranks = this.byWorker.get(workerId);
    return ranks === undefined ? [] : [...ranks.values()];
  }

  workerOf(owner: number): WorkerId {
    const worker = this.workers[owner];
    if (worker === undefined) throw new RangeError(`owner ${owner} is not live`);
    return worker;
  }

  rankOf(owner: number): number {
    return this.ranks[owner];
  }

  pairOf(owner: number): WorkerRank {
    return { workerId: this.workerOf(owner), dpRank: this.ranks[owner] };
  }

  isLive(owner: number): boolean {
    return this.workers[owner] !== undefined;
  }

  /** One past the largest id ever handed out: size per-owner typed arrays with this. */
  get capacity(): number {
    return this.workers.length;
  }

  /** Forgets every rank of a worker; returns the released owner ids. */
  releaseWorker(workerId: WorkerId): number[] {
    const ranks = this.byWorker.get(workerId);
    if (ranks === undefined) return [];
    this.byWorker.delete(workerId);
    const released = [...ranks.values()];
    for (const id of released) {
      this.workers[id] = undefined;
      this.free.push(id);
    }
    return released;
  }

  *live(): IterableIterator<number> {
    for (let id = 0; id < this.workers.length; id++) if (this.workers[id] !== undefined) yield id;
  }
}
