/**
 * A router's answer as the disaggregation layer consumes it, and the compatibility rule for
 * answers that carry no rank (DESIGN §8.6): older routers answer `{worker_id, overlap_blocks}`
 * only. Such an answer falls back to the request's own `data_parallel_rank`, else leaves the choice
 * to the engine. A rank of 0 is a real rank: every test here is `=== undefined`, never truthiness.
 */

import type { WorkerId } from '../../kv/events.ts';
import type { Cancellation } from '../../util/cancel.ts';
import type { RequestRouting } from '../model-router.ts';

export interface WorkerSelection {
  readonly workerId: WorkerId;
  /** Absent in the legacy two-field answer. */
  readonly dpRank?: number;
  readonly overlapBlocks: number;
}

/**
 * Chooses the prefill (worker, rank) for a prompt without tracking it: the embedded prefill
 * router's decision by default, or a standalone router service (RemoteRouterClient).
 */
export interface PrefillSelector {
  select(
    tokens: readonly number[],
    routing: RequestRouting,
    signal?: Cancellation,
  ): WorkerSelection | Promise<WorkerSelection>;
}

/**
 * The rank to send with the request: the router's, else the request's own, else undefined (the
 * engine chooses and reports the rank it ran on).
 */
export function effectiveRank(
  answerRank: number | undefined,
  requestRank: number | undefined,
): number | undefined {
  if (answerRank !== undefined) return answerRank;
  return requestRank;
}
