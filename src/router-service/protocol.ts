/**
 * Wire shapes of the standalone router service (Dynamo's `python -m dynamo.router`), served on the
 * request plane of the namespace it routes for:
 *
 *   {ns}.router.best_worker_id  {token_ids, dp_rank?, worker_id?, model?, overrides?}
 *                               -> one {worker_id, dp_rank, overlap_blocks}
 *   {ns}.router.generate        a generate request ({ns}.{comp}.generate's shape) plus `model?` and
 *                               `routing?: {worker_id?, dp_rank?, overrides?}` (a top-level
 *                               `dp_rank` counts as routing.dp_rank)
 *                               -> stream of generate chunks, each with `worker_id` and `dp_rank`
 *
 * Answers from older routers carry only `{worker_id, overlap_blocks}`: they decode with `dpRank`
 * undefined (never 0 by default), and the caller falls back to the request's own rank.
 */
import { z } from 'zod';
import type { RequestRouting } from '../cluster/model-router.ts';
import type { WorkerId } from '../kv/events.ts';
import type { GenerateRequest } from '../protocol/generate.ts';
import {
  generateRequestFromWire,
  generateRequestWireSchema,
  rank,
  tokenId,
  u64,
  type WireResult,
} from '../protocol/wire.ts';
import type { RouterOverrides } from '../routing/config.ts';

export const ROUTER_COMPONENT = 'router';
export const BEST_WORKER_ENDPOINT = 'best_worker_id';
export const ROUTER_GENERATE_ENDPOINT = 'generate';

const overridesSchema = z.strictObject({
  overlap_score_weight: z.number().finite().min(0).optional(),
  router_temperature: z.number().finite().min(0).optional(),
  assume_kv_reuse: z.boolean().optional(),
});

const routingSchema = z.object({
  worker_id: u64.optional(),
  dp_rank: rank.optional(),
  overrides: overridesSchema.optional(),
});

export const bestWorkerRequestSchema = z.object({
  token_ids: z.array(tokenId).min(1),
  /** Restrict to this rank (with worker_id: pin this rank of that worker). */
  dp_rank: rank.optional(),
  /** Pin this worker (its overlap is still reported). */
  worker_id: u64.optional(),
  /** Needed only when the routed endpoint serves several models. */
  model: z.string().min(1).optional(),
  overrides: overridesSchema.optional(),
});

/** Current answers always carry dp_rank; legacy ones omit it (or send null). */
export const bestWorkerAnswerSchema = z.object({
  worker_id: u64,
  dp_rank: rank.nullish(),
  overlap_blocks: z.number().int().nonnegative(),
});

export const routerGenerateRequestSchema = generateRequestWireSchema.extend({
  model: z.string().min(1).optional(),
  routing: routingSchema.optional(),
});

export interface BestWorkerQuery {
  readonly tokenIds: readonly number[];
  readonly dpRank?: number;
  readonly workerId?: WorkerId;
  readonly model?: string;
  readonly overrides?: RouterOverrides;
}

export interface BestWorkerAnswer {
  readonly workerId: WorkerId;
  /** Undefined in a legacy two-field answer. */
  readonly dpRank?: number;
  readonly overlapBlocks: number;
}

export interface RouterGenerateRequest extends GenerateRequest {
  readonly model?: string;
  readonly routing?: RequestRouting;
}

function overridesToWire(o: RouterOverrides): z.input<typeof overridesSchema> {
  return {
    ...(o.overlapScoreWeight !== undefined ? { overlap_score_weight: o.overlapScoreWeight } : {}),
    ...(o.routerTemperature !== undefined ? { router_temperature: o.routerTemperature } : {}),
    ...(o.assumeKvReuse !== undefined ? { assume_kv_reuse: o.assumeKvReuse } : {}),
  };
}

function overridesFromWire(o: z.output<typeof overridesSchema>): RouterOverrides {
  return {
    ...(o.overlap_score_weight !== undefined ? { overlapScoreWeight: o.overlap_score_weight } : {}),
    ...(o.router_temperature !== undefined ? { routerTemperature: o.router_temperature } : {}),
    ...(o.assume_kv_reuse !== undefined ? { assumeKvReuse: o.assume_kv_reuse } : {}),
  };
}

export function bestWorkerQueryToWire(q: BestWorkerQuery): z.input<typeof bestWorkerRequestSchema> {
  return {
    token_ids: [...q.tokenIds],
    ...(q.dpRank !== undefined ? { dp_rank: q.dpRank } : {}),
    ...(q.workerId !== undefined ? { worker_id: q.workerId } : {}),
    ...(q.model !== undefined ? { model: q.model } : {}),
    ...(q.overrides !== undefined ? { overrides: overridesToWire(q.overrides) } : {}),
  };
}

/** The value `schema` parses, converted; else the schema's complaint as text. */
function fromWire<S extends z.ZodType, T>(
  schema: S,
  value: unknown,
  convert: (wire: z.output<S>) => T,
): WireResult<T> {
  const parsed = schema.safeParse(value);
  return parsed.success
    ? { ok: true, value: convert(parsed.data) }
    : { ok: false, error: z.prettifyError(parsed.error) };
}

export function bestWorkerQueryFromWire(value: unknown): WireResult<BestWorkerQuery> {
  return fromWire(bestWorkerRequestSchema, value, (w) => ({
    tokenIds: w.token_ids,
    ...(w.dp_rank !== undefined ? { dpRank: w.dp_rank } : {}),
    ...(w.worker_id !== undefined ? { workerId: w.worker_id } : {}),
    ...(w.model !== undefined ? { model: w.model } : {}),
    ...(w.overrides !== undefined ? { overrides: overridesFromWire(w.overrides) } : {}),
  }));
}

export function bestWorkerAnswerToWire(a: {
  readonly workerId: WorkerId;
  readonly dpRank: number;
  readonly overlapBlocks: number;
}): z.input<typeof bestWorkerAnswerSchema> {
  return { worker_id: a.workerId, dp_rank: a.dpRank, overlap_blocks: a.overlapBlocks };
}

export function bestWorkerAnswerFromWire(value: unknown): WireResult<BestWorkerAnswer> {
  return fromWire(bestWorkerAnswerSchema, value, (w) => ({
    workerId: w.worker_id,
    ...(w.dp_rank !== undefined && w.dp_rank !== null ? { dpRank: w.dp_rank } : {}),
    overlapBlocks: w.overlap_blocks,
  }));
}

export function routingToWire(r: RequestRouting): z.input<typeof routingSchema> {
  return {
    ...(r.workerId !== undefined ? { worker_id: r.workerId } : {}),
    ...(r.dpRank !== undefined ? { dp_rank: r.dpRank } : {}),
    ...(r.overrides !== undefined ? { overrides: overridesToWire(r.overrides) } : {}),
  };
}

export function routerGenerateRequestFromWire(value: unknown): WireResult<RouterGenerateRequest> {
  const parsed = fromWire(routerGenerateRequestSchema, value, (w) => {
    const r = w.routing;
    // `routing.dp_rank` wins; a top-level `dp_rank` is the older way to say the same.
    const dpRank = r?.dp_rank ?? w.dp_rank;
    const routing: RequestRouting = {
      ...(r?.worker_id !== undefined ? { workerId: r.worker_id } : {}),
      ...(dpRank !== undefined ? { dpRank } : {}),
      ...(r?.overrides !== undefined ? { overrides: overridesFromWire(r.overrides) } : {}),
    };
    return { ...(w.model !== undefined ? { model: w.model } : {}), routing };
  });
  if (!parsed.ok) return parsed;
  const base = generateRequestFromWire(value);
  if (!base.ok) return base;
  return { ok: true, value: { ...base.value, ...parsed.value } };
}
