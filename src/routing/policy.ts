/**
 * The interface every routing policy implements (kv, round-robin, random, power-of-two,
 * least-loaded, cache-aware), so the frontend and the trace replay can swap them. The unit of
 * choice is a (worker, dp_rank); every answer carries the rank.
 */
import type { KvEventError } from '../kv/errors.ts';
import type { RouterEvent, WorkerId } from '../kv/events.ts';
import type { RouterOverrides } from './config.ts';

export interface RoutingDecision {
  readonly workerId: WorkerId;
  /** Always an integer in [0, data_parallel_size); 0 is a real rank. */
  readonly dpRank: number;
  /** Leading blocks of the prompt the policy believes are cached on that rank. */
  readonly overlapBlocks: number;
}

export interface PinnedTarget {
  readonly workerId: WorkerId;
  /** Absent: the request-level dpRank, else the policy picks the rank within this worker. */
  readonly dpRank?: number;
}

export interface RouteOptions {
  /** Route to this worker (and rank): honoured, and its load tracked. */
  readonly pinned?: PinnedTarget;
  /**
   * Request-level data_parallel_rank. With a pinned worker that has no rank it names the rank;
   * without a pinned worker it restricts the choice to that rank on every worker that has it.
   */
  readonly dpRank?: number;
  readonly overrides?: RouterOverrides;
}

export interface WorkerRegistration {
  readonly dataParallelSize: number;
  /** Must equal the router's block size when given. */
  readonly blockSize?: number;
  readonly totalKvBlocks?: number;
  readonly maxNumBatchedTokens?: number;
  readonly maxNumSeqs?: number;
}

export interface RankLoad {
  readonly workerId: WorkerId;
  readonly dpRank: number;
  /** Deduplicated KV blocks of the rank's in-flight requests. */
  readonly activeDecodeBlocks: number;
  /** Prompt tokens still to prefill on the rank. */
  readonly activePrefillTokens: number;
  readonly activeRequests: number;
}

export const POLICY_NAMES = [
  'kv',
  'round-robin',
  'random',
  'power-of-two',
  'least-loaded',
  'cache-aware',
] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export interface RoutingPolicy {
  readonly name: PolicyName;
  addWorker(workerId: WorkerId, registration: WorkerRegistration): void;
  /** Drops the worker's state for every rank; false when it was not registered. */
  removeWorker(workerId: WorkerId): boolean;
  /** The choice this policy would make now, without changing any state. */
  bestWorker(tokens: ArrayLike<number>, options?: RouteOptions): RoutingDecision;
  /** Chooses and starts tracking the request's load on the chosen rank. */
  route(requestId: string, tokens: ArrayLike<number>, options?: RouteOptions): RoutingDecision;
  /** First token seen: the request's prefill tokens stop counting. Idempotent. */
  markPrefillCompleted(requestId: string): boolean;
  /** Finished, failed or cancelled. Idempotent. */
  free(requestId: string): boolean;
  /** KV events in. Bad events give a coded error (and are counted), never a crash. */
  applyEvent(event: RouterEvent): KvEventError | null;
  loads(): RankLoad[];
  readonly workerCount: number;
}
