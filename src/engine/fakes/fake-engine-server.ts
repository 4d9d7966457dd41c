/**
 * The mock engine (`DataParallelEngine`) behind SGLang's or vLLM's HTTP API and ZMQ KV-event
 * format, for tests of the adapters: field names and framing as the engines define them.
 *
 * SGLang API: `GET /health`, `GET /server_info` and `/get_server_info` (server args + scheduler
 * info), `POST /generate` (`input_ids`, `sampling_params`, `stream`, `rid`, `data_parallel_rank` /
 * `routed_dp_rank`, `bootstrap_host/port/room`, `disagg_prefill_dp_rank`; SSE of cumulative
 * `output_ids` + `meta_info`, then `data: [DONE]`). Prefill mode also serves a bootstrap server on
 * `bootstrapPort` from which decode fakes pull a room's KV (`POST /kv_transfer`, `GET /route`).
 * vLLM API: `GET /health`, `GET /v1/models`, `GET /metrics` (`vllm:cache_config_info`),
 * `POST /v1/completions` (token-id prompt, rank in the `X-data-parallel-rank` header,
 * `return_token_ids`, `stream_options.include_usage`).
 * Both: `GET /debug/requests` lists what each request carried (rank fields, bootstrap room, prefill
 * rank) and `GET /debug/claims` the rooms decode servers claimed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BootstrapInfo, GenerateRequest } from '../../protocol/generate.ts';
import { BlockHasher } from '../../tokens/block-hash.ts';
import { log } from '../../util/log.ts';
import { DataParallelEngine } from '../data-parallel-engine.ts';
import { EngineError } from '../errors.ts';
import type { EngineOptions } from '../options.ts';
import { ChunkStream } from '../stream.ts';
import {
  FakeBootstrapServer,
  httpKvTransfer,
  prefillRankFromRoom,
  type RecordedClaim,
} from './fake-bootstrap.ts';
import { FakeKvEventSource, TrackedStream } from './fake-kv-events.ts';
import {
  closeServer,
  HttpError,
  headerInt,
  intField,
  json,
  listen,
  readJson,
  tokenList,
} from './http-util.ts';
import { FakeKvPublisher } from './zmq-kv-publisher.ts';

export type { RecordedClaim } from './fake-bootstrap.ts';

export type FakeApi = 'sglang' | 'vllm';
export type DisaggregationMode = 'null' | 'prefill' | 'decode';

export interface FakeEngineOptions {
  readonly api: FakeApi;
  readonly host?: string;
  /** HTTP port (0 = any free port). */
  readonly port?: number;
  /** Rank 0's KV-event PUB port (rank r: + r); absent = no KV events. */
  readonly zmqPort?: number;
  /** Rank 0's replay ROUTER port (rank r: + r); absent = no replay socket. */
  readonly replayPort?: number;
  readonly dataParallelSize?: number;
  readonly disaggregationMode?: DisaggregationMode;
  /** Prefill mode: the bootstrap server's port (default 8998; 0 = any free port). */
  readonly bootstrapPort?: number;
  readonly modelName?: string;
  /** Mock engine settings (block size = page size, blocks per rank, speed). */
  readonly engine?: Partial<EngineOptions>;
}

/** What one request carried, as the fake received it. */
export interface RecordedRequest {
  readonly rid: string;
  /** `data_parallel_rank` (SGLang body), null when absent. */
  readonly dataParallelRank: number | null;
  /** `routed_dp_rank` (newer SGLang body), null when absent. */
  readonly routedDpRank: number | null;
  /** `X-data-parallel-rank` header, null when absent. */
  readonly headerRank: number | null;
  /** The rank the request ran on. */
  readonly rank: number;
  readonly bootstrapHost: string | null;
  readonly bootstrapPort: number | null;
  readonly bootstrapRoom: number | null;
  /** Decode side: `disagg_prefill_dp_rank` as received, null when absent. */
  readonly prefillDpRank: number | null;
}

export class FakeEngineServer {
  readonly options: FakeEngineOptions;
  readonly engine: DataParallelEngine;
  readonly requests: RecordedRequest[] = [];
  readonly publisher: FakeKvPublisher | null;
  private readonly http: Server;
  private bootstrap: FakeBootstrapServer | null = null;
  private readonly kvEvents: FakeKvEventSource | null;
  private ridCounter = 0;
  private closed = false;

  private constructor(options: FakeEngineOptions, publisher: FakeKvPublisher | null) {
    this.options = options;
    this.publisher = publisher;
    const mode = options.disaggregationMode ?? 'null';
    this.engine = new DataParallelEngine({
      speedupRatio: 0,
      blockSize: 16,
      numGpuBlocks: 4096,
      ...options.engine,
      dataParallelSize: options.dataParallelSize ?? 1,
      mode: mode === 'null' ? 'aggregated' : mode,
      ...(mode === 'decode' ? { transfer: httpKvTransfer() } : {}),
      // The fake publishes its own events over ZMQ, including a decode server's.
      publishKvEvents: publisher !== null,
    });
    const hasher = new BlockHasher({
      blockSize: this.engine.options.blockSize,
      ...(this.engine.options.hashSeed !== undefined ? { seed: this.engine.options.hashSeed } : {}),
    });
    this.kvEvents = publisher === null ? null : new FakeKvEventSource(hasher, publisher);
    if (this.kvEvents !== null) {
      const source = this.kvEvents;
      this.engine.onKvEvent((event) => source.collect(event));
    }
    this.http = createServer((req, res) => {
      void this.route(req, res).catch((error: unknown) => this.fail(res, error));
    });
  }

  static async start(options: FakeEngineOptions): Promise<FakeEngineServer> {
    const publisher =
      options.zmqPort === undefined
        ? null
        : await FakeKvPublisher.start({
            ...(options.host !== undefined ? { host: options.host } : {}),
            port: options.zmqPort,
            ...(options.replayPort !== undefined ? { replayPort: options.replayPort } : {}),
            dataParallelSize: options.dataParallelSize ?? 1,
            layout: options.api === 'sglang' ? 'array' : 'map',
          });
    const server = new FakeEngineServer(options, publisher);
    try {
      await listen(server.http, options.port ?? 0, options.host ?? '127.0.0.1');
      if ((options.disaggregationMode ?? 'null') === 'prefill') {
        server.bootstrap = await FakeBootstrapServer.start(
          server.engine,
          options.bootstrapPort ?? 8998,
          options.host ?? '127.0.0.1',
          (res, error) => server.fail(res, error),
        );
      }
    } catch (error) {
      await server.close();
      throw error;
    }
    return server;
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://${this.options.host ?? '127.0.0.1'}:${this.port}`;
  }

  get bootstrapPort(): number | null {
    return this.bootstrap?.port ?? null;
  }

  /** Prefill mode: the rooms decode servers claimed (and from which rank). */
  get claims(): readonly RecordedClaim[] {
    return this.bootstrap?.claims ?? [];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.engine.close();
    this.publisher?.close();
    this.http.closeAllConnections();
    await Promise.all([closeServer(this.http), this.bootstrap?.close()]);
  }

  // ---- KV events -------------------------------------------------------------------------------

  // ---- HTTP ------------------------------------------------------------------------------------

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const api = this.options.api;
    if (req.method === 'GET' && path === '/health') return void res.writeHead(200).end();
    if (req.method === 'GET' && path === '/debug/requests') return json(res, 200, this.requests);
    if (req.method === 'GET' && path === '/debug/claims') return json(res, 200, this.claims);
    if (api === 'sglang') {
      if (req.method === 'GET' && (path === '/server_info' || path === '/get_server_info'))
        return json(res, 200, this.sglangServerInfo());
      if ((req.method === 'POST' || req.method === 'PUT') && path === '/generate')
        return this.sglangGenerate(req, res, await readJson(req));
    } else {
      if (req.method === 'GET' && path === '/v1/models')
        return json(res, 200, {
          object: 'list',
          data: [{ id: this.modelName, object: 'model', owned_by: 'vllm', root: this.modelName }],
        });
      if (req.method === 'GET' && path === '/metrics') return void res.writeHead(200).end(this.vllmMetrics());
      if (req.method === 'POST' && path === '/v1/completions')
        return this.vllmCompletions(req, res, await readJson(req));
    }
    throw new HttpError(404, `no route ${req.method} ${path}`);
  }

  private get modelName(): string {
    return this.options.modelName ?? 'fake-model';
  }

  private sglangServerInfo(): Record<string, unknown> {
    const o = this.engine.options;
    const mode = this.options.disaggregationMode ?? 'null';
    const zmq = this.options.zmqPort;
    return {
      model_path: this.modelName,
      served_model_name: this.modelName,
      dp_size: o.dataParallelSize,
      page_size: o.blockSize,
      max_running_requests: o.maxNumSeqs,
      chunked_prefill_size: o.maxNumBatchedTokens,
      max_prefill_tokens: 16384,
      disaggregation_mode: mode,
      disaggregation_bootstrap_port: this.bootstrapPort ?? this.options.bootstrapPort ?? 8998,
      kv_events_config:
        zmq === undefined
          ? null
          : JSON.stringify({
              publisher: 'zmq',
              endpoint: `tcp://*:${zmq}`,
              ...(this.options.replayPort !== undefined
                ? { replay_endpoint: `tcp://*:${this.options.replayPort}` }
                : {}),
            }),
      max_total_num_tokens: o.numGpuBlocks * o.blockSize,
      max_req_input_len: o.numGpuBlocks * o.blockSize - 1,
      internal_states: [{ last_gen_throughput: 0 }],
      version: '0.0.0-kvgate-fake',
    };
  }

  private vllmMetrics(): string {
    const o = this.engine.options;
    return [
      '# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig',
      '# TYPE vllm:cache_config_info gauge',
      `vllm:cache_config_info{block_size="${o.blockSize}",enable_prefix_caching="True",num_gpu_blocks="${o.numGpuBlocks}"} 1.0`,
      '',
    ].join('\n');
  }

  private rankField(value: unknown, name: string): number | null {
    if (value === undefined || value === null) return null;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
      throw new HttpError(400, `${name} must be a non-negative integer`);
    return value;
  }

  private async sglangGenerate(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) {
    if (body.stream !== true) throw new HttpError(400, 'this fake serves stream: true only');
    const tokens = tokenList(body.input_ids, 'input_ids');
    const sp = (body.sampling_params ?? {}) as Record<string, unknown>;
    const dataParallelRank = this.rankField(body.data_parallel_rank, 'data_parallel_rank');
    const routedDpRank = this.rankField(body.routed_dp_rank, 'routed_dp_rank');
    const headerRank = headerInt(req, 'x-data-parallel-rank');
    const rid = typeof body.rid === 'string' ? body.rid : `fake-${++this.ridCounter}`;
    const mode = this.options.disaggregationMode ?? 'null';
    const room =
      body.bootstrap_room === undefined || body.bootstrap_room === null ? null : Number(body.bootstrap_room);
    const prefillDpRank = this.rankField(body.disagg_prefill_dp_rank, 'disagg_prefill_dp_rank');
    if (mode !== 'null' && (room === null || !Number.isSafeInteger(room)))
      throw new HttpError(400, `disaggregation mode ${mode} needs bootstrap_room`);
    const rank = routedDpRank ?? dataParallelRank ?? headerRank ?? undefined;
    let bootstrap: BootstrapInfo | undefined;
    if (mode === 'decode') {
      const host = String(body.bootstrap_host ?? '');
      const port = Number(body.bootstrap_port);
      bootstrap = {
        host,
        port,
        room: room!,
        prefillWorkerId: 0n,
        prefillDpRank: prefillDpRank ?? (await prefillRankFromRoom(host, port, room!)),
      };
    }
    const request: GenerateRequest = {
      requestId: rid,
      tokenIds: tokens,
      sampling: {
        maxTokens: intField(sp.max_new_tokens, 128),
        ...(sp.ignore_eos === true ? { ignoreEos: true } : {}),
        ...(Array.isArray(sp.stop_token_ids)
          ? { stopTokenIds: tokenList(sp.stop_token_ids, 'stop_token_ids') }
          : {}),
        ...(typeof sp.sampling_seed === 'number' ? { seed: sp.sampling_seed } : {}),
      },
      ...(rank !== undefined ? { dpRank: rank } : {}),
      ...(bootstrap !== undefined ? { bootstrap } : {}),
    };
    const stream = this.submit(request, res);
    let ranOn = -1;
    const record = (actual: number) =>
      this.requests.push({
        rid,
        dataParallelRank,
        routedDpRank,
        headerRank,
        rank: actual,
        bootstrapHost: typeof body.bootstrap_host === 'string' ? body.bootstrap_host : null,
        bootstrapPort: typeof body.bootstrap_port === 'number' ? body.bootstrap_port : null,
        bootstrapRoom: room,
        prefillDpRank,
      });
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const output: number[] = [];
    let cached = 0;
    try {
      for await (const chunk of stream) {
        if (chunk.dpRank !== undefined && ranOn < 0) {
          ranOn = chunk.dpRank;
          record(ranOn);
        }
        if (chunk.bootstrap !== undefined && mode === 'prefill' && room !== null) {
          this.bootstrap?.open(room, chunk.bootstrap.room, chunk.bootstrap.prefillDpRank);
        }
        output.push(...chunk.tokenIds);
        if (chunk.usage !== undefined) cached = chunk.usage.cachedTokens;
        const finish =
          chunk.finishReason === undefined
            ? null
            : chunk.finishReason === 'length'
              ? { type: 'length', length: output.length }
              : chunk.finishReason === 'stop'
                ? { type: 'stop', matched: output.at(-1) ?? null }
                : { type: 'abort', message: chunk.error ?? chunk.finishReason };
        if (chunk.tokenIds.length === 0 && finish === null) continue;
        res.write(
          `data: ${JSON.stringify({
            output_ids: output,
            meta_info: {
              id: rid,
              finish_reason: finish,
              prompt_tokens: tokens.length,
              completion_tokens: output.length,
              cached_tokens: cached,
            },
          })}\n\n`,
        );
      }
    } catch (error) {
      res.write(
        `data: ${JSON.stringify({ error: { message: String((error as Error).message ?? error) } })}\n\n`,
      );
    }
    if (ranOn < 0) record(rank ?? -1);
    res.end('data: [DONE]\n\n');
  }

  private async vllmCompletions(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) {
    if (body.stream !== true) throw new HttpError(400, 'this fake serves stream: true only');
    if (body.model !== this.modelName)
      throw new HttpError(404, `The model \`${String(body.model)}\` does not exist.`);
    const tokens = tokenList(body.prompt, 'prompt');
    const headerRank = headerInt(req, 'x-data-parallel-rank');
    const rid = `cmpl-${++this.ridCounter}`;
    const request: GenerateRequest = {
      requestId: typeof body.request_id === 'string' ? body.request_id : rid,
      tokenIds: tokens,
      sampling: {
        maxTokens: intField(body.max_tokens, 16),
        ...(body.ignore_eos === true ? { ignoreEos: true } : {}),
        ...(Array.isArray(body.stop_token_ids)
          ? { stopTokenIds: tokenList(body.stop_token_ids, 'stop_token_ids') }
          : {}),
        ...(typeof body.seed === 'number' ? { seed: body.seed } : {}),
      },
      ...(headerRank !== null ? { dpRank: headerRank } : {}),
    };
    const stream = this.submit(request, res);
    const includeUsage =
      (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const withIds = body.return_token_ids === true;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const base = {
      id: request.requestId,
      object: 'text_completion',
      created: Math.floor(Date.now() / 1000),
      model: this.modelName,
    };
    let generated = 0;
    let cached = 0;
    let recorded = false;
    let first = true;
    try {
      for await (const chunk of stream) {
        if (!recorded && chunk.dpRank !== undefined) {
          recorded = true;
          this.requests.push({
            rid: request.requestId,
            dataParallelRank: null,
            routedDpRank: null,
            headerRank,
            rank: chunk.dpRank,
            bootstrapHost: null,
            bootstrapPort: null,
            bootstrapRoom: null,
            prefillDpRank: null,
          });
        }
        generated += chunk.tokenIds.length;
        if (chunk.usage !== undefined) cached = chunk.usage.cachedTokens;
        if (chunk.tokenIds.length === 0 && chunk.finishReason === undefined) continue;
        const choice = {
          index: 0,
          text: '',
          logprobs: null,
          finish_reason:
            chunk.finishReason === undefined
              ? null
              : chunk.finishReason === 'error'
                ? 'abort'
                : chunk.finishReason,
          stop_reason: null,
          ...(withIds ? { token_ids: chunk.tokenIds, ...(first ? { prompt_token_ids: tokens } : {}) } : {}),
        };
        first = false;
        res.write(`data: ${JSON.stringify({ ...base, choices: [choice] })}\n\n`);
      }
    } catch (error) {
      res.write(
        `data: ${JSON.stringify({ error: { message: String((error as Error).message ?? error), type: 'BadRequestError', code: 400 } })}\n\n`,
      );
    }
    if (includeUsage)
      res.write(
        `data: ${JSON.stringify({
          ...base,
          choices: [],
          usage: {
            prompt_tokens: tokens.length,
            completion_tokens: generated,
            total_tokens: tokens.length + generated,
            prompt_tokens_details: { cached_tokens: cached },
          },
        })}\n\n`,
      );
    res.end('data: [DONE]\n\n');
  }

  /** Starts a request on the engine; its stream ends early (cancel) when the client goes away. */
  private submit(request: GenerateRequest, res: ServerResponse): ChunkStream {
    const cancel = () => this.engine.cancel(request.requestId);
    const stream =
      this.kvEvents === null
        ? new ChunkStream(cancel)
        : new TrackedStream(cancel, this.kvEvents.track(request.tokenIds));
    const controller = new AbortController();
    res.on('close', () => controller.abort());
    try {
      this.engine.submit(request, stream, controller.signal);
    } catch (error) {
      if (error instanceof EngineError) throw new HttpError(400, `${error.code}: ${error.message}`);
      throw error;
    }
    return stream;
  }

  private fail(res: ServerResponse, error: unknown): void {
    const status = error instanceof HttpError ? error.status : 500;
    if (!(error instanceof HttpError)) log.error({ err: error }, 'fake engine: request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    json(res, status, { object: 'error', error: { message: (error as Error).message }, code: status });
  }
}
