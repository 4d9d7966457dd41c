/**
 * A worker in front of an SGLang server (`python -m sglang.launch_server`), over its native HTTP API:
 * - `GET /server_info` (older releases: `/get_server_info`): server args + scheduler info → the
 *   model card (`data_parallel_size = dp_size`, `kv_block_size = page_size`, `total_kv_blocks =
 *   ceil(max_total_num_tokens / page_size)`, role from `disaggregation_mode`, the bootstrap port);
 * - `POST /generate` with `input_ids`, `sampling_params`, `stream: true` (SSE of cumulative
 *   `output_ids` + `meta_info`), the routed rank as `data_parallel_rank` (and `routed_dp_rank`, its
 *   newer name), and for disaggregation `bootstrap_host/port/room` on both sides plus
 *   `disagg_prefill_dp_rank` on the decode side. Rooms are drawn with `room % dp_size == rank`, so
 *   SGLang releases that derive the prefill rank from the room agree with the rank we send;
 * - `GET /health` for the supervisor.
 * KV events come from the server's ZMQ publisher (`--kv-events-config`), see zmq-kv-subscriber.ts.
 */
import { z } from 'zod';
import type { WorkerId } from '../../kv/events.ts';
import type { FinishReason, GenerateChunk, GenerateRequest, WorkerRole } from '../../protocol/generate.ts';
import { workerErrorText } from '../../protocol/wire.ts';
import type { BootstrapEndpoint } from '../../runtime/model-card.ts';
import type { EngineDescription } from '../../worker/engine-adapter.ts';
import {
  type KvEventsSource,
  RemoteEngineAdapter,
  type RemoteEngineOptions,
  sharedSamplingFields,
} from './remote-engine.ts';
import { sseChunks } from './sse-lines.ts';

const serverInfoSchema = z.looseObject({
  dp_size: z.number().int().positive().optional(),
  page_size: z.number().int().positive().nullish(),
  max_total_num_tokens: z.number().int().positive().optional(),
  max_running_requests: z.number().int().positive().nullish(),
  chunked_prefill_size: z.number().int().nullish(),
  max_prefill_tokens: z.number().int().positive().nullish(),
  disaggregation_mode: z.string().nullish(),
  disaggregation_bootstrap_port: z.number().int().min(1).max(65535).nullish(),
  kv_events_config: z.string().nullish(),
  served_model_name: z.string().nullish(),
  model_path: z.string().nullish(),
  internal_states: z.array(z.looseObject({})).optional(),
});

export interface SglangServerInfo {
  readonly description: EngineDescription;
  /** Prefill role: where decode servers fetch KV (the engine's host and bootstrap port). */
  readonly bootstrap?: BootstrapEndpoint;
  /** From the server's `kv_events_config` (wildcard hosts replaced by the engine's host). */
  readonly kvEvents?: KvEventsSource;
  readonly modelName?: string;
}

export class EngineProbeError extends Error {
  readonly code = 'ENGINE_PROBE_FAILED';
  override readonly name = 'EngineProbeError';
}

async function getJson(url: string, signal?: AbortSignal): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, { signal: signal ?? AbortSignal.timeout(5000) });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, body };
}

/** Reads an SGLang server's info; throws EngineProbeError when it is unreachable or not SGLang. */
export async function probeSglang(baseUrl: string, signal?: AbortSignal): Promise<SglangServerInfo> {
  const url = baseUrl.replace(/\/+$/, '');
  let answer: { status: number; body: unknown };
  try {
    answer = await getJson(`${url}/server_info`, signal);
    if (answer.status === 404) answer = await getJson(`${url}/get_server_info`, signal);
  } catch (error) {
    throw new EngineProbeError(`SGLang server ${url} unreachable: ${String(error)}`);
  }
  if (answer.status !== 200) throw new EngineProbeError(`SGLang server info answered ${answer.status}`);
  const parsed = serverInfoSchema.safeParse(answer.body);
  if (!parsed.success) throw new EngineProbeError(`SGLang server info: ${parsed.error.message}`);
  const info = parsed.data;
  const state = info.internal_states?.[0] ?? {};
  const fromState = (key: string): number | undefined => {
    const v = (state as Record<string, unknown>)[key];
    return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
  };
  const pageSize = info.page_size ?? 1;
  const maxTotalTokens = info.max_total_num_tokens ?? fromState('max_total_num_tokens');
  if (maxTotalTokens === undefined)
    throw new EngineProbeError('SGLang server info has no max_total_num_tokens');
  const mode = info.disaggregation_mode ?? 'null';
  if (mode !== 'null' && mode !== 'prefill' && mode !== 'decode')
    throw new EngineProbeError(`unknown disaggregation_mode ${JSON.stringify(mode)}`);
  const role: WorkerRole = mode === 'null' ? 'aggregated' : mode;
  const chunked = info.chunked_prefill_size ?? -1;
  const description: EngineDescription = {
    role,
    dataParallelSize: info.dp_size ?? 1,
    kvBlockSize: pageSize,
    totalKvBlocks: Math.ceil(maxTotalTokens / pageSize),
    maxNumSeqs: info.max_running_requests ?? fromState('max_running_requests') ?? 256,
    maxNumBatchedTokens: chunked > 0 ? chunked : (info.max_prefill_tokens ?? 16384),
  };
  const host = new URL(url).hostname;
  const out: {
    description: EngineDescription;
    bootstrap?: BootstrapEndpoint;
    kvEvents?: KvEventsSource;
    modelName?: string;
  } = { description };
  if (role === 'prefill') out.bootstrap = { host, port: info.disaggregation_bootstrap_port ?? 8998 };
  const kvEvents = kvEventsFromConfig(info.kv_events_config ?? null, host);
  if (kvEvents !== undefined) out.kvEvents = kvEvents;
  const name = info.served_model_name ?? info.model_path;
  if (name) out.modelName = name;
  return out;
}

/** The subscriber side of an engine's `kv_events_config` JSON (a `*` or `0.0.0.0` bind → `host`). */
export function kvEventsFromConfig(config: string | null, host: string): KvEventsSource | undefined {
  if (config === null || config === '') return undefined;
  let value: { publisher?: unknown; endpoint?: unknown; replay_endpoint?: unknown; topic?: unknown };
  try {
    value = JSON.parse(config);
  } catch {
    return undefined;
  }
  if (value.publisher !== 'zmq') return undefined;
  const connectable = (endpoint: unknown): string | undefined => {
    if (typeof endpoint !== 'string') return undefined;
    const m = /^tcp:\/\/(\*|0\.0\.0\.0|\[::\]|[^:]+):(\d+)$/.exec(endpoint);
    if (m === null) return undefined;
    const h = m[1] === '*' || m[1] === '0.0.0.0' || m[1] === '[::]' ? host : m[1];
    return `tcp://${h}:${m[2]}`;
  };
  const endpoint = connectable(value.endpoint ?? 'tcp://*:5557');
  if (endpoint === undefined) return undefined;
  const replay = connectable(value.replay_endpoint);
  return {
    endpoint,
    ...(replay !== undefined ? { replayEndpoint: replay } : {}),
    ...(typeof value.topic === 'string' && value.topic !== '' ? { topic: value.topic } : {}),
  };
}

/** A bootstrap room on `rank`: a safe integer with room % dpSize == rank. */
export function roomForRank(rank: number, dpSize: number, random: () => number = Math.random): number {
  const slots = Math.floor(Number.MAX_SAFE_INTEGER / dpSize);
  return Math.floor(random() * slots) * dpSize + rank;
}

const finishSchema = z.looseObject({ type: z.string(), message: z.string().optional() }).nullish();
const chunkSchema = z.looseObject({
  output_ids: z.array(z.number().int().min(0)).optional(),
  meta_info: z
    .looseObject({
      finish_reason: finishSchema,
      prompt_tokens: z.number().int().min(0).optional(),
      completion_tokens: z.number().int().min(0).optional(),
      cached_tokens: z.number().int().min(0).optional(),
    })
    .optional(),
  error: z.union([z.looseObject({ message: z.string() }), z.string()]).optional(),
});

export interface SglangAdapterOptions extends Omit<RemoteEngineOptions, 'description'> {
  readonly info: SglangServerInfo;
}

export class SglangEngineAdapter extends RemoteEngineAdapter {
  private readonly bootstrap: BootstrapEndpoint | undefined;

  constructor(options: SglangAdapterOptions) {
    super({ ...options, description: options.info.description });
    this.bootstrap = options.info.bootstrap;
  }

  /** The factory a Worker takes: the engine's info is probed once, before the worker starts. */
  static factory(
    url: string,
    info: SglangServerInfo,
    extra: Omit<RemoteEngineOptions, 'workerId' | 'url' | 'description'> = {},
  ): (context: { workerId: WorkerId }) => SglangEngineAdapter {
    return ({ workerId }) =>
      new SglangEngineAdapter({
        workerId,
        url,
        info,
        ...(info.kvEvents !== undefined ? { kvEvents: info.kvEvents } : {}),
        ...extra,
      });
  }

  protected async *stream(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<GenerateChunk> {
    const { role, dataParallelSize } = this.description;
    if (role === 'decode' && request.bootstrap === undefined)
      throw new Error(
        workerErrorText('ENGINE_MODE_MISMATCH', 'an SGLang decode server needs bootstrap info'),
      );
    if (role !== 'decode' && request.bootstrap !== undefined)
      throw new Error(
        workerErrorText('ENGINE_MODE_MISMATCH', `an SGLang ${role} server does not take bootstrap info`),
      );
    const s = request.sampling;
    const body: Record<string, unknown> = {
      rid: request.requestId,
      input_ids: request.tokenIds,
      sampling_params: {
        max_new_tokens: s.maxTokens,
        ...sharedSamplingFields(s),
        ...(s.seed !== undefined ? { sampling_seed: s.seed } : {}),
      },
      stream: true,
    };
    let rank = request.dpRank;
    let first: GenerateChunk | undefined;
    if (role === 'prefill') {
      // SGLang's prefill needs a rank for the room; without a routed one, draw it with the room.
      const room = roomForRank(rank ?? Math.floor(Math.random() * dataParallelSize), dataParallelSize);
      rank ??= room % dataParallelSize;
      const endpoint = this.bootstrap ?? { host: new URL(this.url).hostname, port: 8998 };
      body.bootstrap_host = endpoint.host;
      body.bootstrap_port = endpoint.port;
      body.bootstrap_room = room;
      first = {
        tokenIds: [],
        dpRank: rank,
        bootstrap: { ...endpoint, room, prefillWorkerId: this.workerId, prefillDpRank: rank },
      };
    } else if (request.bootstrap !== undefined) {
      const b = request.bootstrap;
      body.bootstrap_host = b.host;
      body.bootstrap_port = b.port;
      body.bootstrap_room = b.room;
      body.disagg_prefill_dp_rank = b.prefillDpRank;
    }
    if (rank !== undefined) {
      body.data_parallel_rank = rank;
      body.routed_dp_rank = rank;
    }
    const responseBody = await this.post('/generate', body, signal);
    // The prefill's KV waits for its decode: hand the bootstrap info out before the prefill ends.
    if (first !== undefined) yield first;
    let emitted = 0;
    let promptTokens = request.tokenIds.length;
    let cachedTokens = 0;
    for await (const parsed of sseChunks(responseBody, chunkSchema, 'SGLang')) {
      const ids = parsed.output_ids ?? [];
      const meta = parsed.meta_info ?? {};
      const completion = meta.completion_tokens;
      // Default SGLang streams cumulative output_ids; with --stream-output they are incremental.
      const fresh = completion !== undefined && ids.length === completion ? ids.slice(emitted) : ids;
      emitted += fresh.length;
      if (meta.prompt_tokens !== undefined) promptTokens = meta.prompt_tokens;
      if (meta.cached_tokens !== undefined) cachedTokens = meta.cached_tokens;
      const finish = meta.finish_reason;
      if (finish === null || finish === undefined) {
        if (fresh.length > 0) yield { tokenIds: fresh };
        continue;
      }
      const reason: FinishReason =
        finish.type === 'length' ? 'length' : finish.type === 'stop' ? 'stop' : 'error';
      yield {
        tokenIds: fresh,
        finishReason: reason,
        usage: { promptTokens, completionTokens: emitted, cachedTokens },
        ...(reason === 'error' ? { error: finish.message ?? `SGLang finished with ${finish.type}` } : {}),
      };
      return;
    }
    throw new Error(workerErrorText('ENGINE_BAD_RESPONSE', 'SGLang stream ended without a finish reason'));
  }
}
