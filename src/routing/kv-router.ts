/**
 * KvRouter: KV-cache-aware, data-parallel-aware choice of (worker, dp_rank) (Dynamo's KvRouter +
 * scheduler). Scores every rank of every registered worker with
 * `cost = overlap_weight × prefill_blocks + decode_blocks` and tracks the load it adds, where
 * `prefill_blocks = (uncached prompt tokens + prefill_queue_weight × queued prefill tokens) / block_size`
 * (prefill_queue_weight 1 = Dynamo's cost).
 *
 * The hot path (route / bestWorker) hashes into reused buffers, walks the indexer, and scores into
 * preallocated typed arrays: no bigint arithmetic and no allocation per candidate.
 */
import { type KvErrorCode, KvEventError } from '../kv/errors.ts';
import { isDpRank, type RouterEvent, type WorkerId } from '../kv/events.ts';
import type { KvIndexer, OverlapScores } from '../kv/indexer.ts';
import { OwnerTable } from '../kv/owners.ts';
import { BlockHasher } from '../tokens/block-hash.ts';
import type { Clock } from '../util/clock.ts';
import { realClock } from '../util/clock.ts';
import { ActiveSequences } from './active-sequences.ts';
import {
  checkOverrides,
  type KvRouterConfig,
  type KvRouterConfigInput,
  parseRouterConfig,
} from './config.ts';
import { DuplicateRequestError, InvalidTokensError } from './errors.ts';
import { createDecisionIndexer, createEventIndexer, type DecisionIndexer } from './indexers.ts';
import { LoadOrder } from './load-order.ts';
import type {
  PolicyName,
  RankLoad,
  RouteOptions,
  RoutingDecision,
  RoutingPolicy,
  WorkerRegistration,
} from './policy.ts';
import { mathRandom, type RandomSource } from './random.ts';
import { checkRequestId, TokenBuffer } from './request-input.ts';
import { CostSelector, routingCost } from './selection.ts';
import { WorkerRegistry } from './worker-registry.ts';

/** Below this many candidates, scoring them all is as cheap as reading the load order. */
const FAST_SCAN_MIN_CANDIDATES = 16;

export interface KvRouterDeps {
  readonly clock?: Clock;
  readonly random?: RandomSource;
  /** Shared owner numbering (the router creates one when absent). */
  readonly owners?: OwnerTable;
  /** Event-mode indexer sharing `owners` (default: the radix tree). Ignored in approximate mode. */
  readonly indexer?: KvIndexer;
  readonly hasher?: BlockHasher;
  /**
   * Score every candidate on every decision instead of reading the least loaded ones from the load
   * order (same decisions, slower: the reference the fast path is tested against).
   */
  readonly scanAllCandidates?: boolean;
}

/** Load-tracking changes, as replica sync publishes them (Dynamo's ActiveSequenceEvent data). */
export type SequenceEvent =
  | {
      readonly kind: 'add';
      readonly requestId: string;
      readonly workerId: WorkerId;
      readonly dpRank: number;
      /** Packed [lo, hi] sequence hashes the load tracker deduplicates on; null = none. */
      readonly blocks: Uint32Array | null;
      /** Blocks counted without deduplication (KV reuse not assumed). */
      readonly unsharedBlocks: number;
      readonly isl: number;
      readonly overlapBlocks: number;
    }
  | {
      readonly kind: 'prefill_completed';
      readonly requestId: string;
      readonly workerId: WorkerId;
      readonly dpRank: number;
    }
  | {
      readonly kind: 'free';
      readonly requestId: string;
      readonly workerId: WorkerId;
      readonly dpRank: number;
    };

/**
 * A prompt already cut into blocks and hashed (e.g. hashed once by a frontend that routes both its
 * prefill and decode, or a trace that carries block hashes): packed [lo, hi] pairs.
 */
export interface HashedPrompt {
  /** Prompt length in tokens (the trailing partial block counts for prefill). */
  readonly isl: number;
  /** Local block hashes (tokens_hash), floor(isl / block_size) pairs. */
  readonly localHashes: Uint32Array;
  /** Rolling sequence hashes, same length; computed from localHashes when absent. */
  readonly sequenceHashes?: Uint32Array;
}

export interface CandidateLoad {
  readonly workerId: WorkerId;
  readonly dpRank: number;
  readonly overlapBlocks: number;
  /** Prompt tokens left to prefill there with this request added, plus the rank's active ones. */
  readonly prefillTokens: number;
  /** This request's blocks not already active there, plus the rank's active blocks. */
  readonly decodeBlocks: number;
  readonly cost: number;
}

export interface KvRouterMetrics {
  /** route() calls that tracked a request. */
  readonly decisions: number;
  /** bestWorker() calls. */
  readonly queries: number;
  /** Decisions that honoured a pinned worker. */
  readonly pinnedDecisions: number;
  readonly eventsApplied: number;
  readonly eventErrors: Readonly<Partial<Record<KvErrorCode, number>>>;
  readonly replicaEventsApplied: number;
  readonly replicaEventsRejected: number;
  readonly trackedRequests: number;
}

export class KvRouter implements RoutingPolicy {
  readonly name: PolicyName = 'kv';
  readonly config: KvRouterConfig;
  readonly owners: OwnerTable;
  /** The index that scores overlaps: engine events, or the router's own decisions (approximate). */
  readonly indexer: KvIndexer;
  readonly hasher: BlockHasher;

  private readonly approximate: DecisionIndexer | null;
  private readonly predicted: DecisionIndexer | null;
  private readonly registry: WorkerRegistry;
  private readonly active: ActiveSequences;
  private readonly selector: CostSelector;
  private readonly tokens = new TokenBuffer();
  private sequenceListener: ((event: SequenceEvent) => void) | null = null;

  // Per-decision scratch (grown, never shrunk).
  private localScratch = new Uint32Array(1024);
  private sequenceScratch = new Uint32Array(1024);
  /** Views of the scratch buffers at the current block count (rebuilt when it changes). */
  private localView: Uint32Array = this.localScratch.subarray(0, 0);
  private sequenceView: Uint32Array = this.sequenceScratch.subarray(0, 0);
  private overlapByOwner = new Int32Array(64);
  /** All zeros: the held blocks when active blocks are not deduplicated. */
  private noneHeld = new Int32Array(64);
  /** Owners with a non-zero overlapByOwner entry, listed once. */
  private overlapOwners = new Int32Array(64);
  private overlapOwnerCount = 0;
  private touchStamp = new Int32Array(64);
  private touchStampValue = 0;
  private readonly loadOrder = new LoadOrder();
  /** leastCostOwner scratch: the owners it scores, and those at the lowest cost. */
  private picked = new Int32Array(64);
  private tied = new Int32Array(64);
  /** Index of each registered owner in registry.candidates (the order select() sees them in). */
  private candidatePosition = new Int32Array(64);
  private readonly scanAll: boolean;
  private costs = new Float64Array(64);
  private decodeBlocks = new Float64Array(64);
  private prefillTokens = new Float64Array(64);
  private candidateOwners: Int32Array = new Int32Array(0);
  private readonly treeSizeOfCandidate = (candidate: number): number =>
    this.indexer.treeSize(this.candidateOwners[candidate]);

  // The decision being computed.
  private local: Uint32Array = this.localScratch;
  private blockCount = 0;
  private isl = 0;
  private sequence: Uint32Array | null = null;
  /** Per-owner leading blocks of the current request already active there (null: not matched). */
  private heldDepths: Int32Array | null = null;
  /** assumeKvReuse for the current decision (config or per-request override). */
  private reuse = true;
  /** overlapScoreWeight for the current decision. */
  private weight = 1;
  /** Blocks of the current request that count as decode load (0 when blocks are not tracked). */
  private requestBlocks = 0;

  // Metrics.
  private decisions = 0;
  private queries = 0;
  private pinnedDecisions = 0;
  private eventsApplied = 0;
  private readonly eventErrors = new Map<KvErrorCode, number>();
  private replicaEventsApplied = 0;
  private replicaEventsRejected = 0;

  constructor(config: KvRouterConfigInput | KvRouterConfig = {}, deps: KvRouterDeps = {}) {
    this.config = parseRouterConfig(config);
    const clock = deps.clock ?? realClock;
    const random = deps.random ?? mathRandom;
    this.owners = deps.owners ?? deps.indexer?.owners ?? new OwnerTable();
    if (deps.indexer !== undefined && deps.indexer.owners !== this.owners)
      throw new TypeError('the indexer must share the router’s OwnerTable');
    this.hasher = deps.hasher ?? new BlockHasher({ blockSize: this.config.blockSize });
    if (this.hasher.blockSize !== this.config.blockSize)
      throw new TypeError(
        `hasher block size ${this.hasher.blockSize} ≠ router block size ${this.config.blockSize}`,
      );
    const decisionOptions = {
      owners: this.owners,
      clock,
      maxTreeSize: this.config.maxTreeSize,
      pruneTargetRatio: this.config.pruneTargetRatio,
    };
    if (this.config.useKvEvents) {
      this.approximate = null;
      this.indexer = deps.indexer ?? createEventIndexer(this.owners);
      const predictedTtl = this.config.predictedTtlSecs;
      this.predicted =
        predictedTtl === null ? null : createDecisionIndexer({ ...decisionOptions, ttlSecs: predictedTtl });
    } else {
      this.approximate = createDecisionIndexer({ ...decisionOptions, ttlSecs: this.config.ttlSecs });
      this.indexer = this.approximate;
      this.predicted = null;
    }
    this.registry = new WorkerRegistry(this.owners, this.config.blockSize);
    this.active = new ActiveSequences({ clock, staleRequestSecs: this.config.staleRequestSecs });
    this.selector = new CostSelector(random);
    this.scanAll = deps.scanAllCandidates === true;
  }

  // ---- workers ------------------------------------------------------------------------------

  get workerCount(): number {
    return this.registry.size;
  }

  /**
   * Registers a worker and its ranks [0, dataParallelSize). Re-registering with the same size
   * updates its metadata; a different size is a new registration (old state dropped first).
   */
  addWorker(workerId: WorkerId, registration: WorkerRegistration): void {
    const existing = this.registry.get(workerId);
    if (existing !== undefined && existing.dataParallelSize !== registration?.dataParallelSize)
      this.removeWorker(workerId);
    const worker = this.registry.build(workerId, registration);
    this.registry.set(worker);
    this.active.ensureOwners(this.owners.capacity);
    for (const owner of worker.owners) this.loadOrder.set(owner, this.loadKey(owner));
    this.indexCandidates();
  }

  /** Refreshes candidatePosition after the registry changed. */
  private indexCandidates(): void {
    const candidates = this.registry.candidates;
    const count = this.registry.candidateCount;
    if (this.candidatePosition.length < this.owners.capacity)
      this.candidatePosition = new Int32Array(this.owners.capacity * 2);
    for (let i = 0; i < count; i++) this.candidatePosition[candidates[i]] = i;
  }

  /** Drops the index entries of one rank of a worker (before a dump of that rank is ingested). */
  resetRank(workerId: WorkerId, dpRank: number): void {
    this.indexer.removeRank(workerId, dpRank);
  }

  /** Drops the worker's index entries, predicted blocks and load for every rank. */
  removeWorker(workerId: WorkerId): boolean {
    const worker = this.registry.get(workerId);
    this.indexer.removeWorker(workerId);
    this.predicted?.removeWorker(workerId);
    if (worker === undefined) return false;
    for (const owner of worker.owners) {
      this.active.removeOwner(owner);
      this.loadOrder.delete(owner);
    }
    this.registry.delete(workerId);
    this.indexCandidates();
    this.owners.releaseWorker(workerId);
    return true;
  }

  // ---- routing --------------------------------------------------------------------------------

  /** The (worker, rank) this router would pick now; changes no state. */
  bestWorker(tokens: ArrayLike<number>, options?: RouteOptions): RoutingDecision {
    return this.query(tokens, null, options);
  }

  /** bestWorker for a prompt hashed by the caller. */
  bestWorkerHashed(prompt: HashedPrompt, options?: RouteOptions): RoutingDecision {
    return this.query(null, prompt, options);
  }

  /** Picks a (worker, rank) and tracks the request's load there. */
  route(requestId: string, tokens: ArrayLike<number>, options?: RouteOptions): RoutingDecision {
    return this.commit(requestId, tokens, null, options);
  }

  /** route for a prompt hashed by the caller. */
  routeHashed(requestId: string, prompt: HashedPrompt, options?: RouteOptions): RoutingDecision {
    return this.commit(requestId, null, prompt, options);
  }

  /** Hashes tokens the way the router does (copies; for callers that route one prompt twice). */
  hashPrompt(tokens: ArrayLike<number>): HashedPrompt {
    const input = this.tokens.read(tokens);
    const blocks = this.hasher.blockCount(input.length);
    const localHashes = new Uint32Array(2 * blocks);
    const sequenceHashes = new Uint32Array(2 * blocks);
    this.hasher.blockHashes(input, localHashes, sequenceHashes);
    return { isl: input.length, localHashes, sequenceHashes };
  }

  private query(
    tokens: ArrayLike<number> | null,
    hashed: HashedPrompt | null,
    options: RouteOptions | undefined,
  ): RoutingDecision {
    const owner = this.decide(tokens, hashed, options);
    this.queries++;
    return this.decisionFor(owner);
  }

  private commit(
    requestId: string,
    tokens: ArrayLike<number> | null,
    hashed: HashedPrompt | null,
    options: RouteOptions | undefined,
  ): RoutingDecision {
    checkRequestId(requestId);
    if (this.active.has(requestId)) throw new DuplicateRequestError(requestId);
    const owner = this.decide(tokens, hashed, options);
    const overlap = this.overlapByOwner[owner];
    const workerId = this.owners.workerOf(owner);
    const dpRank = this.owners.rankOf(owner);
    this.track(requestId, owner, workerId, dpRank, overlap);
    this.decisions++;
    if (options?.pinned !== undefined) this.pinnedDecisions++;
    return { workerId, dpRank, overlapBlocks: overlap };
  }

  /**
   * Dynamo's get_potential_loads: overlap, prefill tokens, decode blocks and cost of the request on
   * every candidate rank. Changes no state (debugging, dashboards, tests).
   */
  potentialLoads(tokens: ArrayLike<number>, options?: RouteOptions): CandidateLoad[] {
    const count = this.prepare(tokens, null, options);
    this.fillLoads(count);
    const out: CandidateLoad[] = [];
    for (let i = 0; i < count; i++) {
      const owner = this.candidateOwners[i];
      out.push({
        workerId: this.owners.workerOf(owner),
        dpRank: this.owners.rankOf(owner),
        overlapBlocks: this.overlapByOwner[owner],
        prefillTokens: this.prefillTokens[i],
        decodeBlocks: this.decodeBlocks[i],
        cost: this.costs[i],
      });
    }
    this.clearOverlaps();
    return out;
  }

  markPrefillCompleted(requestId: string): boolean {
    const owner = this.listenedOwnerOf(requestId);
    if (!this.active.markPrefillCompleted(requestId)) return false;
    this.emit('prefill_completed', requestId, owner);
    return true;
  }

  free(requestId: string): boolean {
    const owner = this.listenedOwnerOf(requestId);
    if (!this.active.free(requestId)) return false;
    this.emit('free', requestId, owner);
    return true;
  }

  /**
   * Output-block tracking (trackOutputBlocks): the request generated one more block; `decay` is
   * max(0, 1 − osl/expected_output_tokens). No-op (false) when tracking is off or the id unknown.
   */
  addOutputBlock(requestId: string, decay = 1): boolean {
    if (!this.config.trackOutputBlocks) return false;
    return this.active.addOutputBlock(requestId, decay);
  }

  /** Frees requests tracked for longer than staleRequestSecs; returns how many. */
  expireStaleRequests(): number {
    return this.active.expireStale();
  }

  // ---- events ---------------------------------------------------------------------------------

  /** Applies one KV event; unknown workers and ranks outside the registration are rejected. */
  applyEvent(event: RouterEvent): KvEventError | null {
    const error = this.registry.checkEvent(event) ?? this.applyToIndex(event);
    if (error === null) this.eventsApplied++;
    else this.eventErrors.set(error.code, (this.eventErrors.get(error.code) ?? 0) + 1);
    return error;
  }

  private applyToIndex(event: RouterEvent): KvEventError | null {
    try {
      return this.indexer.apply(event);
    } catch (cause) {
      // Events are validated by the codec at the edge; a hand-built malformed one still must not crash.
      return new KvEventError('KV_INVALID_EVENT', `malformed event: ${String(cause)}`);
    }
  }

  // ---- replica sync ---------------------------------------------------------------------------

  /**
   * Receives every local add / prefill-completed / free (replica sync publishes them). An add's
   * `blocks` view is reused after the call returns: copy it to keep it.
   */
  setSequenceListener(listener: ((event: SequenceEvent) => void) | null): void {
    this.sequenceListener = listener;
  }

  /** Applies another replica's load change. Returns false when it cannot apply (unknown worker/rank). */
  applySequenceEvent(event: SequenceEvent): boolean {
    let applied: boolean;
    if (event.kind === 'add') {
      const worker = this.registry.get(event.workerId);
      if (worker === undefined || !isDpRank(event.dpRank) || event.dpRank >= worker.dataParallelSize) {
        this.replicaEventsRejected++;
        return false;
      }
      const prefill = Math.max(0, event.isl - event.overlapBlocks * this.config.blockSize);
      applied = this.active.add(event.requestId, worker.owners[event.dpRank], {
        prefillTokens: prefill,
        blocks: event.blocks,
        unsharedBlocks: event.unsharedBlocks,
      });
    } else if (event.kind === 'prefill_completed') {
      applied = this.active.markPrefillCompleted(event.requestId);
    } else {
      applied = this.active.free(event.requestId);
    }
    if (applied) this.replicaEventsApplied++;
    else this.replicaEventsRejected++;
    return applied;
  }

  // ---- views ----------------------------------------------------------------------------------

  /** Active load of every registered (worker, rank). */
  loads(): RankLoad[] {
    const out: RankLoad[] = [];
    for (const worker of this.registry.values()) {
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
    }
    return out;
  }

  /** Events that rebuild the scoring index (Dynamo's dump_events). */
  dump(): RouterEvent[] {
    return this.indexer.dump();
  }

  metrics(): KvRouterMetrics {
    return {
      decisions: this.decisions,
      queries: this.queries,
      pinnedDecisions: this.pinnedDecisions,
      eventsApplied: this.eventsApplied,
      eventErrors: Object.fromEntries(this.eventErrors),
      replicaEventsApplied: this.replicaEventsApplied,
      replicaEventsRejected: this.replicaEventsRejected,
      trackedRequests: this.active.requestCount,
    };
  }

  // ---- internals ------------------------------------------------------------------------------

  /**
   * Scores and selects (exactly one of tokens / hashed is given); returns the chosen owner.
   * Overlaps stay set until clearOverlaps().
   */
  private decide(
    tokens: ArrayLike<number> | null,
    hashed: HashedPrompt | null,
    options: RouteOptions | undefined,
  ): number {
    const count = this.prepare(tokens, hashed, options);
    const candidates = this.candidateOwners;
    if (count === 1) return candidates[0];
    const temperature = options?.overrides?.routerTemperature ?? this.config.routerTemperature;
    if (!(temperature > 0)) {
      // Every registered rank is a candidate: the least loaded ones come from the load order.
      if (
        count >= FAST_SCAN_MIN_CANDIDATES &&
        !this.scanAll &&
        options?.pinned === undefined &&
        options?.dpRank === undefined &&
        this.weight === this.config.overlapScoreWeight &&
        count === this.loadOrder.count
      ) {
        return this.leastCostOwner();
      }
      // A unique lowest cost is what the selector would pick; it only runs for ties.
      const best = this.scoreCosts(count);
      if (best >= 0) return candidates[best];
    } else this.scoreCosts(count);
    return candidates[this.selector.select(this.costs, count, temperature, this.treeSizeOfCandidate)];
  }

  /** Load-order key of an owner: its cost without the request's own part (see leastCostOwner). */
  private loadKey(owner: number): number {
    const active = this.active;
    return (
      this.config.overlapScoreWeight *
        ((this.config.prefillQueueWeight * active.prefillByOwner[owner]) / this.config.blockSize) +
      active.blocksByOwner[owner]
    );
  }

  /**
   * The owner with the unique lowest cost among all registered ranks, or -1 when the lowest cost is
   * shared (the caller then scores every candidate and breaks the tie as before).
   *
   * An owner with no overlap and none of the request's blocks active ("untouched") costs
   * w·((isl + P)/bs) + (R + B) = C + key, key = w·P/bs + B, the same C for all. So only the
   * touched owners (overlap or held blocks) and the untouched owners at the front of the load order
   * (key within rounding of the first one) can reach the lowest cost; their costs are computed with
   * the very expression scoreCosts uses, so the result is bit-identical.
   */
  private leastCostOwner(): number {
    const active = this.active;
    const changed = active.changedOwners;
    const order = this.loadOrder;
    for (let i = 0, n = active.changedOwnerCount; i < n; i++) {
      const owner = changed[i];
      if (order.has(owner)) order.set(owner, this.loadKey(owner));
    }
    active.clearChanged();

    // The owners that can reach the lowest cost, each once: the touched ones, then the front of
    // the load order.
    const stamp = ++this.touchStampValue;
    const touched = this.touchStamp;
    const picked = this.picked;
    let count = 0;
    const overlapOwners = this.overlapOwners;
    for (let i = 0, n = this.overlapOwnerCount; i < n; i++) {
      const owner = overlapOwners[i];
      if (!order.has(owner)) continue;
      touched[owner] = stamp;
      picked[count++] = owner;
    }
    if (this.heldDepths !== null) {
      const matched = active.matchedOwners;
      for (let i = 0, n = active.matchedOwnerCount; i < n; i++) {
        const owner = matched[i];
        if (touched[owner] === stamp || !order.has(owner)) continue;
        touched[owner] = stamp;
        picked[count++] = owner;
      }
    }
    const owners = order.owners;
    const keys = order.sortedKeys;
    let limit = Number.POSITIVE_INFINITY;
    for (let i = 0, n = order.count; i < n; i++) {
      const owner = owners[i];
      if (touched[owner] === stamp) continue;
      const key = keys[i];
      if (key > limit) break;
      picked[count++] = owner;
      // Keys and costs round differently: also score every owner whose key is within rounding
      // (far less than this margin) of the first untouched one.
      if (limit === Number.POSITIVE_INFINITY)
        limit = key + 1e-7 * (Math.abs(this.costOf(owner)) + Math.abs(key) + 1);
    }

    // Their costs (costOf: scoreCosts' expression); the owners at the lowest go to `tied`.
    const tied = this.tied;
    let lowest = Number.POSITIVE_INFINITY;
    let n = 0;
    for (let i = 0; i < count; i++) {
      const owner = picked[i];
      const cost = this.costOf(owner);
      if (cost < lowest) {
        lowest = cost;
        tied[0] = owner;
        n = 1;
      } else if (cost === lowest) tied[n++] = owner;
    }
    if (n === 1) return tied[0];
    // Several owners share the lowest cost: as select() would, by candidate order.
    const position = this.candidatePosition;
    for (let i = 0; i < n; i++) tied[i] = position[tied[i]];
    sortAscending(tied, n);
    return this.candidateOwners[this.selector.pickAmongTied(tied, n, this.treeSizeOfCandidate)];
  }

  /** The cost scoreCosts computes for an owner (same expression, same rounding). */
  private costOf(owner: number): number {
    const held = this.heldDepths ?? this.noneHeld;
    const blockSize = this.config.blockSize;
    const uncached = this.isl - this.overlapByOwner[owner] * blockSize;
    const tokens = Math.max(uncached, 0) + this.config.prefillQueueWeight * this.active.prefillByOwner[owner];
    return routingCost(
      this.weight,
      tokens / blockSize,
      this.requestBlocks - held[owner] + this.active.blocksByOwner[owner],
    );
  }

  private decisionFor(owner: number): RoutingDecision {
    const decision = {
      workerId: this.owners.workerOf(owner),
      dpRank: this.owners.rankOf(owner),
      overlapBlocks: this.overlapByOwner[owner],
    };
    this.clearOverlaps();
    return decision;
  }

  /**
   * Validates, hashes and matches the request: sets the candidates, per-owner overlaps and (when
   * active blocks are deduplicated) per-owner held blocks. Returns the candidate count.
   */
  private prepare(
    tokens: ArrayLike<number> | null,
    hashed: HashedPrompt | null,
    options: RouteOptions | undefined,
  ): number {
    const overrides = options?.overrides;
    if (overrides !== undefined) checkOverrides(overrides);
    // Everything that can reject the request runs before any scratch state is written.
    const count = this.registry.resolve(options);
    const candidates = this.registry.resolved;
    const reuse = overrides?.assumeKvReuse ?? this.config.assumeKvReuse;
    const track = this.config.trackActiveBlocks;
    if (hashed === null) {
      // Sequence hashes come in the same kernel pass when this decision will read them.
      const withSequence = (track && reuse) || this.approximate !== null || this.predicted !== null;
      this.hash(this.tokens.read(tokens), withSequence);
    } else this.useHashed(hashed);

    const weight = overrides?.overlapScoreWeight ?? this.config.overlapScoreWeight;
    this.weight = weight;
    this.ensureCandidates(count);
    this.candidateOwners = candidates;
    if (weight > 0 && this.blockCount > 0) {
      this.collectOverlaps(this.indexer.findMatches(this.local));
      if (this.predicted !== null) this.collectOverlaps(this.predicted.findMatches(this.local));
    }

    this.reuse = reuse;
    const blockCount = this.blockCount;
    // decode_blocks = (request blocks not active there) + active blocks; without dedupe every
    // block of the request is new (or none is counted when tracking is off).
    this.requestBlocks = track ? blockCount : 0;
    const dedupe = track && reuse && blockCount > 0;
    this.heldDepths = dedupe ? this.active.matchChain(this.sequenceHashes(), blockCount) : null;
    return count;
  }

  /**
   * costs[i] of every candidate in one pass; returns the index of the unique lowest cost, or -1
   * when several candidates share it.
   */
  private scoreCosts(count: number): number {
    const candidates = this.candidateOwners;
    const held = this.heldDepths ?? this.noneHeld;
    const activeBlocks = this.active.blocksByOwner;
    const activePrefill = this.active.prefillByOwner;
    const queueWeight = this.config.prefillQueueWeight;
    const blockSize = this.config.blockSize;
    const weight = this.weight;
    const isl = this.isl;
    const requestBlocks = this.requestBlocks;
    const overlapByOwner = this.overlapByOwner;
    const costs = this.costs;
    let lowest = Number.POSITIVE_INFINITY;
    let best = -1;
    for (let i = 0; i < count; i++) {
      const owner = candidates[i];
      const uncached = isl - overlapByOwner[owner] * blockSize;
      const tokens = Math.max(uncached, 0) + queueWeight * activePrefill[owner];
      const cost = routingCost(weight, tokens / blockSize, requestBlocks - held[owner] + activeBlocks[owner]);
      costs[i] = cost;
      if (cost < lowest) {
        lowest = cost;
        best = i;
      } else if (cost === lowest) best = -1;
    }
    return best;
  }

  /** Fills costs / prefillTokens / decodeBlocks of every candidate (potentialLoads). */
  private fillLoads(count: number): void {
    const candidates = this.candidateOwners;
    const held = this.heldDepths ?? this.noneHeld;
    const activeBlocks = this.active.blocksByOwner;
    const activePrefill = this.active.prefillByOwner;
    const queueWeight = this.config.prefillQueueWeight;
    const blockSize = this.config.blockSize;
    const weight = this.weight;
    const isl = this.isl;
    const requestBlocks = this.requestBlocks;
    const overlapByOwner = this.overlapByOwner;
    for (let i = 0; i < count; i++) {
      const owner = candidates[i];
      const uncached = isl - overlapByOwner[owner] * blockSize;
      const tokens = Math.max(uncached, 0) + queueWeight * activePrefill[owner];
      const blocks = requestBlocks - held[owner] + activeBlocks[owner];
      this.prefillTokens[i] = tokens;
      this.decodeBlocks[i] = blocks;
      this.costs[i] = routingCost(weight, tokens / blockSize, blocks);
    }
  }

  private hash(input: Uint32Array, withSequence: boolean): void {
    const blocks = this.hasher.blockCount(input.length);
    if (this.localScratch.length < 2 * blocks) {
      this.localScratch = new Uint32Array(4 * blocks);
      this.sequenceScratch = new Uint32Array(4 * blocks);
      // Views always belong to the current scratch buffers.
      this.localView = this.localScratch.subarray(0, 0);
      this.sequenceView = this.sequenceScratch.subarray(0, 0);
    }
    this.isl = input.length;
    this.blockCount = blocks;
    this.localView = viewOf(this.localScratch, this.localView, 2 * blocks);
    this.local = this.localView;
    if (withSequence) {
      this.sequenceView = viewOf(this.sequenceScratch, this.sequenceView, 2 * blocks);
      this.hasher.blockHashes(input, this.localView, this.sequenceView);
      this.sequence = this.sequenceView;
    } else {
      this.hasher.localHashes(input, this.localView);
      this.sequence = null;
    }
  }

  private useHashed(prompt: HashedPrompt): void {
    const { isl, localHashes, sequenceHashes } = prompt ?? {};
    if (!(localHashes instanceof Uint32Array) || (localHashes.length & 1) !== 0)
      throw new InvalidTokensError('localHashes must be a Uint32Array of [lo, hi] pairs');
    const blocks = localHashes.length >>> 1;
    const blockSize = this.config.blockSize;
    if (!Number.isSafeInteger(isl) || isl < 1 || Math.floor(isl / blockSize) !== blocks)
      throw new InvalidTokensError(
        `isl ${String(isl)} does not match ${blocks} blocks of ${blockSize} tokens`,
      );
    if (
      sequenceHashes !== undefined &&
      (!(sequenceHashes instanceof Uint32Array) || sequenceHashes.length !== localHashes.length)
    )
      throw new InvalidTokensError('sequenceHashes must be a Uint32Array as long as localHashes');
    if (this.sequenceScratch.length < 2 * blocks) {
      this.sequenceScratch = new Uint32Array(4 * blocks);
      this.sequenceView = this.sequenceScratch.subarray(0, 0);
    }
    this.isl = isl;
    this.blockCount = blocks;
    this.local = localHashes;
    this.sequence = sequenceHashes ?? null;
  }

  /** Rolling sequence hashes of the current request, computed on first use. */
  private sequenceHashes(): Uint32Array {
    if (this.sequence === null) {
      this.sequenceView = viewOf(this.sequenceScratch, this.sequenceView, 2 * this.blockCount);
      this.sequence = this.hasher.sequenceHashes(this.local, this.sequenceView);
    }
    return this.sequence;
  }

  private ensureCandidates(count: number): void {
    const capacity = this.owners.capacity;
    if (this.overlapByOwner.length < capacity) {
      const next = new Int32Array(capacity * 2);
      next.set(this.overlapByOwner);
      this.overlapByOwner = next;
      this.noneHeld = new Int32Array(capacity * 2);
      const listed = new Int32Array(capacity * 2);
      listed.set(this.overlapOwners);
      this.overlapOwners = listed;
      const stamps = new Int32Array(capacity * 2);
      stamps.set(this.touchStamp);
      this.touchStamp = stamps;
      this.tied = new Int32Array(capacity * 2);
      this.picked = new Int32Array(capacity * 2);
    }
    // Held depths are read for every candidate owner: make sure the tracker covers them all.
    this.active.ensureOwners(capacity);
    if (this.costs.length < count) {
      this.costs = new Float64Array(count * 2);
      this.decodeBlocks = new Float64Array(count * 2);
      this.prefillTokens = new Float64Array(count * 2);
    }
  }

  /** Keeps the largest overlap per owner across the event index and the predicted index. */
  private collectOverlaps(scores: OverlapScores): void {
    const overlap = this.overlapByOwner;
    for (let i = 0; i < scores.count; i++) {
      const owner = scores.owners[i];
      const blocks = scores.blocks[i];
      if (owner >= overlap.length || blocks <= overlap[owner]) continue;
      if (overlap[owner] === 0) this.overlapOwners[this.overlapOwnerCount++] = owner;
      overlap[owner] = blocks;
    }
  }

  /** Ends a decision: resets the overlap and active-block match scratch. */
  private clearOverlaps(): void {
    const overlap = this.overlapByOwner;
    for (let i = 0; i < this.overlapOwnerCount; i++) overlap[this.overlapOwners[i]] = 0;
    this.overlapOwnerCount = 0;
    if (this.heldDepths !== null) {
      this.active.releaseMatch();
      this.heldDepths = null;
    }
  }

  /** Adds the decided request's load, ends the decision (clearOverlaps), then publishes it. */
  private track(requestId: string, owner: number, workerId: WorkerId, dpRank: number, overlap: number): void {
    const reuse = this.reuse;
    const track = this.config.trackActiveBlocks;
    const hasBlocks = this.blockCount > 0;
    const blocks = track && reuse && hasBlocks ? this.sequenceHashes() : null;
    const unsharedBlocks = track && !reuse ? this.blockCount : 0;
    this.active.add(requestId, owner, {
      prefillTokens: Math.max(0, this.isl - overlap * this.config.blockSize),
      blocks,
      unsharedBlocks,
    });
    // Only now: the load tracker reuses the walk of the decision's match until it is released.
    this.clearOverlaps();
    if (hasBlocks) {
      if (this.approximate !== null)
        this.approximate.recordRoute(workerId, dpRank, this.local, this.sequenceHashes());
      if (this.predicted !== null)
        this.predicted.recordRoute(workerId, dpRank, this.local, this.sequenceHashes());
    }
    const listener = this.sequenceListener;
    if (listener !== null)
      listener({
        kind: 'add',
        requestId,
        workerId,
        dpRank,
        blocks,
        unsharedBlocks,
        isl: this.isl,
        overlapBlocks: overlap,
      });
  }

  /** The request's owner when a sequence listener needs it (saves a lookup otherwise), else -1. */
  private listenedOwnerOf(requestId: string): number {
    return this.sequenceListener === null ? -1 : this.active.ownerOf(requestId);
  }

  private emit(kind: 'prefill_completed' | 'free', requestId: string, owner: number): void {
    const listener = this.sequenceListener;
    if (listener === null || owner < 0 || !this.owners.isLive(owner)) return;
    listener({ kind, requestId, workerId: this.owners.workerOf(owner), dpRank: this.owners.rankOf(owner) });
  }
}

/** Sorts values[0, n) in place (insertion sort: n is a handful of tied candidates). */
function sortAscending(values: Int32Array, n: number): void {
  for (let i = 1; i < n; i++) {
    const v = values[i];
    let j = i - 1;
    while (j >= 0 && values[j] > v) {
      values[j + 1] = values[j];
      j--;
    }
    values[j + 1] = v;
  }
}

/** `view` (of `scratch`) when it has `words` words, else a new view scratch[0, words). */
function viewOf(scratch: Uint32Array, view: Uint32Array, words: number): Uint32Array {
  return view.length === words ? view : scratch.subarray(0, words);
}
