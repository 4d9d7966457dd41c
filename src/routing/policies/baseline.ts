/**
 * Shared machinery of the baseline policies (round-robin, random, power-of-two, least-loaded,
 * cache-aware): the same worker registry, pinning rules, coded errors and load tracking as the KV
 * router, so the trace replay can swap policies. Baselines do not hash for load: a request counts
 * its prompt tokens until prefill completes and ceil(isl / block_size) undeduplicated blocks until
 * it is freed.
 */
import type { KvEventError } from '../../kv/errors.ts';
import type { RouterEvent, WorkerId } from '../../kv/events.ts';
import { OwnerTable } from '../../kv/owners.ts';
import type { Clock } from '../../util/clock.ts';
import { realClock } from '../../util/clock.ts';
import { ActiveSequences } from '../active-sequences.ts';
import { checkOverrides } from '../config.ts';
import { DuplicateRequestError } from '../errors.ts';
import type {
  PolicyName,
  RankLoad,
  RouteOptions,
  RoutingDecision,
  RoutingPolicy,
  WorkerRegistration,
} from '../policy.ts';
import { mathRandom, type RandomSource, randomIndex } from '../random.ts';
import { checkRequestId, checkTokens } from '../request-input.ts';
import { WorkerRegistry } from '../worker-registry.ts';

export interface BaselinePolicyOptions {
  readonly blockSize?: number;
  readonly staleRequestSecs?: number;
  readonly clock?: Clock;
  readonly random?: RandomSource;
  readonly owners?: OwnerTable;
}

export abstract class BaselinePolicy implements RoutingPolicy {
  abstract readonly name: PolicyName;
  readonly owners: OwnerTable;
  readonly blockSize: number;
  protected readonly registry: WorkerRegistry;
  protected readonly active: ActiveSequences;
  protected readonly random: RandomSource;
  protected readonly clock: Clock;
  private eventsRejected = 0;

  constructor(options: BaselinePolicyOptions = {}) {
    this.blockSize = options.blockSize ?? 16;
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? mathRandom;
    this.owners = options.owners ?? new OwnerTable();
    this.registry = new WorkerRegistry(this.owners, this.blockSize);
    this.active = new ActiveSequences({ clock: this.clock, staleRequestSecs: options.staleRequestSecs });
  }

  get workerCount(): number {
    return this.registry.size;
  }

  addWorker(workerId: WorkerId, registration: WorkerRegistration): void {
    const existing = this.registry.get(workerId);
    if (existing !== undefined && existing.dataParallelSize !== registration?.dataParallelSize)
      this.removeWorker(workerId);
    this.registry.set(this.registry.build(workerId, registration));
    this.active.ensureOwners(this.owners.capacity);
  }

  removeWorker(workerId: WorkerId): boolean {
    const worker = this.registry.get(workerId);
    if (worker === undefined) return false;
    this.forgetWorker(workerId);
    for (const owner of worker.owners) this.active.removeOwner(owner);
    this.registry.delete(workerId);
    this.owners.releaseWorker(workerId);
    return true;
  }

  bestWorker(tokens: ArrayLike<number>, options?: RouteOptions): RoutingDecision {
    return this.decide(tokens, options, false);
  }

  route(requestId: string, tokens: ArrayLike<number>, options?: RouteOptions): RoutingDecision {
    checkRequestId(requestId);
    if (this.active.has(requestId)) throw new DuplicateRequestError(requestId);
    const decision = this.decide(tokens, options, true);
    const owner = this.owners.find(decision.workerId, decision.dpRank);
    const isl = tokens.length;
    this.active.add(requestId, owner, {
      prefillTokens: Math.max(0, isl - decision.overlapBlocks * this.blockSize),
      unsharedBlocks: Math.ceil(isl / this.blockSize),
    });
    return decision;
  }

  markPrefillCompleted(requestId: string): boolean {
    return this.active.markPrefillCompleted(requestId);
  }

  free(requestId: string): boolean {
    return this.active.free(requestId);
  }

  /** Baselines do not use KV events; they are checked (worker, rank) and otherwise ignored. */
  applyEvent(event: RouterEvent): KvEventError | null {
    const error = this.registry.checkEvent(event);
    if (error !== null) this.eventsRejected++;
    return error;
  }

  get rejectedEvents(): number {
    return this.eventsRejected;
  }

  loads(): RankLoad[] {
    const out: RankLoad[] = [];
    for (const worker of this.registry.values())
      for (let rank = 0; rank < worker.dataParallelSize; rank++) {
        const owner = worker.owners[rank];
        out.push({
          workerId: worker.workerId,
          dpRank: rank,
          activeDecodeBlocks: this.active.activeBlocks(owner),
          activePrefillTokens: this.active.activePrefillTokens(owner),
          activeRequests: this.active.activeRequests(owner),
        });
      }
    return out;
  }

  /**
   * Picks a candidate index in [0, count). `commit` is false for bestWorker (no state may change).
   * `overlapBlocks` of the answer comes from lastOverlap (0 unless the policy indexes prompts).
   */
  protected abstract choose(
    tokens: ArrayLike<number>,
    candidates: Int32Array,
    count: number,
    commit: boolean,
  ): number;

  /** Leading blocks the policy believes the chosen candidate holds (set by choose). */
  protected lastOverlap = 0;

  /** Drops per-worker policy state (e.g. a prefix tree); called before the owners are released. */
  protected forgetWorker(_workerId: WorkerId): void {}

  /** The router's load estimate of a rank in blocks: active blocks + prefill tokens / block size. */
  protected blockLoad(owner: number): number {
    return this.active.activeBlocks(owner) + this.active.activePrefillTokens(owner) / this.blockSize;
  }

  /** Index of the candidate with the lowest `load`, ties broken uniformly at random. */
  protected leastLoaded(candidates: Int32Array, count: number, load: (owner: number) => number): number {
    let best = 0;
    let bestLoad = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (let i = 0; i < count; i++) {
      const value = load(candidates[i]);
      if (value < bestLoad) {
        bestLoad = value;
        best = i;
        ties = 1;
      } else if (value === bestLoad && randomIndex(this.random, ++ties) === 0) {
        best = i; // reservoir sampling over the tied candidates
      }
    }
    return best;
  }

  private decide(
    tokens: ArrayLike<number>,
    options: RouteOptions | undefined,
    commit: boolean,
  ): RoutingDecision {
    if (options?.overrides !== undefined) checkOverrides(options.overrides);
    const count = this.registry.resolve(options);
    const candidates = this.registry.resolved;
    checkTokens(tokens);
    this.lastOverlap = 0;
    const index =
      count === 1 && !this.needsChoiceForSingle() ? 0 : this.choose(tokens, candidates, count, commit);
    const owner = candidates[index];
    return {
      workerId: this.owners.workerOf(owner),
      dpRank: this.owners.rankOf(owner),
      overlapBlocks: this.lastOverlap,
    };
  }

  /** Whether choose() must run even with one candidate (to learn from it). */
  protected needsChoiceForSingle(): boolean {
    return false;
  }
}
