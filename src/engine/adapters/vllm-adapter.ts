/**
 * A worker in front of a vLLM OpenAI server (`vllm serve`), aggregated role:
 * - `GET /v1/models` for the served model name; `GET /metrics` for `vllm:cache_config_info`
 *   (`block_size`, `num_gpu_blocks`); vLLM serves no data-parallel size, so it comes from the
 *   operator (`--dp-size`), as do values the metrics lack;
 * - `POST /v1/completions` with the token ids as the prompt, `stream: true`,
 *   `stream_options.include_usage`, `return_token_ids: true` (vLLM >= 0.10.2; the output token ids
 *   per chunk), and the routed rank in the `X-data-parallel-rank` header (vLLM's
 *   `_get_data_parallel_rank`);
 * - `GET /health` for the supervisor.
 * KV events come from `--kv-events-config` (ZMQ publisher, one port per DP rank).
 */
import { z } from 'zod';
import type { WorkerId } from '../../kv/events.ts';
import type { FinishReason, GenerateChunk, GenerateRequest } from '../../protocol/generate.ts';
import { workerErrorText } from '../../protocol/wire.ts';
import type { EngineDescription } from '../../worker/engine-adapter.ts';
import {
  type KvEventsSource,
  RemoteEngineAdapter,
  type RemoteEngineOptions,
  sharedSamplingFields,
} from './remote-engine.ts';
import { EngineProbeError } from './sglang-adapter.ts';
import { sseChunks } from './sse-lines.ts';

export interface VllmServerInfo {
  readonly description: EngineDescription;
  /** The name vLLM serves (the `model` of completions requests). */
  readonly servedModel: string;
}

export interface VllmProbeOverrides {
  readonly dataParallelSize?: number;
  readonly blockSize?: number;
  readonly numGpuBlocks?: number;
  readonly maxNumSeqs?: number;
  readonly maxNumBatchedTokens?: number;
}

/** `label="value"` pairs of the first sample of a Prometheus metric, or null. */
export function metricLabels(text: string, metric: string): Record<string, string> | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const end = line.lastIndexOf('}');
    const labels: Record<string, string> = {};
    for (const m of line.slice(metric.length + 1, end).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[m[1]] = m[2];
    return labels;
  }
  return null;
}

export async function probeVllm(
  baseUrl: string,
  overrides: VllmProbeOverrides = {},
  signal?: AbortSignal,
): Promise<VllmServerInfo> {
  const url = baseUrl.replace(/\/+$/, '');
  const timeout = () => signal ?? AbortSignal.timeout(5000);
  let servedModel: string;
  let metrics = '';
  try {
    const models = await fetch(`${url}/v1/models`, { signal: timeout() });
    if (!models.ok) throw new Error(`/v1/models answered ${models.status}`);
    const body = (await models.json()) as { data?: { id?: unknown }[] };
    const id = body.data?.[0]?.id;
    if (typeof id !== 'string') throw new Error('/v1/models lists no model');
    servedModel = id;
    const m = await fetch(`${url}/metrics`, { signal: timeout() }).catch(() => null);
    if (m?.ok) metrics = await m.text();
  } catch (error) {
    throw new EngineProbeError(
      `vLLM server ${url}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  const cache = metricLabels(metrics, 'vllm:cache_config_info') ?? {};
  const intLabel = (key: string): number | undefined => {
    const n = Number(cache[key]);
    return cache[key] !== undefined && Number.isInteger(n) && n > 0 ? n : undefined;
  };
  const blockSize = overrides.blockSize ?? intLabel('block_size');
  const numGpuBlocks = overrides.numGpuBlocks ?? intLabel('num_gpu_blocks');
  if (blockSize === undefined || numGpuBlocks === undefined)
    throw new EngineProbeError(
      `vLLM server ${url}: block size and KV blocks not in /metrics (vllm:cache_config_info); give --block-size and --num-gpu-blocks`,
    );
  return {
    servedModel,
    description: {
      role: 'aggregated',
      dataParallelSize: overrides.dataParallelSize ?? 1,
      kvBlockSize: blockSize,
      totalKvBlocks: numGpuBlocks,
      maxNumSeqs: overrides.maxNumSeqs ?? 256,
      maxNumBatchedTokens: overrides.maxNumBatchedTokens ?? 8192,
    },
  };
}

const chunkSchema = z.looseObject({
  choices: z
    .array(
      z.looseObject({
        finish_reason: z.string().nullish(),
        token_ids: z.array(z.number().int().min(0)).nullish(),
      }),
    )
    .optional(),
  usage: z
    .looseObject({
      prompt_tokens: z.number().int().min(0),
      completion_tokens: z.number().int().min(0),
      prompt_tokens_details: z.looseObject({ cached_tokens: z.number().int().min(0).nullish() }).nullish(),
    })
    .nullish(),
  error: z.union([z.looseObject({ message: z.string() }), z.string()]).optional(),
});

export interface VllmAdapterOptions extends Omit<RemoteEngineOptions, 'description'> {
  readonly info: VllmServerInfo;
}

export class VllmEngineAdapter extends RemoteEngineAdapter {
  private readonly servedModel: string;

  constructor(options: VllmAdapterOptions) {
    super({ ...options, description: options.info.description });
    this.servedModel = options.info.servedModel;
  }

  static factory(
    url: string,
    info: VllmServerInfo,
    extra: Omit<RemoteEngineOptions, 'workerId' | 'url' | 'description'> & { kvEvents?: KvEventsSource } = {},
  ): (context: { workerId: WorkerId }) => VllmEngineAdapter {
    return ({ workerId }) => new VllmEngineAdapter({ workerId, url, info, ...extra });
  }

  protected async *stream(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<GenerateChunk> {
    if (request.bootstrap !== undefined)
      throw new Error(
        workerErrorText('ENGINE_MODE_MISMATCH', 'the vLLM adapter serves the aggregated role only'),
      );
    const s = request.sampling;
    const body = {
      model: this.servedModel,
      prompt: request.tokenIds,
      max_tokens: s.maxTokens,
      stream: true,
      stream_options: { include_usage: true },
      return_token_ids: true,
      ...sharedSamplingFields(s),
      ...(s.seed !== undefined ? { seed: s.seed } : {}),
    };
    const headers: Record<string, string> = { 'x-request-id': request.requestId };
    if (request.dpRank !== undefined) headers['X-data-parallel-rank'] = String(request.dpRank);
    const responseBody = await this.post('/v1/completions', body, signal, headers);
    let generated = 0;
    let finish: FinishReason | undefined;
    let finishText: string | undefined;
    for await (const parsed of sseChunks(responseBody, chunkSchema, 'vLLM')) {
      const choice = parsed.choices?.[0];
      if (choice !== undefined) {
        if (choice.token_ids === undefined || choice.token_ids === null)
          throw new Error(
            workerErrorText(
              'ENGINE_BAD_RESPONSE',
              'vLLM sent no token_ids: it needs return_token_ids (vLLM >= 0.10.2)',
            ),
          );
        const ids = choice.token_ids;
        generated += ids.length;
        if (choice.finish_reason !== undefined && choice.finish_reason !== null) {
          finishText = choice.finish_reason;
          finish = finishText === 'length' ? 'length' : finishText === 'stop' ? 'stop' : 'error';
        }
        if (ids.length > 0) yield { tokenIds: ids };
      }
      if (parsed.usage !== undefined && parsed.usage !== null && finish !== undefined) {
        const u = parsed.usage;
        yield {
          tokenIds: [],
          finishReason: finish,
          usage: {
            promptTokens: u.prompt_tokens,
            completionTokens: u.completion_tokens,
            cachedTokens: u.prompt_tokens_details?.cached_tokens ?? 0,
          },
          ...(finish === 'error' ? { error: `vLLM finished with ${finishText}` } : {}),
        };
        return;
      }
    }
    if (finish === undefined)
      throw new Error(workerErrorText('ENGINE_BAD_RESPONSE', 'vLLM stream ended without a finish reason'));
    yield {
      tokenIds: [],
      finishReason: finish,
      usage: { promptTokens: request.tokenIds.length, completionTokens: generated, cachedTokens: 0 },
      ...(finish === 'error' ? { error: `vLLM finished with ${finishText}` } : {}),
    };
  }
}
