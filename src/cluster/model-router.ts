/**
 * The router's view of one model's workers of one component (`backend` or `prefill`): discovery
 * feeds the routing policy's workers, the event plane feeds its KV index (with gap recovery, see
 * kv-event-ingest.ts) and the workers' reported loads, and `generate` routes a request to a
 * (worker, rank), streams it back, tracks its load, and migrates it to another worker when the
 * first one dies mid-stream (Dynamo's KvPushRouter + migration).
 */
import type { RouterEvent, WorkerId } from '../kv/events.ts';
import type { GenerateChunk, GenerateRequest, Usage } from '../protocol/generate.ts';
import {
  BACKEND_COMPONENT,
  DEFAULT_NAMESPACE,
  decodeGenerateChunk,
  decodeKvIndexerAnswer,
  encodeGenerateRequest,
  GENERATE_ENDPOINT,
  generateChunkLocal,
  KV_EVENTS_RETENTION_MS,
  KV_INDEXER_QUERY_ENDPOINT,
  type KvIndexerAnswer,
  kvIndexerQueryToWire,
  kvMetricsSubject,
  WORKER_UNAVAILABLE,
  type WorkerRankLoad,
  workerErrorCode,
  workerLoadFromWire,
} from '../protocol/wire.ts';
import type { KvRouterConfigInput, RouterOverrides } from '../routing/config.ts';
import { parseRouterConfig } from '../routing/config.ts';
import { NoWorkersError } from '../routing/errors.ts';
import { KvRouter } from '../routing/kv-router.ts';
import { createPolicy } from '../routing/policies/index.ts';
import type {
  PolicyName,
  RankLoad,
  RouteOptions,
  RoutingDecision,
  RoutingPolicy,
} from '../routing/policy.ts';
import { ReplicaSync } from '../routing/replica-sync.ts';
import { RouterQueue, RouterQueueError } from '../routing/router-queue.ts';
import { decodeJson, encodeJson } from '../runtime/codec.ts';
import { errorMessage, isRuntimeError, RemoteError, RuntimeError } from '../runtime/errors.ts';
import { randomU64 } from '../runtime/ids.ts';
import type { ModelCard } from '../runtime/model-card.ts';
import {
  type FrameSink,
  PUSH,
  type PushHandle,
  PushQueue,
  type PushSink,
  type PushSource,
  pushCallValue,
} from '../runtime/push.ts';
import { kvEventsSubject, streamNameForSubject } from '../runtime/subjects.ts';
import {
  type DiscoveryEvent,
  type DiscoveryWatch,
  type EndpointId,
  endpointId,
  type Runtime,
  type Subscription,
} from '../runtime/types.ts';
import type { Cancellation } from '../util/cancel.ts';
import { log } from '../util/log.ts';
import { BadResponseError, WorkerLostError, WorkerRequestError } from './errors.ts';
import { type IndexerQuery, KvEventIngest, type KvEventIngestStats } from './kv-event-ingest.ts';
import { EventPlaneReplicaSyncBus } from './replica-sync-bus.ts';

/** Where a request should (or must) run. `dpRank` 0 is a real rank. */
export interface RequestRouting {
  /** Pin to this worker (nvext.backend_instance_id / decode_worker_id / prefill_worker_id). */
  readonly workerId?: WorkerId;
  /** With a pinned worker: its rank; without: restrict the choice to this rank. */
  readonly dpRank?: number;
  readonly overrides?: RouterOverrides;
  /**
   * In the router queue, the request counts as having arrived this much earlier (Dynamo's
   * priority jump, from nvext.agent_hints.latency_sensitivity in seconds).
   */
  readonly priorityJumpMs?: number;
}

/** The router-queue priority jump of a request's agent hints (latency_sensitivity, seconds). */
export function priorityJumpMs(latencySensitivitySeconds: number | undefined): number | undefined {
  if (latencySensitivitySeconds === undefined || !(latencySensitivitySeconds > 0)) return undefined;
  return Math.min(latencySensitivitySeconds * 1000, Number.MAX_SAFE_INTEGER);
}

export interface RoutedRequest extends GenerateRequest {
  readonly routing?: RequestRouting;
}

/** A chunk of output and the (worker, rank) producing it (after a migration: the new one). */
export interface RoutedChunk extends GenerateChunk {
  readonly workerId: WorkerId;
  readonly dpRank: number;
}

export interface GenerateOptions {
  /** Turns the error the stream fails with into the one its consumer sees (given the call's signal). */
  mapError?(error: unknown, signal: Cancellation | undefined): unknown;
}

export interface ModelInstance {
  readonly workerId: WorkerId;
  readonly card: ModelCard;
}

/** The router's tracked load of a (worker, rank), with the worker's latest kv_metrics report. */
export interface ModelRankLoad extends RankLoad {
  readonly reported?: WorkerRankLoad;
}

/** Dynamo's busy thresholds (null or absent = that check is off). */
export interface BusyThresholds {
  /** Fraction of the rank's total KV blocks. */
  readonly activeDecodeBlocksThreshold?: number | null;
  /** Absolute prompt tokens waiting to prefill. */
  readonly activePrefillTokensThreshold?: number | null;
  /** Fraction of the rank's max_num_batched_tokens. */
  readonly activePrefillTokensThresholdFrac?: number | null;
}

export interface ModelRouterOptions {
  readonly runtime: Runtime;
  readonly model: string;
  /** Default `kvgate`. */
  readonly namespace?: string;
  /** Default `backend` (aggregated and decode workers); `prefill` for the prefill pool. */
  readonly component?: string;
  /** Routing policy (default `kv`). */
  readonly policy?: PolicyName;
  /** Router config; `blockSize` must match the workers' kv_block_size. */
  readonly config?: KvRouterConfigInput;
  /** Re-routes after a worker dies mid-stream (default 3; 0 = fail at once). */
  readonly migrationLimit?: number;
  /** How long generate waits for a first worker before NoWorkersError (default 30 s). */
  readonly waitForWorkersMs?: number;
  /**
   * This router's id for replica sync and, in durable mode, its JetStream consumer (default random:
   * give a fixed one to resume from the consumer's ack floor after a restart).
   */
  readonly routerId?: bigint;
  /** kv_indexer_query attempts and first back-off per recovery. */
  readonly recoveryAttempts?: number;
  readonly recoveryDelayMs?: number;
  /** Deadline of one kv_indexer_query call (default 10 s). */
  readonly recoveryTimeoutMs?: number;
}

export interface ModelRouterStats {
  readonly workers: number;
  readonly requests: number;
  readonly migrations: number;
  readonly workerLost: number;
  readonly skippedCards: number;
  readonly malformedMetrics: number;
  readonly events: KvEventIngestStats;
}

/** Errors after which the request can continue on another worker. */
function isWorkerGone(error: unknown): boolean {
  if (error instanceof RemoteError) return workerErrorCode(error.message) === WORKER_UNAVAILABLE;
  return (
    isRuntimeError(error, 'RUNTIME_STREAM_LOST') ||
    isRuntimeError(error, 'RUNTIME_NO_RESPONDERS') ||
    isRuntimeError(error, 'RUNTIME_SERVER_CANCELLED')
  );
}

export class ModelRouter {
  readonly model: string;
  readonly namespace: string;
  readonly component: string;
  readonly policy: RoutingPolicy;
  readonly blockSize: number;
  readonly routerId: bigint;
  readonly migrationLimit: number;
  readonly waitForWorkersMs: number;

  private readonly runtime: Runtime;
  private readonly generateEndpoint: EndpointId;
  private readonly queryEndpoint: EndpointId;
  private readonly cards = new Map<WorkerId, ModelCard>();
  private readonly reported = new Map<string, WorkerRankLoad>();
  private readonly ingest: KvEventIngest;
  private readonly replicaSync: ReplicaSync | null = null;
  private readonly subscriptions: Subscription[] = [];
  private readonly workerWaiters = new Set<(error?: Error) => void>();
  /** Dynamo's router queue (router_queue_threshold): null when off. */
  private readonly queue: RouterQueue | null;
  private readonly recoveryTimeoutMs: number;
  private readonly durableKvEvents: boolean;
  /** The durable consumer is deleted on close unless the router id was given (it may come back). */
  private readonly ephemeralConsumer: boolean;
  private watch: DiscoveryWatch | undefined;
  private startPromise: Promise<void> | undefined;
  /** The start completed (the current workers are known). */
  private started = false;
  private closed = false;
  private requests = 0;
  private migrations = 0;
  private workerLost = 0;
  private skippedCards = 0;
  private malformedMetrics = 0;

  constructor(options: ModelRouterOptions) {
    this.runtime = options.runtime;
    this.model = options.model;
    this.namespace = options.namespace ?? DEFAULT_NAMESPACE;
    this.component = options.component ?? BACKEND_COMPONENT;
    this.generateEndpoint = endpointId(this.namespace, this.component, GENERATE_ENDPOINT);
    this.queryEndpoint = endpointId(this.namespace, this.component, KV_INDEXER_QUERY_ENDPOINT);
    const config = parseRouterConfig(options.config ?? {});
    this.blockSize = config.blockSize;
    this.durableKvEvents = config.durableKvEvents;
    this.ephemeralConsumer = options.routerId === undefined;
    this.policy = createPolicy(options.policy ?? 'kv', { config });
    const queueThreshold = config.queueThreshold;
    this.queue =
      queueThreshold === null
        ? null
        : new RouterQueue({ isBusy: () => this.everyRankQueueBusy(queueThreshold) });
    this.routerId = options.routerId ?? randomU64();
    this.migrationLimit = options.migrationLimit ?? 3;
    this.waitForWorkersMs = options.waitForWorkersMs ?? 30_000;
    this.recoveryTimeoutMs = options.recoveryTimeoutMs ?? 10_000;
    if (!Number.isInteger(this.migrationLimit) || this.migrationLimit < 0)
      throw new TypeError('migrationLimit must be an integer >= 0');
    this.ingest = new KvEventIngest({
      sink: {
        applyEvent: (event) => this.policy.applyEvent(event),
        resetRank: (workerId, dpRank) => this.resetRank(workerId, dpRank),
      },
      query: (workerId, query) => this.queryIndexer(workerId, query),
      malformed: this.runtime.malformed,
      recoveryAttempts: options.recoveryAttempts,
      recoveryDelayMs: options.recoveryDelayMs,
    });
    if (config.replicaSync && this.policy instanceof KvRouter)
      this.replicaSync = new ReplicaSync(
        this.policy,
        new EventPlaneReplicaSyncBus(
          this.runtime.events,
          this.namespace,
          this.component,
          this.runtime.malformed,
        ),
        { routerId: this.routerId },
      );
  }

  /** Creates a router and starts it (resolves once the current workers are known). */
  static async create(options: ModelRouterOptions): Promise<ModelRouter> {
    const router = new ModelRouter(options);
    await router.start();
    return router;
  }

  /**
   * Subscribes to KV events and loads, then watches discovery. Resolves once the current workers
   * were added (their dumps are ingested in the background: see `settled`).
   */
  start(): Promise<void> {
    this.startPromise ??= this.doStart();
    return this.startPromise;
  }

  private async doStart(): Promise<void> {
    const events = this.runtime.events;
    const kvSubject = kvEventsSubject(this.namespace, this.component);
    if (this.durableKvEvents) {
      // JetStream mode: a durable consumer named after this router replays what it has not acked.
      const stream = streamNameForSubject(kvSubject);
      await events.ensureStream({ name: stream, subjects: [kvSubject], maxAgeMs: KV_EVENTS_RETENTION_MS });
      this.subscriptions.push(
        await events.subscribeDurable(stream, this.consumerName, (m) => {
          this.ingest.onMessage(m.payload, m.subject);
          m.ack();
        }),
      );
    } else {
      this.subscriptions.push(
        events.subscribe(kvSubject, (m) => this.ingest.onMessage(m.payload, m.subject)),
      );
    }
    const metricsSubject = kvMetricsSubject(this.namespace, this.component);
    this.subscriptions.push(events.subscribe(metricsSubject, (m) => this.onMetrics(m.payload)));
    await events.flush();
    this.watch = await this.runtime.discovery.watch(
      { namespace: this.namespace, component: this.component, endpoint: GENERATE_ENDPOINT },
      (event) => this.onDiscovery(event),
    );
    if (this.closed) this.watch.close();
    this.started = true;
  }

  /** The JetStream consumer of this router in durable mode. */
  get consumerName(): string {
    return `router-${this.routerId.toString(16)}`;
  }

  /** Resolves once no KV recovery (dump or range) is in flight. */
  settled(): Promise<void> {
    return this.ingest.settled();
  }

  // ---- the cluster view -----------------------------------------------------------------------

  instances(): ModelInstance[] {
    return [...this.cards].map(([workerId, card]) => ({ workerId, card }));
  }

  loads(): ModelRankLoad[] {
    return this.policy.loads().map((load) => {
      const reported = this.reported.get(rankKey(load.workerId, load.dpRank));
      return reported === undefined ? load : { ...load, reported };
    });
  }

  /** Events rebuilding the router's KV index (empty for policies that keep none). */
  dump(): RouterEvent[] {
    return this.policy instanceof KvRouter ? this.policy.dump() : [];
  }

  /** True when every (worker, rank) is over one of the thresholds (false without workers). */
  isBusy(thresholds: BusyThresholds): boolean {
    const loads = this.policy.loads();
    if (loads.length === 0) return false;
    const decodeFrac = thresholds.activeDecodeBlocksThreshold ?? null;
    const prefillAbs = thresholds.activePrefillTokensThreshold ?? null;
    const prefillFrac = thresholds.activePrefillTokensThresholdFrac ?? null;
    for (const load of loads) {
      const card = this.cards.get(load.workerId);
      if (card === undefined) return false;
      const decodeBusy = decodeFrac !== null && load.activeDecodeBlocks > decodeFrac * card.totalKvBlocks;
      const prefillBusy =
        (prefillAbs !== null && load.activePrefillTokens > prefillAbs) ||
        (prefillFrac !== null && load.activePrefillTokens > prefillFrac * card.maxNumBatchedTokens);
      if (!decodeBusy && !prefillBusy) return false;
    }
    return true;
  }

  /**
   * Every (worker, rank) has more prompt tokens waiting for prefill than `threshold` × its
   * worker's max batched tokens (10 M when unknown, as Dynamo); false without workers.
   */
  private everyRankQueueBusy(threshold: number): boolean {
    const loads = this.policy.loads();
    if (loads.length === 0) return false;
    for (const load of loads) {
      const budget = this.cards.get(load.workerId)?.maxNumBatchedTokens ?? 10_000_000;
      if (!(load.activePrefillTokens > threshold * budget)) return false;
    }
    return true;
  }

  /** Requests parked in the router queue now (0 when the queue is off). */
  get queued(): number {
    return this.queue?.length ?? 0;
  }

  /** Where the request would run now (no state changes). */
  decide(tokens: ArrayLike<number>, routing: RequestRouting = {}): RoutingDecision {
    return this.policy.bestWorker(tokens, routeOptions(routing));
  }

  stats(): ModelRouterStats {
    return {
      workers: this.cards.size,
      requests: this.requests,
      migrations: this.migrations,
      workerLost: this.workerLost,
      skippedCards: this.skippedCards,
      malformedMetrics: this.malformedMetrics,
      events: this.ingest.stats(),
    };
  }

  /** Resolves when at least one worker serves the model; NoWorkersError after `timeoutMs`. */
  async waitForInstances(timeoutMs: number = this.waitForWorkersMs, signal?: Cancellation): Promise<void> {
    await this.start();
    if (this.cards.size > 0) return;
    await new Promise<void>((resolve, reject) => {
      const finish = (error?: Error) => {
        clearTimeout(timer);
        this.workerWaiters.delete(wake);
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve();
      };
      const wake = (error?: Error) => finish(error);
      const onAbort = () =>
        finish(new RuntimeError('RUNTIME_CANCELLED', 'cancelled while waiting for a worker'));
      const timer = setTimeout(
        () =>
          finish(
            new NoWorkersError(
              `no ${this.component} worker serves model ${JSON.stringify(this.model)} (waited ${timeoutMs} ms)`,
            ),
          ),
        timeoutMs,
      );
      this.workerWaiters.add(wake);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // ---- generate -------------------------------------------------------------------------------

  /**
   * Routes and streams one request. Every chunk names the (worker, rank) producing it. The load is
   * tracked from routing to the end of the stream (also when the consumer stops early). A worker
   * lost mid-stream is replaced: the request continues elsewhere with prompt + tokens so far.
   * Nothing happens before the first `next()`; errors reject it (or a later one). The stream is
   * also a PushSource: `stream[PUSH](sink)` starts it with every chunk pushed to `sink` instead
   * (no promise per chunk; see runtime/push.ts).
   */
  generate(
    request: RoutedRequest,
    signal?: Cancellation,
    options?: GenerateOptions,
  ): AsyncIterableIterator<RoutedChunk> & PushSource<RoutedChunk> {
    return new RoutedStream(this.streamHost, request, signal, options);
  }

  /** What a RoutedStream needs from its router, built once. */
  private readonly streamHost: StreamHost = {
    router: this,
    ready: () =>
      this.started && !this.closed && this.cards.size > 0 && (this.queue === null || !this.queue.mustWait()),
    prepare: async (signal, jumpMs) => {
      if (this.closed) throw new RuntimeError('RUNTIME_CLOSED', 'the router was closed');
      await this.waitForInstances(this.waitForWorkersMs, signal);
      const queue = this.queue;
      if (queue?.mustWait()) await queue.wait(jumpMs, signal).catch(queueFailure);
    },
    admitted: () => this.queue?.admitted(),
    loadDropped: () => this.queue?.drain(),
    counted: (what) => {
      if (what === 'request') this.requests++;
      else if (what === 'lost') this.workerLost++;
      else this.migrations++;
    },
    route: (requestId, tokens, routing, avoid) => this.routeAvoiding(requestId, tokens, routing, avoid),
    call: (workerId, request, sink, signal) =>
      pushCallValue(
        this.runtime.requests,
        this.generateEndpoint,
        workerId,
        request,
        encodeGenerateRequest,
        sink,
        signal ? { signal } : {},
      ),
    decode: (frame, workerId) => this.decodeChunk(frame, workerId),
  };

  /** Routes, but never to a worker this request already lost (it may still be in discovery). */
  private routeAvoiding(
    requestId: string,
    tokens: readonly number[],
    routing: RequestRouting,
    avoid: ReadonlySet<WorkerId> | null,
  ): RoutingDecision {
    const options = routeOptions(routing);
    const decision = this.policy.route(requestId, tokens, options);
    if (avoid === null || !avoid.has(decision.workerId)) return decision;
    this.policy.free(requestId);
    const busy = new Map<WorkerId, number>();
    for (const load of this.policy.loads())
      if (!avoid.has(load.workerId))
        busy.set(
          load.workerId,
          (busy.get(load.workerId) ?? 0) + load.activeDecodeBlocks + load.activeRequests,
        );
    let best: WorkerId | undefined;
    for (const [workerId, load] of busy) if (best === undefined || load < busy.get(best)!) best = workerId;
    if (best === undefined)
      throw new WorkerLostError(
        `no other ${this.component} worker of ${this.model} to continue the request on`,
      );
    return this.policy.route(requestId, tokens, { ...options, pinned: { workerId: best } });
  }

  private decodeChunk(frame: Uint8Array, workerId: WorkerId): GenerateChunk {
    let result: ReturnType<typeof decodeGenerateChunk>;
    try {
      result = decodeGenerateChunk(frame);
    } catch (error) {
      result = { ok: false, error: errorMessage(error) };
    }
    if (result.ok) return result.value;
    this.runtime.malformed.drop(
      'request',
      'generate chunk',
      `from ${workerId.toString(16)}: ${result.error}`,
    );
    throw new BadResponseError(`worker ${workerId.toString(16)} sent a malformed chunk: ${result.error}`);
  }

  // ---- discovery, events, loads ---------------------------------------------------------------

  private onDiscovery(event: DiscoveryEvent): void {
    const workerId = event.instance.instanceId;
    if (event.type === 'removed') {
      if (!this.cards.delete(workerId)) return;
      this.ingest.removeWorker(workerId);
      this.policy.removeWorker(workerId);
      for (const key of [...this.reported.keys()])
        if (key.startsWith(`${workerId}:`)) this.reported.delete(key);
      log.info({ model: this.model, workerId: workerId.toString(16) }, 'router: worker removed');
      return;
    }
    const card = event.card;
    if (card === undefined || card.modelName !== this.model) return;
    if (card.kvBlockSize !== this.blockSize) {
      this.skippedCards++;
      log.warn(
        {
          model: this.model,
          workerId: workerId.toString(16),
          kvBlockSize: card.kvBlockSize,
          routerBlockSize: this.blockSize,
        },
        'router: worker skipped: its KV block size differs from the router’s',
      );
      return;
    }
    const previous = this.cards.get(workerId);
    this.cards.set(workerId, card);
    try {
      this.policy.addWorker(workerId, {
        dataParallelSize: card.dataParallelSize,
        blockSize: card.kvBlockSize,
        totalKvBlocks: card.totalKvBlocks,
        maxNumBatchedTokens: card.maxNumBatchedTokens,
        maxNumSeqs: card.maxNumSeqs,
      });
    } catch (error) {
      this.cards.delete(workerId);
      this.skippedCards++;
      log.warn(
        { model: this.model, workerId: workerId.toString(16), err: errorMessage(error) },
        'router: worker skipped',
      );
      return;
    }
    if (previous === undefined || previous.dataParallelSize !== card.dataParallelSize) {
      this.ingest.addWorker(workerId, card.dataParallelSize, previous !== undefined);
      log.info(
        {
          model: this.model,
          workerId: workerId.toString(16),
          dpSize: card.dataParallelSize,
          role: card.role,
        },
        'router: worker added',
      );
    }
    for (const wake of [...this.workerWaiters]) wake();
    this.queue?.drain();
  }

  private onMetrics(payload: Uint8Array): void {
    let load: WorkerRankLoad;
    try {
      const result = workerLoadFromWire(decodeJson(payload));
      if (!result.ok) throw new Error(result.error);
      load = result.value;
    } catch (error) {
      this.malformedMetrics++;
      this.runtime.malformed.drop('event', 'kv_metrics', errorMessage(error));
      return;
    }
    if (!this.cards.has(load.workerId)) return;
    this.reported.set(rankKey(load.workerId, load.dpRank), load);
    if (load.lastEventId !== undefined && load.lastEventId !== null)
      this.ingest.onNewestEventId(load.workerId, load.dpRank, load.lastEventId);
  }

  private async queryIndexer(workerId: WorkerId, query: IndexerQuery): Promise<KvIndexerAnswer> {
    const payload = encodeJson(kvIndexerQueryToWire(query));
    for await (const frame of this.runtime.requests.call(this.queryEndpoint, workerId, payload, {
      timeoutMs: this.recoveryTimeoutMs,
    })) {
      const answer = decodeKvIndexerAnswer(frame);
      if (!answer.ok) {
        this.runtime.malformed.drop('request', 'kv_indexer_query answer', answer.error);
        throw new BadResponseError(answer.error);
      }
      if (answer.value.dpRank !== query.dpRank)
        throw new BadResponseError('kv_indexer_query answer for another rank');
      return answer.value;
    }
    throw new BadResponseError('empty kv_indexer_query answer');
  }

  /** Removes every block indexed for one rank of a worker (before its dump is ingested). */
  private resetRank(workerId: WorkerId, dpRank: number): void {
    if (this.policy instanceof KvRouter) this.policy.resetRank(workerId, dpRank);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wake of [...this.workerWaiters])
      wake(new RuntimeError('RUNTIME_CLOSED', 'the router was closed'));
    this.queue?.close();
    this.watch?.close();
    for (const s of this.subscriptions) s.unsubscribe();
    this.replicaSync?.close();
    this.ingest.close();
    if (this.durableKvEvents && this.ephemeralConsumer && this.startPromise !== undefined)
      await this.runtime.events
        .deleteConsumer(
          streamNameForSubject(kvEventsSubject(this.namespace, this.component)),
          this.consumerName,
        )
        .catch((error: unknown) =>
          log.warn({ err: errorMessage(error) }, 'router: deleting the durable consumer failed'),
        );
  }
}

/** A request that left the router queue without its turn, as the runtime error a stream reports. */
function queueFailure(error: unknown): never {
  if (!(error instanceof RouterQueueError)) throw error;
  throw error.code === 'ROUTER_QUEUE_CANCELLED'
    ? new RuntimeError('RUNTIME_CANCELLED', 'cancelled while queued in the router')
    : new RuntimeError('RUNTIME_CLOSED', 'the router was closed');
}

/** The private parts of a ModelRouter a RoutedStream uses. */
interface StreamHost {
  readonly router: ModelRouter;
  /** Started, open, with workers: a request can be routed at once. */
  ready(): boolean;
  /** Waits until a request can be routed (or throws: closed, no workers in time, cancelled). */
  prepare(signal: Cancellation | undefined, priorityJumpMs: number | undefined): Promise<void>;
  /** A request that waited in prepare() has been routed or gave up (the router queue's next may go). */
  admitted(): void;
  /** Some rank's load dropped (prefill done, request freed): queued requests may go. */
  loadDropped(): void;
  counted(what: 'request' | 'lost' | 'migration'): void;
  route(
    requestId: string,
    tokens: readonly number[],
    routing: RequestRouting,
    avoid: ReadonlySet<WorkerId> | null,
  ): RoutingDecision;
  /** Calls the worker's generate endpoint with `request` (handed over as it is in process). */
  call(
    workerId: WorkerId,
    request: GenerateRequest,
    sink: PushSink<Uint8Array>,
    signal: Cancellation | undefined,
  ): PushHandle;
  decode(frame: Uint8Array, workerId: WorkerId): GenerateChunk;
}

type MutableRoutedChunk = { -readonly [K in keyof RoutedChunk]: RoutedChunk[K] };

/**
 * Chunks that reach the consumer while it is not reading travel as one: tokens of the same
 * (worker, rank), the later chunk's finish reason and usage.
 */
function mergeChunks(earlier: RoutedChunk, later: RoutedChunk): RoutedChunk | undefined {
  if (
    earlier.finishReason !== undefined ||
    earlier.usage !== undefined ||
    earlier.error !== undefined ||
    earlier.bootstrap !== undefined ||
    later.bootstrap !== undefined ||
    earlier.workerId !== later.workerId ||
    earlier.dpRank !== later.dpRank
  )
    return undefined;
  const merged = earlier as MutableRoutedChunk;
  const tokens = merged.tokenIds as number[];
  for (const token of later.tokenIds) tokens.push(token);
  if (later.finishReason !== undefined) merged.finishReason = later.finishReason;
  if (later.usage !== undefined) merged.usage = later.usage;
  if (later.error !== undefined) merged.error = later.error;
  return merged;
}

/** The frames of one attempt (one worker): stale ones, after the attempt ended, are ignored. */
class AttemptSink implements FrameSink {
  constructor(
    private readonly stream: RoutedStream,
    private readonly attempt: number,
  ) {}

  push(frame: Uint8Array): void {
    this.stream.onFrame(this.attempt, frame);
  }

  pushValue<V>(value: V, encode: (value: V) => Uint8Array): void {
    this.stream.onValue(this.attempt, value, encode);
  }

  end(): void {
    this.stream.onEnd(this.attempt);
  }

  fail(error: unknown): void {
    this.stream.onFail(this.attempt, error);
  }
}

/**
 * One routed request: its attempts (the first worker, then one per migration) push their frames
 * here (by plain calls on the in-process plane), and the consumer either pulls RoutedChunks from a
 * queue, one promise per wake-up, or has them pushed to its sink (PushSource: no promise at all).
 */
class RoutedStream implements AsyncIterableIterator<RoutedChunk>, PushSource<RoutedChunk>, PushHandle {
  /** Pull mode: the chunks the consumer has not read yet (made on the first next()). */
  private out: PushQueue<RoutedChunk> | null = null;
  /** Where chunks go: the consumer's sink, or in pull mode `out` (null once the stream ended or the consumer cancelled). */
  private sink: PushSink<RoutedChunk> | null = null;
  private started = false;
  /** The request is over: final chunk, error, or the consumer stopped. */
  private finished = false;
  private attempt = -1;
  /** The attempt in flight has not ended (its call may still push). */
  private attemptOpen = false;
  private call: PushHandle | null = null;
  /** The policy tracks the request's load (to free when the attempt ends). */
  private tracked = false;
  private workerId: WorkerId = 0n;
  private dpRank = 0;
  private prefillDone = false;
  private cachedTokens = 0;
  private readonly generated: number[] = [];
  private avoid: Set<WorkerId> | null = null;
  private routing: RequestRouting;

  constructor(
    private readonly host: StreamHost,
    private readonly request: RoutedRequest,
    private readonly signal: Cancellation | undefined,
    private readonly options: GenerateOptions | undefined,
  ) {
    this.routing = request.routing ?? {};
  }

  next(): Promise<IteratorResult<RoutedChunk>> {
    const out = this.pullQueue();
    if (!this.started) this.start();
    return out.next();
  }

  return(): Promise<IteratorResult<RoutedChunk>> {
    this.stop();
    return this.pullQueue().return();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * Push mode: starts the request; its chunks go to `sink` by plain calls (a request refused at
   * once fails during this call). The handle's cancel() stops it, as `return()` does.
   */
  [PUSH](sink: PushSink<RoutedChunk>): PushHandle {
    if (this.started || this.out !== null) throw new TypeError('a routed stream is consumed once');
    this.sink = sink;
    this.start();
    return this;
  }

  /** Push mode: the consumer stops (the request is cancelled; nothing more is pushed). */
  cancel(): void {
    this.sink = null;
    this.stop();
  }

  private stop(): void {
    if (this.finished) return;
    this.finished = true;
    this.endAttempt(true);
  }

  private pullQueue(): PushQueue<RoutedChunk> {
    if (this.out === null) {
      if (this.started) throw new TypeError('a routed stream is consumed once');
      this.out = new PushQueue<RoutedChunk>(mergeChunks);
      this.sink = this.out;
    }
    return this.out;
  }

  private emit(chunk: RoutedChunk): void {
    this.sink?.push(chunk);
  }

  private emitEnd(): void {
    const sink = this.sink;
    this.sink = null;
    sink?.end();
  }

  private emitFail(error: unknown): void {
    const sink = this.sink;
    this.sink = null;
    sink?.fail(error);
  }

  private start(): void {
    this.started = true;
    if (this.host.ready()) {
      this.host.counted('request');
      this.begin();
      return;
    }
    this.host.prepare(this.signal, this.routing.priorityJumpMs).then(
      () => {
        if (!this.finished) {
          this.host.counted('request');
          this.begin();
        }
        this.host.admitted();
      },
      (error: unknown) => {
        this.failRequest(error);
        this.host.admitted();
      },
    );
  }

  /** Routes (avoiding workers this request lost) and calls the chosen worker. */
  private begin(): void {
    const request = this.request;
    const generated = this.generated;
    const attempt = ++this.attempt;
    const tokens = generated.length === 0 ? request.tokenIds : [...request.tokenIds, ...generated];
    let decision: RoutingDecision;
    try {
      decision = this.host.route(request.requestId, tokens, this.routing, this.avoid);
    } catch (error) {
      this.failRequest(error);
      return;
    }
    this.tracked = true;
    this.workerId = decision.workerId;
    this.dpRank = decision.dpRank;
    this.prefillDone = false;
    const sampling =
      generated.length === 0
        ? request.sampling
        : { ...request.sampling, maxTokens: request.sampling.maxTokens - generated.length };
    this.attemptOpen = true;
    const call = this.host.call(
      decision.workerId,
      request.bootstrap === undefined
        ? { requestId: request.requestId, tokenIds: tokens, sampling, dpRank: decision.dpRank }
        : {
            requestId: request.requestId,
            tokenIds: tokens,
            sampling,
            dpRank: decision.dpRank,
            bootstrap: request.bootstrap,
          },
      new AttemptSink(this, attempt),
      this.signal,
    );
    if (this.attempt === attempt && this.attemptOpen) this.call = call;
    else call.cancel();
  }

  onFrame(attempt: number, frame: Uint8Array): void {
    if (attempt !== this.attempt || !this.attemptOpen) return;
    let chunk: GenerateChunk;
    try {
      chunk = this.host.decode(frame, this.workerId);
    } catch (error) {
      this.failRequest(error);
      return;
    }
    this.onChunk(chunk);
  }

  /** A chunk handed over in process (now this stream's): checked as decoded bytes would be. */
  onValue<V>(attempt: number, value: V, encode: (value: V) => Uint8Array): void {
    if (attempt !== this.attempt || !this.attemptOpen) return;
    const chunk = generateChunkLocal(value, true);
    if (chunk === undefined) this.onFrame(attempt, encode(value));
    else this.onChunk(chunk);
  }

  private onChunk(chunk: GenerateChunk): void {
    const policy = this.host.router.policy;
    if (!this.prefillDone && chunk.tokenIds.length > 0) {
      this.prefillDone = true;
      policy.markPrefillCompleted(this.request.requestId);
      this.host.loadDropped();
    }
    const generated = this.generated;
    for (const token of chunk.tokenIds) generated.push(token);
    // The decoded chunk is this stream's own object: it becomes the routed chunk.
    const out = chunk as MutableRoutedChunk;
    if (chunk.usage !== undefined) {
      if (this.attempt === 0) this.cachedTokens = chunk.usage.cachedTokens;
      else out.usage = this.usageSoFar();
    }
    out.workerId = this.workerId;
    if (chunk.dpRank === undefined) out.dpRank = this.dpRank;
    if (chunk.finishReason === undefined) {
      this.emit(out);
      return;
    }
    this.finished = true;
    this.endAttempt(true);
    this.emit(out);
    this.emitEnd();
  }

  onEnd(attempt: number): void {
    if (attempt !== this.attempt || !this.attemptOpen) return;
    this.onFail(
      attempt,
      new RuntimeError('RUNTIME_STREAM_LOST', `worker ${this.workerId.toString(16)} ended the stream early`),
    );
  }

  onFail(attempt: number, error: unknown): void {
    if (attempt !== this.attempt || !this.attemptOpen) return;
    this.endAttempt(false);
    if (!isWorkerGone(error)) {
      this.failRequest(
        error instanceof RemoteError ? new WorkerRequestError(error.message, { cause: error }) : error,
      );
      return;
    }
    const host = this.host;
    const router = host.router;
    const { requestId, sampling } = this.request;
    const workerId = this.workerId;
    host.counted('lost');
    const limit = router.migrationLimit;
    if (attempt >= limit) {
      this.failRequest(
        new WorkerLostError(
          limit === 0
            ? `worker ${workerId.toString(16)} was lost mid-request (${errorMessage(error)}); migration is off`
            : `worker ${workerId.toString(16)} was lost mid-request (${errorMessage(error)}); migration limit ${limit} reached`,
          { cause: error },
        ),
      );
      return;
    }
    this.avoid ??= new Set();
    this.avoid.add(workerId);
    this.routing = this.routing.overrides ? { overrides: this.routing.overrides } : {};
    host.counted('migration');
    log.warn(
      {
        model: router.model,
        requestId,
        workerId: workerId.toString(16),
        dpRank: this.dpRank,
        generated: this.generated.length,
        attempt: attempt + 1,
        err: errorMessage(error),
      },
      'router: worker lost mid-stream; migrating the request',
    );
    if (this.generated.length >= sampling.maxTokens) {
      this.finished = true;
      this.emit({
        tokenIds: [],
        finishReason: 'length',
        usage: this.usageSoFar(),
        workerId,
        dpRank: this.dpRank,
      });
      this.emitEnd();
      return;
    }
    this.begin();
  }

  /**
   * The request's usage over all its attempts: after a migration the last worker saw prompt +
   * earlier output as its prompt, so the split is the original one (cached: the first attempt's).
   */
  private usageSoFar(): Usage {
    const promptTokens = this.request.tokenIds.length;
    return {
      promptTokens,
      completionTokens: this.generated.length,
      cachedTokens: Math.min(this.cachedTokens, promptTokens),
    };
  }

  /** Ends the attempt in flight: cancels its call when asked, and frees the request's load. */
  private endAttempt(cancel: boolean): void {
    const call = this.call;
    this.call = null;
    this.attemptOpen = false;
    if (cancel) call?.cancel();
    if (this.tracked) {
      this.tracked = false;
      this.host.router.policy.free(this.request.requestId);
      this.host.loadDropped();
    }
  }

  private failRequest(error: unknown): void {
    this.finished = true;
    this.endAttempt(true);
    const mapError = this.options?.mapError;
    this.emitFail(mapError === undefined ? error : mapError(error, this.signal));
  }
}

function rankKey(workerId: WorkerId, dpRank: number): string {
  return `${workerId}:${dpRank}`;
}

const UNPINNED: RouteOptions = Object.freeze({});

function routeOptions(routing: RequestRouting): RouteOptions {
  if (routing.workerId === undefined && routing.dpRank === undefined && routing.overrides === undefined)
    return UNPINNED; // the common case, without building an object per request
  return {
    ...(routing.workerId !== undefined
      ? {
          pinned: {
            workerId: routing.workerId,
            ...(routing.dpRank !== undefined ? { dpRank: routing.dpRank } : {}),
          },
        }
      : routing.dpRank !== undefined
        ? { dpRank: routing.dpRank }
        : {}),
    ...(routing.overrides !== undefined ? { overrides: routing.overrides } : {}),
  };
}
