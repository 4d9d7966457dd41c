/**
 * The workers a policy routes to, expanded into (worker, dp_rank) candidates with owner ids from
 * the shared OwnerTable, plus the resolution of pinned targets and request-level ranks.
 */
import { KvEventError } from '../kv/errors.ts';
import { isDpRank, type RouterEvent, type WorkerId } from '../kv/events.ts';
import type { OwnerTable } from '../kv/owners.ts';
import { isU64 } from '../tokens/u64.ts';
import { InvalidWorkerError, NoWorkersError, RankOutOfRangeError, UnknownWorkerError } from './errors.ts';
import type { RouteOptions, WorkerRegistration } from './policy.ts';

export const MAX_DATA_PARALLEL_SIZE = 65_536;

export interface RegisteredWorker {
  readonly workerId: WorkerId;
  readonly dataParallelSize: number;
  readonly blockSize: number;
  readonly totalKvBlocks: number | undefined;
  readonly maxNumBatchedTokens: number | undefined;
  readonly maxNumSeqs: number | undefined;
  /** Owner id of each rank, index = dp_rank. */
  readonly owners: Int32Array;
}

function optionalPositiveInt(value: unknown, field: string, workerId: WorkerId): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0)
    throw new InvalidWorkerError(
      `worker ${workerId}: ${field} must be a positive integer, got ${String(value)}`,
    );
  return value;
}

export class WorkerRegistry {
  private readonly workers = new Map<WorkerId, RegisteredWorker>();
  private all = new Int32Array(16);
  private allCount = 0;
  private scratch = new Int32Array(16);
  private resolvedOwners: Int32Array = this.all;

  constructor(
    readonly owners: OwnerTable,
    readonly blockSize: number,
  ) {}

  get size(): number {
    return this.workers.size;
  }

  get(workerId: WorkerId): RegisteredWorker | undefined {
    return this.workers.get(workerId);
  }

  values(): IterableIterator<RegisteredWorker> {
    return this.workers.values();
  }

  /** Validates a registration into a RegisteredWorker (owner ids interned). Does not store it. */
  build(workerId: WorkerId, registration: WorkerRegistration): RegisteredWorker {
    if (!isU64(workerId))
      throw new InvalidWorkerError(`worker id must be a u64 bigint, got ${String(workerId)}`);
    const size = registration?.dataParallelSize;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > MAX_DATA_PARALLEL_SIZE)
      throw new InvalidWorkerError(
        `worker ${workerId}: dataParallelSize must be an integer in [1, ${MAX_DATA_PARALLEL_SIZE}], got ${String(size)}`,
      );
    const blockSize = optionalPositiveInt(registration.blockSize, 'blockSize', workerId) ?? this.blockSize;
    if (blockSize !== this.blockSize)
      throw new InvalidWorkerError(
        `worker ${workerId}: block size ${blockSize} differs from the router's ${this.blockSize}`,
      );
    const totalKvBlocks = optionalPositiveInt(registration.totalKvBlocks, 'totalKvBlocks', workerId);
    const maxNumBatchedTokens = optionalPositiveInt(
      registration.maxNumBatchedTokens,
      'maxNumBatchedTokens',
      workerId,
    );
    const maxNumSeqs = optionalPositiveInt(registration.maxNumSeqs, 'maxNumSeqs', workerId);
    const owners = new Int32Array(size);
    for (let rank = 0; rank < size; rank++) owners[rank] = this.owners.intern(workerId, rank);
    return {
      workerId,
      dataParallelSize: size,
      blockSize,
      totalKvBlocks,
      maxNumBatchedTokens,
      maxNumSeqs,
      owners,
    };
  }

  set(worker: RegisteredWorker): void {
    this.workers.set(worker.workerId, worker);
    this.rebuild();
  }

  delete(workerId: WorkerId): boolean {
    const removed = this.workers.delete(workerId);
    if (removed) this.rebuild();
    return removed;
  }

  /** Every live (worker, rank) owner id, in registration then rank order. */
  get candidates(): Int32Array {
    return this.all;
  }

  get candidateCount(): number {
    return this.allCount;
  }

  /** The owner of (workerId, dpRank), validating both. */
  ownerOf(workerId: WorkerId, dpRank: number): number {
    const worker = this.workers.get(workerId);
    if (worker === undefined) throw new UnknownWorkerError(workerId);
    checkRank(dpRank, worker);
    return worker.owners[dpRank];
  }

  /** Owner ids found by the last resolve(), valid until the next call. */
  get resolved(): Int32Array {
    return this.resolvedOwners;
  }

  /**
   * How many candidates a request may go to under its options; their owner ids are in
   * `resolved[0..count)`. Throws NoWorkers / UnknownWorker / RankOutOfRange.
   */
  resolve(options: RouteOptions | undefined): number {
    if (this.workers.size === 0) throw new NoWorkersError();
    const pinned = options?.pinned;
    const requestRank = options?.dpRank;
    if (requestRank !== undefined && !isDpRank(requestRank))
      throw new RankOutOfRangeError(`dpRank must be a non-negative integer, got ${String(requestRank)}`);
    if (pinned !== undefined) {
      const worker = this.workers.get(pinned.workerId);
      if (worker === undefined) throw new UnknownWorkerError(pinned.workerId);
      const rank = pinned.dpRank !== undefined ? pinned.dpRank : requestRank;
      if (rank !== undefined) {
        checkRank(rank, worker);
        this.scratch[0] = worker.owners[rank];
        this.resolvedOwners = this.scratch;
        return 1;
      }
      if (this.scratch.length < worker.owners.length) this.scratch = new Int32Array(worker.owners.length * 2);
      this.scratch.set(worker.owners);
      this.resolvedOwners = this.scratch;
      return worker.owners.length;
    }
    if (requestRank === undefined) {
      this.resolvedOwners = this.all;
      return this.allCount;
    }
    let count = 0;
    if (this.scratch.length < this.workers.size) this.scratch = new Int32Array(this.workers.size * 2);
    for (const worker of this.workers.values())
      if (requestRank < worker.dataParallelSize) this.scratch[count++] = worker.owners[requestRank];
    if (count === 0) throw new RankOutOfRangeError(`no registered worker has dp_rank ${requestRank}`);
    this.resolvedOwners = this.scratch;
    return count;
  }

  /** Null when the event targets a registered worker and one of its ranks, else a coded error. */
  checkEvent(event: RouterEvent): KvEventError | null {
    if (
      typeof event !== 'object' ||
      event === null ||
      typeof event.event !== 'object' ||
      event.event === null
    )
      return new KvEventError('KV_INVALID_EVENT', 'event must be a RouterEvent object');
    const worker = this.workers.get(event.workerId);
    if (worker === undefined)
      return new KvEventError('KV_UNKNOWN_WORKER', `event for unregistered worker ${String(event.workerId)}`);
    const rank = event.event.dpRank;
    if (!isDpRank(rank) || rank >= worker.dataParallelSize)
      return new KvEventError(
        'KV_RANK_OUT_OF_RANGE',
        `event dp_rank ${String(rank)} is outside [0, ${worker.dataParallelSize}) for worker ${event.workerId}`,
      );
    return null;
  }

  private rebuild(): void {
    let total = 0;
    for (const worker of this.workers.values()) total += worker.dataParallelSize;
    if (this.all.length < total) this.all = new Int32Array(total * 2);
    let i = 0;
    for (const worker of this.workers.values()) for (const owner of worker.owners) this.all[i++] = owner;
    this.allCount = total;
  }
}

export function checkRank(dpRank: unknown, worker: RegisteredWorker): asserts dpRank is number {
  if (!isDpRank(dpRank) || dpRank >= worker.dataParallelSize)
    throw new RankOutOfRangeError(
      `dp_rank ${String(dpRank)} is outside [0, ${worker.dataParallelSize}) for worker ${worker.workerId}`,
    );
}
