/**
 * Dynamo's `nvext` request extension and the routing echo in responses.
 *
 * Request: `nvext.backend_instance_id`, `prefill_worker_id`, `decode_worker_id` (u64: JSON numbers
 * parsed losslessly, or decimal strings), `dp_rank`, `prefill_dp_rank`, `router_config_override`,
 * `agent_hints`, and `annotations: ["query_instance_id"]` (also Dynamo's newer
 * `"query_instance_id:<anything>"`), which asks where the request would run without running it.
 * A top-level `data_parallel_rank` (vLLM / SGLang's field) is the same as `nvext.dp_rank`; when both
 * are given they must agree. Dynamo's routing headers (`x-worker-instance-id`, `x-dp-rank`, ...)
 * override the body.
 *
 * Response: `nvext: {worker_id, dp_rank, prefill_worker_id?, prefill_dp_rank?, decode_worker_id?,
 * decode_dp_rank?}`: the decision actually used (ids as JSON numbers, full 64 bits).
 */
import { isDpRank, MAX_DP_RANK, type WorkerId } from '../kv/events.ts';
import { U64_MAX } from '../tokens/u64.ts';
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

/** Dynamo's routing headers (set by gateways such as the Inference Gateway's endpoint picker). */
export const HEADER_WORKER_INSTANCE_ID = 'x-worker-instance-id';
export const HEADER_PREFILL_INSTANCE_ID = 'x-prefill-instance-id';
export const HEADER_DP_RANK = 'x-dp-rank';
export const HEADER_PREFILL_DP_RANK = 'x-prefill-dp-rank';
/** A prefill rank header with this value means "not set" (Dynamo's sentinel). */
const UNSET_RANK = MAX_DP_RANK;

export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

function header(headers: RequestHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  return Array.isArray(value) ? value[0] : value;
}

function headerU64(headers: RequestHeaders | undefined, name: string): bigint | undefined {
  const value = header(headers, name)?.trim();
  if (value === undefined) return undefined;
  if (/^\d{1,20}$/.test(value) && BigInt(value) <= U64_MAX) return BigInt(value);
  throw invalidRequest(`Header ${name} must be an unsigned 64-bit integer.`, name, 'invalid_value');
}

function headerRank(headers: RequestHeaders | undefined, name: string): number | undefined {
  const value = header(headers, name)?.trim();
  if (value === undefined) return undefined;
  if (/^\d{1,10}$/.test(value) && isDpRank(Number(value))) return Number(value);
  throw invalidRequest(
    `Header ${name} must be a data-parallel rank (an integer in [0, 2^32)).`,
    name,
    'invalid_value',
  );
}

/** The routing extension of a request that asks for nothing (most do): one shared, frozen value. */
const NOTHING_ASKED: ParsedNvext = Object.freeze({
  routing: Object.freeze({}),
  routerOverrides: undefined,
  agentHints: undefined,
  queryOnly: false,
});

/**
 * Parses the routing extension. Headers take priority over the body, as in Dynamo:
 * `x-worker-instance-id` sets the pinned (and decode) worker, `x-prefill-instance-id` the prefill
 * worker, `x-dp-rank` the rank, `x-prefill-dp-rank` the prefill rank.
 */
export function parseNvext(
  nvext: NvextRequest | null | undefined,
  dataParallelRank: number | null | undefined,
  headers?: RequestHeaders,
): ParsedNvext {
  if (
    nvext == null &&
    dataParallelRank == null &&
    (headers === undefined ||
      (headers[HEADER_WORKER_INSTANCE_ID] === undefined &&
        headers[HEADER_PREFILL_INSTANCE_ID] === undefined &&
        headers[HEADER_DP_RANK] === undefined &&
        headers[HEADER_PREFILL_DP_RANK] === undefined))
  ) {
    return NOTHING_ASKED;
  }
  const nvRank = nvext?.dp_rank ?? undefined;
  const topRank = dataParallelRank ?? undefined;
  if (nvRank !== undefined && topRank !== undefined && nvRank !== topRank) {
    throw invalidRequest(
      `nvext.dp_rank (${nvRank}) and data_parallel_rank (${topRank}) disagree`,
      'data_parallel_rank',
      'invalid_value',
    );
  }
  const pinnedWorker = headerU64(headers, HEADER_WORKER_INSTANCE_ID);
  const headerPrefillRank = headerRank(headers, HEADER_PREFILL_DP_RANK);
  const routing: RoutingHints = compact({
    backendInstanceId: pinnedWorker ?? nvext?.backend_instance_id ?? undefined,
    prefillWorkerId: headerU64(headers, HEADER_PREFILL_INSTANCE_ID) ?? nvext?.prefill_worker_id ?? undefined,
    decodeWorkerId: pinnedWorker ?? nvext?.decode_worker_id ?? undefined,
    dpRank: headerRank(headers, HEADER_DP_RANK) ?? nvRank ?? topRank,
    prefillDpRank:
      headerPrefillRank === UNSET_RANK
        ? undefined
        : (headerPrefillRank ?? nvext?.prefill_dp_rank ?? undefined),
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

/**
 * The echo as JSON, ids as bare integers (all 64 bits); faster than a bigint-aware replacer. Every
 * field is a bigint, a number or an array of numbers.
 */
export function nvextJson(nvext: NvextResponse): string {
  let out = '{';
  for (const key in nvext) {
    const value = nvext[key as keyof NvextResponse];
    if (value === undefined) continue;
    const json =
      typeof value === 'bigint' || (typeof value === 'number' && Number.isFinite(value))
        ? `${value}`
        : JSON.stringify(value);
    out += out === '{' ? `"${key}":${json}` : `,"${key}":${json}`;
  }
  return `${out}}`;
}

/** `bodyJson` (a JSON object) with `"nvext": {...}` added as its last field. */
export function withNvext(bodyJson: string, nvext: NvextResponse | undefined): string {
  return nvext === undefined ? bodyJson : `${bodyJson.slice(0, -1)},"nvext":${nvextJson(nvext)}}`;
}

/** The routing echo for a response, from the chunk that carried the decision; undefined if none. */
export function nvextFromChunk(chunk: BackendChunk): NvextResponse | undefined {
  const workerId = chunk.workerId ?? chunk.decodeWorkerId;
  const dpRank = chunk.dpRank ?? chunk.decodeDpRank;
  const disaggregated =
    chunk.prefillWorkerId !== undefined ||
    chunk.prefillDpRank !== undefined ||
    chunk.decodeWorkerId !== undefined ||
    chunk.decodeDpRank !== undefined;
  if (!disaggregated) {
    // The usual aggregated echo, built without the generic compaction.
    if (workerId === undefined) return dpRank === undefined ? undefined : { dp_rank: dpRank };
    return dpRank === undefined ? { worker_id: workerId } : { worker_id: workerId, dp_rank: dpRank };
  }
  return compact<NvextResponse>({
    worker_id: workerId,
    dp_rank: dpRank,
    prefill_worker_id: chunk.prefillWorkerId,
    prefill_dp_rank: chunk.prefillDpRank,
    decode_worker_id: chunk.decodeWorkerId,
    decode_dp_rank: chunk.decodeDpRank,
  });
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
