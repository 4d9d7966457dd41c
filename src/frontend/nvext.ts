/**
 * Dynamo's `nvext` request extension and the routing echo in responses.
 *
 * Request: `nvext.backend_instance_id`, `prefill_worker_id`, `decode_worker_id` (u64: JSON numbers
 * parsed losslessly, or decimal strings), `dp_rank`, `prefill_dp_rank`, `router_config_override`,
 * `agent_hints`, and `annotations: ["query_instance_id"]` (also Dynamo's newer
 * `"query_instance_id:<anything>"`), which asks where the request would run without running it.
 * A top-level `data_parallel_rank` (vLLM / SGLang's field) is the same as `nvext.dp_rank`; when both
 * are given they must agree.
 *
 * Response: `nvext: {worker_id, dp_rank, prefill_worker_id?, prefill_dp_rank?, decode_worker_id?,
 * decode_dp_rank?}`: the decision actually used (ids as JSON numbers, full 64 bits).
 */
import type { WorkerId } from '../kv/events.ts';
import type { AgentHints, BackendChunk, RouterOverrides, RoutingDecision, RoutingHints } from './backend.ts';
import { invalidRequest } from './errors.ts';
import { isUnsafeNumber } from './json.ts';
import type { NvextRequest } from './protocol.ts';

export const QUERY_INSTANCE_ID = 'query_instance_id';

const U64_FIELDS = ['backend_instance_id', 'prefill_worker_id', 'decode_worker_id'] as const;

/** True when a parsed body's nvext holds an id JSON.parse rounded (the body must be re-parsed losslessly). */
export function nvextNeedsLossless(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false;
  const nvext = (body as { nvext?: unknown }).nvext;
  if (typeof nvext !== 'object' || nvext === null) return false;
  return U64_FIELDS.some((field) => isUnsafeNumber((nvext as Record<string, unknown>)[field]));
}

export interface ParsedNvext {
  readonly routing: RoutingHints;
  readonly routerOverrides?: RouterOverrides;
  readonly agentHints?: AgentHints;
  /** The request only asks for the routing decision. */
  readonly queryOnly: boolean;
}

export function parseNvext(
  nvext: NvextRequest | null | undefined,
  dataParallelRank: number | null | undefined,
): ParsedNvext {
  const nvRank = nvext?.dp_rank ?? undefined;
  const topRank = dataParallelRank ?? undefined;
  if (nvRank !== undefined && topRank !== undefined && nvRank !== topRank) {
    throw invalidRequest(
      `nvext.dp_rank (${nvRank}) and data_parallel_rank (${topRank}) disagree`,
      'data_parallel_rank',
      'invalid_value',
    );
  }
  const routing: RoutingHints = compact({
    backendInstanceId: nvext?.backend_instance_id ?? undefined,
    prefillWorkerId: nvext?.prefill_worker_id ?? undefined,
    decodeWorkerId: nvext?.decode_worker_id ?? undefined,
    dpRank: nvRank ?? topRank,
    prefillDpRank: nvext?.prefill_dp_rank ?? undefined,
  });
  const override = nvext?.router_config_override;
  const hints = nvext?.agent_hints;
  const queryOnly = (nvext?.annotations ?? []).some(
    (a) => a === QUERY_INSTANCE_ID || a.startsWith(`${QUERY_INSTANCE_ID}:`),
  );
  return {
    routing,
    routerOverrides: override
      ? compact({
          overlapScoreWeight: override.overlap_score_weight ?? undefined,
          routerTemperature: override.router_temperature ?? undefined,
        })
      : undefined,
    agentHints: hints
      ? compact({
          osl: hints.osl ?? undefined,
          latencySensitivity: hints.latency_sensitivity ?? undefined,
          priority: hints.priority ?? undefined,
        })
      : undefined,
    queryOnly,
  };
}

export interface NvextResponse {
  worker_id?: WorkerId;
  dp_rank?: number;
  prefill_worker_id?: WorkerId;
  prefill_dp_rank?: number;
  decode_worker_id?: WorkerId;
  decode_dp_rank?: number;
  overlap_blocks?: number;
  prefill_overlap_blocks?: number;
  token_ids?: readonly number[];
}

/** The routing echo for a response, from the chunk that carried the decision; undefined if none. */
export function nvextFromChunk(chunk: BackendChunk): NvextResponse | undefined {
  const echo = compact<NvextResponse>({
    worker_id: chunk.workerId ?? chunk.decodeWorkerId,
    dp_rank: chunk.dpRank ?? chunk.decodeDpRank,
    prefill_worker_id: chunk.prefillWorkerId,
    prefill_dp_rank: chunk.prefillDpRank,
    decode_worker_id: chunk.decodeWorkerId,
    decode_dp_rank: chunk.decodeDpRank,
  });
  return Object.keys(echo).length > 0 ? echo : undefined;
}

export function nvextFromDecision(decision: RoutingDecision, tokenIds: readonly number[]): NvextResponse {
  const disaggregated = decision.prefill !== undefined;
  return compact<NvextResponse>({
    worker_id: decision.workerId,
    dp_rank: decision.dpRank,
    overlap_blocks: decision.overlapBlocks,
    prefill_worker_id: decision.prefill?.workerId,
    prefill_dp_rank: decision.prefill?.dpRank,
    prefill_overlap_blocks: decision.prefill?.overlapBlocks,
    decode_worker_id: disaggregated ? decision.workerId : undefined,
    decode_dp_rank: disaggregated ? decision.dpRank : undefined,
    token_ids: tokenIds,
  });
}

/** Drops undefined fields so "absent" never reaches the wire or a backend as a key. */
function compact<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) if (field !== undefined) out[key] = field;
  return out as T;
}
