/**
 * Names and JSON shapes on the runtime planes between workers and routers/frontends (snake_case,
 * Dynamo's style). Payload bytes use the runtime's lossless codec (src/runtime/codec.ts): u64 ids
 * are plain JSON numbers; decoders accept a number or a bigint and normalise to bigint.
 *
 * Endpoints (request plane), per worker instance, component `backend` (aggregated, decode) or
 * `prefill`:
 *   {ns}.{comp}.generate          GenerateRequestWire  -> stream of GenerateChunkWire
 *   {ns}.{comp}.kv_indexer_query  KvIndexerQueryWire   -> one KvIndexerAnswer (RouterEvent JSON via src/kv/codec.ts)
 *   {ns}.{comp}.kv_transfer       KvTransferPullWire   -> one KvTransferAnswerWire (prefill role)
 * Subjects (event plane):
 *   namespace.{ns}.component.{comp}.kv-events   one RouterEvent (src/kv/codec.ts) per message
 *   namespace.{ns}.component.{comp}.kv_metrics  WorkerLoadWire (one (worker, rank) per message)
 *   namespace.{ns}.component.{comp}.active_sequences_events  replica sync (src/routing/replica-sync.ts)
 */
import { z } from 'zod';
import { decodeRouterEventsValue, encodeRouterEvents, parseLosslessJson } from '../kv/codec.ts';
import type { RouterEvent } from '../kv/events.ts';
import { decodeJson, encodeJson } from '../runtime/codec.ts';
import { type BootstrapInfo, type GenerateChunk, type GenerateRequest, isOutputKind } from './generate.ts';

export const DEFAULT_NAMESPACE = 'kvgate';
export const BACKEND_COMPONENT = 'backend';
export const PREFILL_COMPONENT = 'prefill';
export const GENERATE_ENDPOINT = 'generate';
export const KV_INDEXER_QUERY_ENDPOINT = 'kv_indexer_query';
export const KV_TRANSFER_ENDPOINT = 'kv_transfer';

/** Durable mode: the JetStream stream of a kv-events subject keeps events this long (Dynamo: 1 h). */
export const KV_EVENTS_RETENTION_MS = 3_600_000;

export function kvMetricsSubject(namespace: string, component: string): string {
  return `namespace.${namespace}.component.${component}.kv_metrics`;
}

/**
 * Router replica sync. With a component (what ModelRouter uses), one subject per worker pool, so the
 * prefill and decode routers of a disaggregated deployment, which track the same request ids, never
 * apply each other's add / free.
 */
export function replicaSyncSubject(namespace: string, component?: string): string {
  return component === undefined
    ? `namespace.${namespace}.router.active_sequences_events`
    : `namespace.${namespace}.component.${component}.active_sequences_events`;
}

/** A u64 id on the wire: a bigint, or a safe non-negative number; normalised to bigint. */
export const u64 = z
  .union([z.bigint(), z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)])
  .transform((v) => BigInt(v))
  .refine((v) => v >= 0n && v <= 0xffff_ffff_ffff_ffffn, 'must be a u64');
export const rank = z.number().int().min(0).max(0xffff_ffff);
export const tokenId = z.number().int().min(0).max(0xffff_ffff);

const bootstrapSchema = z.object({
  bootstrap_host: z.string().min(1),
  bootstrap_port: z.number().int().min(0).max(65535),
  bootstrap_room: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  prefill_worker_id: u64,
  prefill_dp_rank: rank,
});

export const generateRequestWireSchema = z.object({
  request_id: z.string().min(1).max(256),
  token_ids: z.array(tokenId).min(1),
  sampling: z.object({
    max_tokens: z.number().int().min(1),
    ignore_eos: z.boolean().optional(),
    stop_token_ids: z.array(tokenId).optional(),
    temperature: z.number().min(0).optional(),
    seed: z.number().int().optional(),
    /** vLLM's output_kind: 'final' lets the engine send the first token, then the rest at the end. */
    output_kind: z.enum(['delta', 'final']).optional(),
  }),
  /** data_parallel_rank; absent = the engine chooses. */
  dp_rank: rank.optional(),
  bootstrap_info: bootstrapSchema.optional(),
});

export const generateChunkWireSchema = z.object({
  token_ids: z.array(tokenId),
  finish_reason: z.enum(['stop', 'length', 'cancelled', 'error']).optional(),
  usage: z
    .object({
      prompt_tokens: z.number().int().nonnegative(),
      completion_tokens: z.number().int().nonnegative(),
      cached_tokens: z.number().int().nonnegative(),
    })
    .optional(),
  dp_rank: rank.optional(),
  bootstrap_info: bootstrapSchema.optional(),
  error: z.string().optional(),
});

type BootstrapWire = z.input<typeof bootstrapSchema>;

function bootstrapToWire(b: BootstrapInfo): BootstrapWire {
  return {
    bootstrap_host: b.host,
    bootstrap_port: b.port,
    bootstrap_room: b.room,
    prefill_worker_id: b.prefillWorkerId,
    prefill_dp_rank: b.prefillDpRank,
  };
}

function bootstrapFromWire(b: z.output<typeof bootstrapSchema>): BootstrapInfo {
  return {
    host: b.bootstrap_host,
    port: b.bootstrap_port,
    room: b.bootstrap_room,
    prefillWorkerId: b.prefill_worker_id,
    prefillDpRank: b.prefill_dp_rank,
  };
}

export function generateRequestToWire(r: GenerateRequest): z.input<typeof generateRequestWireSchema> {
  return {
    request_id: r.requestId,
    token_ids: [...r.tokenIds],
    sampling: {
      max_tokens: r.sampling.maxTokens,
      ...(r.sampling.ignoreEos !== undefined ? { ignore_eos: r.sampling.ignoreEos } : {}),
      ...(r.sampling.stopTokenIds !== undefined ? { stop_token_ids: [...r.sampling.stopTokenIds] } : {}),
      ...(r.sampling.temperature !== undefined ? { temperature: r.sampling.temperature } : {}),
      ...(r.sampling.seed !== undefined ? { seed: r.sampling.seed } : {}),
      ...(r.sampling.outputKind !== undefined ? { output_kind: r.sampling.outputKind } : {}),
    },
    ...(r.dpRank !== undefined ? { dp_rank: r.dpRank } : {}),
    ...(r.bootstrap !== undefined ? { bootstrap_info: bootstrapToWire(r.bootstrap) } : {}),
  };
}

export type WireResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function generateRequestFromWire(value: unknown): WireResult<GenerateRequest> {
  const fast = generateRequestFast(value);
  if (fast !== undefined) return { ok: true, value: fast };
  const parsed = generateRequestWireSchema.safeParse(value);
  if (!parsed.success) return { ok: false, error: z.prettifyError(parsed.error) };
  const w = parsed.data;
  const s = w.sampling;
  return {
    ok: true,
    value: {
      requestId: w.request_id,
      tokenIds: w.token_ids,
      sampling: {
        maxTokens: s.max_tokens,
        ...(s.ignore_eos !== undefined ? { ignoreEos: s.ignore_eos } : {}),
        ...(s.stop_token_ids !== undefined ? { stopTokenIds: s.stop_token_ids } : {}),
        ...(s.temperature !== undefined ? { temperature: s.temperature } : {}),
        ...(s.seed !== undefined ? { seed: s.seed } : {}),
        ...(s.output_kind !== undefined ? { outputKind: s.output_kind } : {}),
      },
      ...(w.dp_rank !== undefined ? { dpRank: w.dp_rank } : {}),
      ...(w.bootstrap_info !== undefined ? { bootstrap: bootstrapFromWire(w.bootstrap_info) } : {}),
    },
  };
}

export function generateChunkToWire(c: GenerateChunk): z.input<typeof generateChunkWireSchema> {
  return {
    token_ids: [...c.tokenIds],
    ...(c.finishReason !== undefined ? { finish_reason: c.finishReason } : {}),
    ...(c.usage !== undefined
      ? {
          usage: {
            prompt_tokens: c.usage.promptTokens,
            completion_tokens: c.usage.completionTokens,
            cached_tokens: c.usage.cachedTokens,
          },
        }
      : {}),
    ...(c.dpRank !== undefined ? { dp_rank: c.dpRank } : {}),
    ...(c.bootstrap !== undefined ? { bootstrap_info: bootstrapToWire(c.bootstrap) } : {}),
    ...(c.error !== undefined ? { error: c.error } : {}),
  };
}

export function generateChunkFromWire(value: unknown): WireResult<GenerateChunk> {
  const fast = generateChunkFast(value);
  if (fast !== undefined) return { ok: true, value: fast };
  const parsed = generateChunkWireSchema.safeParse(value);
  if (!parsed.success) return { ok: false, error: z.prettifyError(parsed.error) };
  const w = parsed.data;
  return {
    ok: true,
    value: {
      tokenIds: w.token_ids,
      ...(w.finish_reason !== undefined ? { finishReason: w.finish_reason } : {}),
      ...(w.usage !== undefined
        ? {
            usage: {
              promptTokens: w.usage.prompt_tokens,
              completionTokens: w.usage.completion_tokens,
              cachedTokens: w.usage.cached_tokens,
            },
          }
        : {}),
      ...(w.dp_rank !== undefined ? { dpRank: w.dp_rank } : {}),
      ...(w.bootstrap_info !== undefined ? { bootstrap: bootstrapFromWire(w.bootstrap_info) } : {}),
      ...(w.error !== undefined ? { error: w.error } : {}),
    },
  };
}

// ---- hand-written fast paths ------------------------------------------------------------------
// Every generate request and chunk crosses the request plane, and zod costs a few µs per object
// (per token for token arrays). These accept exactly what the schemas accept in the common shapes
// and build the same value; anything else (a bootstrap_info, an invalid field) returns undefined so
// the schema decides, with its own error text.

type WireObject = Record<string, unknown>;

function asObject(value: unknown): WireObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as WireObject)
    : undefined;
}

function isIntIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

/** A copy of a token id array (as zod's output is), or undefined when an element is not a token id. */
function tokenIdsCopy(value: unknown, minLength: number): number[] | undefined {
  if (!Array.isArray(value) || value.length < minLength) return undefined;
  const out = new Array<number>(value.length);
  for (let i = 0; i < value.length; i++) {
    const id = value[i];
    if (!isIntIn(id, 0, 0xffff_ffff)) return undefined;
    out[i] = id;
  }
  return out;
}

const FINISH_REASONS: ReadonlySet<unknown> = new Set(['stop', 'length', 'cancelled', 'error']);

function generateRequestFast(value: unknown): GenerateRequest | undefined {
  const w = asObject(value);
  if (w === undefined || w.bootstrap_info !== undefined) return undefined;
  const s = asObject(w.sampling);
  if (s === undefined) return undefined;
  return checkedRequest(
    w.request_id,
    w.token_ids,
    w.dp_rank,
    s.max_tokens,
    s.ignore_eos,
    s.stop_token_ids,
    s.temperature,
    s.seed,
    s.output_kind,
  );
}

type MutableSampling = { -readonly [K in keyof GenerateRequest['sampling']]: GenerateRequest['sampling'][K] };

/**
 * A generate request's fields, read from either shape (wire or in-process), checked as the schema
 * would check them and copied into a new GenerateRequest; undefined when anything is off.
 */
function checkedRequest(
  requestId: unknown,
  tokenIds: unknown,
  dpRank: unknown,
  maxTokens: unknown,
  ignoreEos: unknown,
  stopTokenIds: unknown,
  temperature: unknown,
  seed: unknown,
  outputKind: unknown,
): GenerateRequest | undefined {
  if (typeof requestId !== 'string' || requestId.length < 1 || requestId.length > 256) return undefined;
  if (!isIntIn(maxTokens, 1, Number.MAX_SAFE_INTEGER)) return undefined;
  if (ignoreEos !== undefined && typeof ignoreEos !== 'boolean') return undefined;
  if (
    temperature !== undefined &&
    !(typeof temperature === 'number' && Number.isFinite(temperature) && temperature >= 0)
  )
    return undefined;
  if (seed !== undefined && !isIntIn(seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER))
    return undefined;
  if (dpRank !== undefined && !isIntIn(dpRank, 0, 0xffff_ffff)) return undefined;
  if (outputKind !== undefined && !isOutputKind(outputKind)) return undefined;
  const tokens = tokenIdsCopy(tokenIds, 1);
  if (tokens === undefined) return undefined;
  const sampling: MutableSampling = { maxTokens };
  if (ignoreEos !== undefined) sampling.ignoreEos = ignoreEos;
  if (stopTokenIds !== undefined) {
    const stops = tokenIdsCopy(stopTokenIds, 0);
    if (stops === undefined) return undefined;
    sampling.stopTokenIds = stops;
  }
  if (temperature !== undefined) sampling.temperature = temperature as number;
  if (seed !== undefined) sampling.seed = seed;
  if (outputKind !== undefined) sampling.outputKind = outputKind;
  return dpRank !== undefined
    ? { requestId, tokenIds: tokens, sampling, dpRank }
    : { requestId, tokenIds: tokens, sampling };
}

function generateChunkFast(value: unknown): GenerateChunk | undefined {
  const w = asObject(value);
  if (w === undefined || w.bootstrap_info !== undefined) return undefined;
  const finishReason = w.finish_reason;
  if (finishReason !== undefined && !FINISH_REASONS.has(finishReason)) return undefined;
  if (w.dp_rank !== undefined && !isIntIn(w.dp_rank, 0, 0xffff_ffff)) return undefined;
  if (w.error !== undefined && typeof w.error !== 'string') return undefined;
  let usage: GenerateChunk['usage'];
  if (w.usage !== undefined) {
    const u = asObject(w.usage);
    if (
      u === undefined ||
      !isIntIn(u.prompt_tokens, 0, Number.MAX_SAFE_INTEGER) ||
      !isIntIn(u.completion_tokens, 0, Number.MAX_SAFE_INTEGER) ||
      !isIntIn(u.cached_tokens, 0, Number.MAX_SAFE_INTEGER)
    )
      return undefined;
    usage = {
      promptTokens: u.prompt_tokens,
      completionTokens: u.completion_tokens,
      cachedTokens: u.cached_tokens,
    };
  }
  const tokenIds = tokenIdsCopy(w.token_ids, 0);
  if (tokenIds === undefined) return undefined;
  return {
    tokenIds,
    ...(finishReason !== undefined
      ? { finishReason: finishReason as NonNullable<GenerateChunk['finishReason']> }
      : {}),
    ...(usage !== undefined ? { usage } : {}),
    ...(w.dp_rank !== undefined ? { dpRank: w.dp_rank } : {}),
    ...(w.error !== undefined ? { error: w.error } : {}),
  };
}

// ---- generate frames ---------------------------------------------------------------------------

/**
 * A generate chunk's frame written by hand carries the chunk it encodes under this symbol. The
 * in-process request plane hands the receiver the very Uint8Array the other side produced, so the
 * receiver checks and copies that value instead of decoding UTF-8 and JSON back into an equal one;
 * every frame from another process is decoded. (A symbol property rather than a WeakMap: keying a
 * WeakMap by typed arrays costs more than the decoding it saves.) A request needs no such tag: an
 * in-process caller hands it over as a value (`pushCallValue`, `generateRequestFromValue`).
 */
const CHUNK_VALUE = Symbol('kvgate.chunkValue');

type EncodedFrame = Uint8Array & { [CHUNK_VALUE]?: unknown };

/**
 * A generate request's bytes, written by hand in the common shapes (no bootstrap info, plain
 * numbers): what `encodeJson(generateRequestToWire(r))` writes.
 */
export function encodeGenerateRequest(r: GenerateRequest): Uint8Array {
  const text = generateRequestText(r);
  return text === undefined ? encodeJson(generateRequestToWire(r)) : textBytes(text);
}

function idsText(ids: readonly number[]): string | undefined {
  let text = '';
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!isSafeCount(id)) return undefined;
    text += i === 0 ? `${id}` : `,${id}`;
  }
  return text;
}

function generateRequestText(r: GenerateRequest): string | undefined {
  if (r.bootstrap !== undefined || typeof r.requestId !== 'string') return undefined;
  const ids = idsText(r.tokenIds);
  if (ids === undefined) return undefined;
  const s = r.sampling;
  if (!isSafeCount(s.maxTokens)) return undefined;
  let sampling = `{"max_tokens":${s.maxTokens}`;
  if (s.ignoreEos !== undefined) {
    if (typeof s.ignoreEos !== 'boolean') return undefined;
    sampling += `,"ignore_eos":${s.ignoreEos}`;
  }
  if (s.stopTokenIds !== undefined) {
    const stops = idsText(s.stopTokenIds);
    if (stops === undefined) return undefined;
    sampling += `,"stop_token_ids":[${stops}]`;
  }
  if (s.temperature !== undefined) {
    if (typeof s.temperature !== 'number' || !Number.isFinite(s.temperature)) return undefined;
    sampling += `,"temperature":${s.temperature}`;
  }
  if (s.seed !== undefined) {
    if (!Number.isSafeInteger(s.seed)) return undefined;
    sampling += `,"seed":${s.seed}`;
  }
  if (s.outputKind !== undefined) {
    if (!isOutputKind(s.outputKind)) return undefined;
    sampling += `,"output_kind":"${s.outputKind}"`;
  }
  let text = `{"request_id":${JSON.stringify(r.requestId)},"token_ids":[${ids}],"sampling":${sampling}}`;
  if (r.dpRank !== undefined) {
    if (!isSafeCount(r.dpRank)) return undefined;
    text += `,"dp_rank":${r.dpRank}`;
  }
  return `${text}}`;
}

/**
 * A GenerateRequest handed over in process: checked as its wire form would be, and copied;
 * undefined for a shape this check does not take (bootstrap info, a bad field: decode its bytes).
 */
export function generateRequestFromValue(value: unknown): GenerateRequest | undefined {
  const r = asObject(value) as Partial<GenerateRequest> | undefined;
  if (r === undefined || r.bootstrap !== undefined) return undefined;
  const s = asObject(r.sampling) as Partial<GenerateRequest['sampling']> | undefined;
  if (s === undefined) return undefined;
  return checkedRequest(
    r.requestId,
    r.tokenIds,
    r.dpRank,
    s.maxTokens,
    s.ignoreEos,
    s.stopTokenIds,
    s.temperature,
    s.seed,
    s.outputKind,
  );
}

/** Throws RuntimeError RUNTIME_MALFORMED when the bytes are not JSON. */
export function decodeGenerateRequest(bytes: Uint8Array): WireResult<GenerateRequest> {
  return generateRequestFromWire(decodeJson(bytes));
}

/**
 * A generate chunk's bytes, written by hand in the common shapes (safe integers only, no bootstrap
 * info): exactly what `encodeJson(generateChunkToWire(c))` writes, without the intermediate wire
 * object or JSON.stringify, once per token on every stream. The frame carries the chunk itself
 * (see CHUNK_VALUE): an in-process receiver checks and copies it instead of parsing the bytes.
 */
export function encodeGenerateChunk(c: GenerateChunk): Uint8Array {
  const text = generateChunkText(c);
  if (text === undefined) return encodeJson(generateChunkToWire(c));
  const bytes: EncodedFrame = textBytes(text);
  bytes[CHUNK_VALUE] = c;
  return bytes;
}

const textEncoder = new TextEncoder();

/**
 * UTF-8 bytes of a JSON text: an ASCII text (the common case) as Latin-1, which Node copies into
 * its pooled buffers, cheaper for short strings than TextEncoder's fresh allocation.
 */
function textBytes(text: string): Uint8Array {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return textEncoder.encode(text);
  return Buffer.from(text, 'latin1');
}

function isSafeCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** The chunk's JSON text, or undefined for a shape the hand-written writer does not take. */
function generateChunkText(c: GenerateChunk): string | undefined {
  if (c.bootstrap !== undefined) return undefined;
  const ids = idsText(c.tokenIds);
  if (ids === undefined) return undefined;
  let text = `{"token_ids":[${ids}]`;
  const finish = c.finishReason;
  if (finish !== undefined) {
    if (!FINISH_REASONS.has(finish)) return undefined;
    text += `,"finish_reason":"${finish}"`;
  }
  const usage = c.usage;
  if (usage !== undefined) {
    const { promptTokens, completionTokens, cachedTokens } = usage;
    if (!isSafeCount(promptTokens) || !isSafeCount(completionTokens) || !isSafeCount(cachedTokens))
      return undefined;
    text += `,"usage":{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},"cached_tokens":${cachedTokens}}`;
  }
  if (c.dpRank !== undefined) {
    if (!isSafeCount(c.dpRank)) return undefined;
    text += `,"dp_rank":${c.dpRank}`;
  }
  if (c.error !== undefined) {
    if (typeof c.error !== 'string') return undefined;
    text += `,"error":${JSON.stringify(c.error)}`;
  }
  return `${text}}`;
}

/**
 * An in-process chunk handed over with its frame: checked like a decoded wire value (every field
 * the schema would check) and copied, so the receiver never shares the sender's arrays. With
 * `transfer` (a value pushed to exactly one receiver, which the sender no longer touches: see
 * FrameSink.pushValue) the checked chunk itself is returned.
 */
export function generateChunkLocal(value: unknown, transfer = false): GenerateChunk | undefined {
  const c = asObject(value) as Partial<GenerateChunk> | undefined;
  if (c === undefined || c.bootstrap !== undefined) return undefined;
  const finishReason = c.finishReason;
  if (finishReason !== undefined && !FINISH_REASONS.has(finishReason)) return undefined;
  if (c.dpRank !== undefined && !isIntIn(c.dpRank, 0, 0xffff_ffff)) return undefined;
  if (c.error !== undefined && typeof c.error !== 'string') return undefined;
  const u = c.usage;
  if (
    u !== undefined &&
    (asObject(u) === undefined ||
      !isSafeCount(u.promptTokens) ||
      !isSafeCount(u.completionTokens) ||
      !isSafeCount(u.cachedTokens))
  )
    return undefined;
  if (transfer) return isTokenIdArray(c.tokenIds) ? (c as GenerateChunk) : undefined;
  const tokenIds = tokenIdsCopy(c.tokenIds, 0);
  if (tokenIds === undefined) return undefined;
  const chunk: { -readonly [K in keyof GenerateChunk]: GenerateChunk[K] } = { tokenIds };
  if (finishReason !== undefined) chunk.finishReason = finishReason;
  if (u !== undefined)
    chunk.usage = {
      promptTokens: u.promptTokens,
      completionTokens: u.completionTokens,
      cachedTokens: u.cachedTokens,
    };
  if (c.dpRank !== undefined) chunk.dpRank = c.dpRank;
  if (c.error !== undefined) chunk.error = c.error;
  return chunk;
}

function isTokenIdArray(value: unknown): value is number[] {
  if (!Array.isArray(value)) return false;
  for (let i = 0; i < value.length; i++) if (!isIntIn(value[i], 0, 0xffff_ffff)) return false;
  return true;
}

/** Throws RuntimeError RUNTIME_MALFORMED when the bytes are not JSON. */
export function decodeGenerateChunk(bytes: Uint8Array): WireResult<GenerateChunk> {
  const frame = bytes as EncodedFrame;
  const chunk = frame[CHUNK_VALUE];
  if (chunk !== undefined) {
    const local = generateChunkLocal(chunk);
    if (local !== undefined) return { ok: true, value: local };
  }
  return generateChunkFromWire(decodeJson(bytes));
}

/** Recovery query to a worker's local indexer: a range of event ids of one rank, or its full dump. */
export const kvIndexerQueryWireSchema = z.object({
  dp_rank: rank,
  /** Both absent: the full dump. */
  start_event_id: u64.optional(),
  end_event_id: u64.optional(),
});
export type KvIndexerQuery = z.output<typeof kvIndexerQueryWireSchema>;

/** Per-(worker, rank) load, published on kv_metrics. */
export const workerLoadWireSchema = z.object({
  worker_id: u64,
  dp_rank: rank,
  active_decode_blocks: z.number().int().nonnegative(),
  total_kv_blocks: z.number().int().nonnegative(),
  num_running: z.number().int().nonnegative(),
  num_waiting: z.number().int().nonnegative(),
  kv_usage: z.number().min(0).max(1),
  prefix_hit_rate: z.number().min(0).max(1),
});
export type WorkerLoad = z.output<typeof workerLoadWireSchema>;

/** Decode side pulls a prefilled room's KV from the prefill worker (distributed mode). */
export const kvTransferPullWireSchema = z.object({
  bootstrap_room: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  dp_rank: rank,
});
export const kvTransferAnswerWireSchema = z.object({
  blocks: z.array(u64),
  token_ids: z.array(tokenId),
});

export function kvIndexerQueryToWire(query: {
  readonly dpRank: number;
  readonly startEventId?: bigint;
  readonly endEventId?: bigint;
}): z.input<typeof kvIndexerQueryWireSchema> {
  return {
    dp_rank: query.dpRank,
    ...(query.startEventId !== undefined ? { start_event_id: query.startEventId } : {}),
    ...(query.endEventId !== undefined ? { end_event_id: query.endEventId } : {}),
  };
}

/**
 * The answer to a kv_indexer_query, on the wire:
 *   {"kind":"events"|"dump","dp_rank":R,"last_event_id":U64|null,"events":[RouterEvent…]}
 *   {"kind":"unavailable","dp_rank":R,"oldest":U64|null,"newest":U64|null}
 * `last_event_id` is the newest event id the rank had published when the answer was taken: a
 * router that applies a dump continues from it. RouterEvents use src/kv/codec.ts (exact u64).
 */
export type KvIndexerAnswer =
  | {
      readonly kind: 'events' | 'dump';
      readonly dpRank: number;
      readonly lastEventId: bigint | null;
      readonly events: readonly RouterEvent[];
    }
  | {
      readonly kind: 'unavailable';
      readonly dpRank: number;
      readonly oldest: bigint | null;
      readonly newest: bigint | null;
    };

const answerEncoder = new TextEncoder();
const answerDecoder = new TextDecoder('utf-8', { fatal: true });

const optionalU64Text = (v: bigint | null): string => (v === null ? 'null' : v.toString());

export function encodeKvIndexerAnswer(answer: KvIndexerAnswer): Uint8Array {
  const text =
    answer.kind === 'unavailable'
      ? `{"kind":"unavailable","dp_rank":${answer.dpRank},"oldest":${optionalU64Text(answer.oldest)},"newest":${optionalU64Text(answer.newest)}}`
      : `{"kind":"${answer.kind}","dp_rank":${answer.dpRank},"last_event_id":${optionalU64Text(answer.lastEventId)},"events":${encodeRouterEvents(answer.events)}}`;
  return answerEncoder.encode(text);
}

function optionalU64Field(value: unknown): bigint | null | undefined {
  if (value === null) return null;
  if (typeof value === 'bigint' && value >= 0n && value <= 0xffff_ffff_ffff_ffffn) return value;
  return undefined;
}

export function decodeKvIndexerAnswer(bytes: Uint8Array): WireResult<KvIndexerAnswer> {
  let text: string;
  try {
    text = answerDecoder.decode(bytes);
  } catch {
    return { ok: false, error: 'kv_indexer_query answer: invalid UTF-8' };
  }
  const parsed = parseLosslessJson(text);
  if (!parsed.ok) return { ok: false, error: `kv_indexer_query answer: ${parsed.error.message}` };
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return { ok: false, error: 'kv_indexer_query answer: not an object' };
  const record = value as Record<string, unknown>;
  const rankValue = record.dp_rank;
  const dpRank = typeof rankValue === 'bigint' && rankValue <= 0xffff_ffffn ? Number(rankValue) : -1;
  if (dpRank < 0) return { ok: false, error: 'kv_indexer_query answer: bad dp_rank' };
  if (record.kind === 'unavailable') {
    const oldest = optionalU64Field(record.oldest);
    const newest = optionalU64Field(record.newest);
    if (oldest === undefined || newest === undefined)
      return { ok: false, error: 'kv_indexer_query answer: bad oldest/newest' };
    return { ok: true, value: { kind: 'unavailable', dpRank, oldest, newest } };
  }
  if (record.kind !== 'events' && record.kind !== 'dump')
    return { ok: false, error: 'kv_indexer_query answer: unknown kind' };
  const lastEventId = optionalU64Field(record.last_event_id);
  if (lastEventId === undefined) return { ok: false, error: 'kv_indexer_query answer: bad last_event_id' };
  const events = decodeRouterEventsValue(record.events);
  if (!events.ok) return { ok: false, error: `kv_indexer_query answer: ${events.error.message}` };
  return { ok: true, value: { kind: record.kind, dpRank, lastEventId, events: events.events } };
}

/** Per-(worker, rank) load as published on kv_metrics. */
export interface WorkerRankLoad {
  readonly workerId: bigint;
  readonly dpRank: number;
  readonly activeDecodeBlocks: number;
  readonly totalKvBlocks: number;
  readonly numRunning: number;
  readonly numWaiting: number;
  readonly kvUsage: number;
  readonly prefixHitRate: number;
  /** Prompt tokens still to prefill on the rank. */
  readonly pendingPrefillTokens?: number;
  /** Newest KV event id the rank published (lets a router notice events it missed at the tail). */
  readonly lastEventId?: bigint | null;
}

export const workerRankLoadWireSchema = workerLoadWireSchema.extend({
  pending_prefill_tokens: z.number().int().nonnegative().optional(),
  last_event_id: u64.nullable().optional(),
});

export function workerLoadToWire(load: WorkerRankLoad): z.input<typeof workerRankLoadWireSchema> {
  return {
    worker_id: load.workerId,
    dp_rank: load.dpRank,
    active_decode_blocks: load.activeDecodeBlocks,
    total_kv_blocks: load.totalKvBlocks,
    num_running: load.numRunning,
    num_waiting: load.numWaiting,
    kv_usage: Math.min(1, Math.max(0, load.kvUsage)),
    prefix_hit_rate: Math.min(1, Math.max(0, load.prefixHitRate)),
    ...(load.pendingPrefillTokens !== undefined ? { pending_prefill_tokens: load.pendingPrefillTokens } : {}),
    ...(load.lastEventId !== undefined ? { last_event_id: load.lastEventId } : {}),
  };
}

export function workerLoadFromWire(value: unknown): WireResult<WorkerRankLoad> {
  const parsed = workerRankLoadWireSchema.safeParse(value);
  if (!parsed.success) return { ok: false, error: z.prettifyError(parsed.error) };
  const w = parsed.data;
  return {
    ok: true,
    value: {
      workerId: w.worker_id,
      dpRank: w.dp_rank,
      activeDecodeBlocks: w.active_decode_blocks,
      totalKvBlocks: w.total_kv_blocks,
      numRunning: w.num_running,
      numWaiting: w.num_waiting,
      kvUsage: w.kv_usage,
      prefixHitRate: w.prefix_hit_rate,
      ...(w.pending_prefill_tokens !== undefined ? { pendingPrefillTokens: w.pending_prefill_tokens } : {}),
      ...(w.last_event_id !== undefined ? { lastEventId: w.last_event_id } : {}),
    },
  };
}

/** A failed kv_transfer pull: the prefill engine's error code (ENGINE_BOOTSTRAP_*) and message. */
export const kvTransferErrorWireSchema = z.object({
  error_code: z.string().min(1),
  error: z.string(),
});

export type KvTransferAnswer =
  | { readonly ok: true; readonly blocks: readonly bigint[]; readonly tokenIds: readonly number[] }
  | { readonly ok: false; readonly code: string; readonly message: string };

export function kvTransferAnswerToWire(
  answer: KvTransferAnswer,
): z.input<typeof kvTransferAnswerWireSchema> | z.input<typeof kvTransferErrorWireSchema> {
  return answer.ok
    ? { blocks: [...answer.blocks], token_ids: [...answer.tokenIds] }
    : { error_code: answer.code, error: answer.message };
}

export function kvTransferAnswerFromWire(value: unknown): WireResult<KvTransferAnswer> {
  const failure = kvTransferErrorWireSchema.safeParse(value);
  if (failure.success)
    return { ok: true, value: { ok: false, code: failure.data.error_code, message: failure.data.error } };
  const parsed = kvTransferAnswerWireSchema.safeParse(value);
  if (!parsed.success) return { ok: false, error: z.prettifyError(parsed.error) };
  return { ok: true, value: { ok: true, blocks: parsed.data.blocks, tokenIds: parsed.data.token_ids } };
}

/**
 * A worker's endpoint handlers fail with `CODE: message` (the caller sees it as a RemoteError with
 * this text). `WORKER_UNAVAILABLE` means "not here, try another worker" (draining, shutting down):
 * a router migrates such a request instead of failing it.
 */
export const WORKER_UNAVAILABLE = 'WORKER_UNAVAILABLE';
export const WORKER_BAD_REQUEST = 'WORKER_BAD_REQUEST';

export function workerErrorText(code: string, message: string): string {
  return `${code}: ${message}`;
}

/** The code of a worker error text (`CODE: message`), or undefined. */
export function workerErrorCode(text: string): string | undefined {
  const match = /^([A-Z][A-Z0-9_]+): /.exec(text);
  return match?.[1];
}
