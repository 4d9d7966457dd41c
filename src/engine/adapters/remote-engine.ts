/**
 * What the SGLang and vLLM adapters share: the worker's per-rank view of the engine's KV blocks
 * (fed by the engine's ZMQ KV events, answering the router's kv_indexer_query), load tracked from
 * the requests this worker sends, and the mapping of HTTP failures to coded worker errors (an
 * unreachable engine is WORKER_UNAVAILABLE, so routers send the request elsewhere).
 */
import type { KvCacheEvent, KvEventData, WorkerId } from '../../kv/events.ts';
import { RadixTreeIndexer } from '../../kv/radix-tree.ts';
import type { GenerateChunk, GenerateRequest, SamplingOptions } from '../../protocol/generate.ts';
import { WORKER_UNAVAILABLE, workerErrorText } from '../../protocol/wire.ts';
import { BlockHasher } from '../../tokens/block-hash.ts';
import { log } from '../../util/log.ts';
import type {
  EngineAdapter,
  EngineDescription,
  EngineRankLoad,
  RankDump,
} from '../../worker/engine-adapter.ts';
import { type EventRangeResult, LocalIndexer } from '../local-indexer.ts';
import { DEFAULT_LOCAL_INDEXER_BUFFER_SIZE } from '../options.ts';
import { ZmqKvSubscriber, type ZmqKvSubscriberStats } from './zmq-kv-subscriber.ts';

export interface KvEventsSource {
  /** `tcp://host:port` of rank 0's publisher (rank r: port + r). */
  readonly endpoint: string;
  /** `tcp://host:port` of rank 0's replay socket, if the engine runs one. */
  readonly replayEndpoint?: string;
  readonly topic?: string;
}

export interface RemoteEngineOptions {
  readonly workerId: WorkerId;
  /** Base URL of the engine's HTTP server, e.g. http://127.0.0.1:30000. */
  readonly url: string;
  readonly description: EngineDescription;
  readonly kvEvents?: KvEventsSource;
  /** Hash seed of tokens_hash (default Dynamo's 1337). */
  readonly hashSeed?: bigint;
}

/** One request's share of its rank's load. */
interface InFlight {
  readonly dpRank: number;
  readonly promptTokens: number;
  generated: number;
  prefilled: boolean;
}

export abstract class RemoteEngineAdapter implements EngineAdapter {
  readonly description: EngineDescription;
  readonly workerId: WorkerId;
  readonly url: string;
  /**
   * The worker's own view of each rank's KV blocks, built from the events it publishes (the real
   * engines keep none we could query); it answers kv_indexer_query like the mock engine's.
   */
  private readonly logs: LocalIndexer[] = [];
  /**
   * Event ids are this worker's own, dense per rank: a ZMQ batch (one engine sequence number) may
   * carry several events, and routers want one id per event, increasing by one.
   */
  private readonly nextEventIds: bigint[] = [];
  private readonly listeners = new Set<(event: KvCacheEvent) => void>();
  private readonly subscriber: ZmqKvSubscriber | null;
  private readonly inFlight = new Set<InFlight>();
  private readonly controllers = new Set<AbortController>();
  private closed = false;
  /** Called when a request finds the engine unreachable (the supervisor checks its health at once). */
  onUnreachable: (() => void) | null = null;

  constructor(options: RemoteEngineOptions) {
    this.description = options.description;
    this.workerId = options.workerId;
    this.url = options.url.replace(/\/+$/, '');
    for (let rank = 0; rank < options.description.dataParallelSize; rank++) {
      this.logs.push(
        new LocalIndexer(options.workerId, rank, DEFAULT_LOCAL_INDEXER_BUFFER_SIZE, new RadixTreeIndexer()),
      );
      this.nextEventIds.push(0n);
    }
    this.subscriber =
      options.kvEvents === undefined
        ? null
        : new ZmqKvSubscriber({
            endpoint: options.kvEvents.endpoint,
            ...(options.kvEvents.replayEndpoint !== undefined
              ? { replayEndpoint: options.kvEvents.replayEndpoint }
              : {}),
            ...(options.kvEvents.topic !== undefined ? { topic: options.kvEvents.topic } : {}),
            dataParallelSize: options.description.dataParallelSize,
            hasher: new BlockHasher({
              blockSize: options.description.kvBlockSize,
              ...(options.hashSeed !== undefined ? { seed: options.hashSeed } : {}),
            }),
            sink: {
              apply: (dpRank, _seq, data) => this.publish(dpRank, data),
              reset: (dpRank) => this.forgetRank(dpRank),
            },
          });
  }

  /** Streams one request from the engine; `signal` aborts the HTTP call. */
  protected abstract stream(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<GenerateChunk>;

  generate(request: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateChunk> {
    const size = this.description.dataParallelSize;
    if (request.dpRank !== undefined && (!Number.isInteger(request.dpRank) || request.dpRank >= size))
      throw Object.assign(new Error(`rank ${request.dpRank} out of range [0, ${size})`), {
        code: 'ENGINE_RANK_OUT_OF_RANGE',
      });
    return this.tracked(request, signal);
  }

  private async *tracked(request: GenerateRequest, signal: AbortSignal): AsyncGenerator<GenerateChunk> {
    // Aborting on the caller's signal, and on close (or an early return), ends the upstream call.
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal.reason);
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener('abort', onAbort, { once: true });
    this.controllers.add(controller);
    const entry: InFlight = {
      dpRank: request.dpRank ?? 0,
      promptTokens: request.tokenIds.length,
      generated: 0,
      prefilled: false,
    };
    this.inFlight.add(entry);
    try {
      for await (const chunk of this.stream(request, controller.signal)) {
        entry.prefilled = true;
        entry.generated += chunk.tokenIds.length;
        yield chunk;
      }
    } finally {
      this.inFlight.delete(entry);
      this.controllers.delete(controller);
      signal.removeEventListener('abort', onAbort);
      controller.abort();
    }
  }

  onKvEvent(listener: (event: KvCacheEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  eventsInRange(dpRank: number, from: bigint, to: bigint): EventRangeResult {
    return this.log(dpRank).eventsInRange(from, to);
  }

  dump(dpRank: number): RankDump {
    const rankLog = this.log(dpRank);
    return { events: rankLog.dump(), lastEventId: rankLog.newestEventId };
  }

  newestEventIds(): (bigint | null)[] {
    return this.logs.map((l) => l.newestEventId);
  }

  rankLoads(): EngineRankLoad[] {
    const d = this.description;
    return this.logs.map((rankLog, dpRank) => {
      let running = 0;
      let blocks = 0;
      let pending = 0;
      for (const r of this.inFlight) {
        if (r.dpRank !== dpRank) continue;
        running++;
        blocks += Math.ceil((r.promptTokens + r.generated) / d.kvBlockSize);
        if (!r.prefilled) pending += r.promptTokens;
      }
      return {
        dpRank,
        activeDecodeBlocks: blocks,
        totalKvBlocks: d.totalKvBlocks,
        numRunning: running,
        numWaiting: 0,
        kvUsage: d.totalKvBlocks > 0 ? Math.min(1, rankLog.size / d.totalKvBlocks) : 0,
        prefixHitRate: 0,
        pendingPrefillTokens: pending,
      };
    });
  }

  /** Counters of the KV-event subscription (null without one). */
  kvEventStats(): ZmqKvSubscriberStats | null {
    return this.subscriber?.stats() ?? null;
  }

  /** Resolves once every received KV batch has been handled (tests). */
  kvEventsIdle(): Promise<void> {
    return this.subscriber?.idle() ?? Promise.resolve();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.subscriber?.close();
    for (const c of this.controllers) c.abort();
    this.listeners.clear();
  }

  /** A POST streaming SSE back; maps transport failures and HTTP errors to coded errors. */
  protected async post(
    path: string,
    body: unknown,
    signal: AbortSignal,
    headers: Record<string, string> = {},
  ) {
    let response: Response;
    try {
      response = await fetch(`${this.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...headers },
        body: JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw error;
      this.onUnreachable?.();
      throw new Error(
        workerErrorText(WORKER_UNAVAILABLE, `engine ${this.url} unreachable: ${causeText(error)}`),
      );
    }
    if (!response.ok || response.body === null) {
      const text = await response.text().catch(() => '');
      const code = response.status >= 500 ? WORKER_UNAVAILABLE : 'ENGINE_REFUSED';
      throw new Error(workerErrorText(code, `engine answered ${response.status}: ${errorDetail(text)}`));
    }
    return response.body;
  }

  private log(dpRank: number): LocalIndexer {
    const rankLog = this.logs[dpRank];
    if (rankLog === undefined)
      throw Object.assign(new Error(`rank ${dpRank} out of range [0, ${this.logs.length})`), {
        code: 'ENGINE_RANK_OUT_OF_RANGE',
      });
    return rankLog;
  }

  /**
   * The engine's events of one rank can no longer be followed: the blocks we know it held are
   * published as removed (a `cleared` event would drop every rank of the worker in the router).
   * That removal empties the rank's view, which the next events build again; the ids stay dense,
   * so a router's range query across the reset gets the removal too.
   */
  private forgetRank(dpRank: number): void {
    const held: bigint[] = [];
    for (const { event } of this.logs[dpRank].dump())
      if (event.data.kind === 'stored') for (const block of event.data.blocks) held.push(block.blockHash);
    if (held.length > 0) this.publish(dpRank, { kind: 'removed', blockHashes: held });
  }

  private publish(dpRank: number, data: KvEventData): void {
    const eventId = this.nextEventIds[dpRank]++;
    const event: KvCacheEvent = { eventId, dpRank, data };
    this.logs[dpRank].apply(event);
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        log.error({ err: error }, 'KV event listener threw');
      }
    }
  }
}

/**
 * The sampling fields SGLang's sampling_params and vLLM's completion body name alike; each engine
 * adds its own names for the token limit and the seed. Empty stop lists are left out.
 */
export function sharedSamplingFields(s: SamplingOptions): Record<string, unknown> {
  return {
    ...(s.temperature !== undefined ? { temperature: s.temperature } : {}),
    ...(s.ignoreEos !== undefined ? { ignore_eos: s.ignoreEos } : {}),
    ...(s.stopTokenIds !== undefined && s.stopTokenIds.length > 0 ? { stop_token_ids: s.stopTokenIds } : {}),
  };
}

function causeText(error: unknown): string {
  const cause = (error as { cause?: unknown } | null)?.cause;
  const text = error instanceof Error ? error.message : String(error);
  return cause instanceof Error ? `${text} (${cause.message})` : text;
}

/** The message of an engine's JSON error body (OpenAI or SGLang shape), else the text. */
export function errorDetail(text: string): string {
  try {
    const value = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof value.error === 'object' && typeof value.error?.message === 'string')
      return value.error.message;
    if (typeof value.error === 'string') return value.error;
    if (typeof value.message === 'string') return value.message;
  } catch {}
  return text.slice(0, 500);
}
