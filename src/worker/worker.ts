/**
 * A worker: one engine behind the runtime (DESIGN §1, §7). It serves `generate`,
 * `kv_indexer_query` and (prefill role) `kv_transfer` on the request plane, publishes each rank's
 * KV events and load on the event plane, and registers its instance and model card under the
 * runtime's lease: component `backend` for aggregated/decode workers, `prefill` for prefill ones.
 *
 * Serve first, register second: requests that reach the worker before its registration completed
 * wait behind a readiness gate. Registration failures are retried with back-off and logged, never
 * thrown. Shutdown deregisters first, refuses new requests (WORKER_UNAVAILABLE, so routers send
 * them elsewhere), lets in-flight requests finish within a drain timeout, then stops.
 */
import { EngineError } from '../engine/errors.ts';
import { encodeRouterEvent } from '../kv/codec.ts';
import type { KvCacheEvent, WorkerId } from '../kv/events.ts';
import type { GenerateChunk, GenerateRequest } from '../protocol/generate.ts';
import {
  BACKEND_COMPONENT,
  DEFAULT_NAMESPACE,
  decodeGenerateRequest,
  encodeGenerateChunk,
  encodeKvIndexerAnswer,
  GENERATE_ENDPOINT,
  generateRequestFromValue,
  KV_EVENTS_RETENTION_MS,
  KV_INDEXER_QUERY_ENDPOINT,
  KV_TRANSFER_ENDPOINT,
  type KvIndexerAnswer,
  kvIndexerQueryWireSchema,
  kvMetricsSubject,
  kvTransferAnswerToWire,
  kvTransferPullWireSchema,
  PREFILL_COMPONENT,
  WORKER_BAD_REQUEST,
  WORKER_UNAVAILABLE,
  workerErrorText,
} from '../protocol/wire.ts';
import { sleep } from '../runtime/backoff.ts';
import { decodeJson, encodeJson } from '../runtime/codec.ts';
import { errorMessage, isRuntimeError } from '../runtime/errors.ts';
import { randomU64 } from '../runtime/ids.ts';
import type { BootstrapEndpoint, ModelCard } from '../runtime/model-card.ts';
import {
  DualSource,
  PUSH,
  type PushHandle,
  type PushSink,
  type PushSource,
  pushFrameValue,
  pushFromIterable,
} from '../runtime/push.ts';
import { kvEventsSubject, streamNameForSubject } from '../runtime/subjects.ts';
import {
  type EndpointId,
  endpointId,
  type HandlerContext,
  type Registration,
  type Runtime,
  type ServeHandle,
} from '../runtime/types.ts';
import { log } from '../util/log.ts';
import type { EngineAdapter, EngineContext } from './engine-adapter.ts';
import { LoadPublisher } from './load-publisher.ts';
import { ReadinessGate } from './readiness-gate.ts';
import { RuntimeKvTransfer } from './runtime-kv-transfer.ts';

export interface WorkerOptions {
  readonly runtime: Runtime;
  readonly modelName: string;
  /** Default `kvgate`. */
  readonly namespace?: string;
  /** Default: a random u64 (the engine needs its id before the lease exists). */
  readonly instanceId?: WorkerId;
  /** Builds the engine once the worker's id is known. */
  readonly engine: (context: EngineContext) => EngineAdapter;
  /** Prefill role: where decode workers find this worker (goes in the model card). */
  readonly bootstrap?: BootstrapEndpoint;
  /** Extra runtime configuration for the card. */
  readonly runtimeConfig?: Readonly<Record<string, unknown>>;
  /** Load published at least this often (default 1000 ms) and at most every throttleMs on change (default 100 ms). */
  readonly metricsIntervalMs?: number;
  readonly metricsThrottleMs?: number;
  /** How long shutdown waits for in-flight requests (default 30 s). */
  readonly drainTimeoutMs?: number;
  /** Cap of the back-off between registration attempts (default 5 s). */
  readonly registerRetryMaxMs?: number;
  /**
   * Publish KV events into a JetStream stream (Dynamo's durable_kv_events): routers in durable mode
   * then replay what they missed from the stream; core subscribers still see every event.
   */
  readonly durableKvEvents?: boolean;
}

export interface WorkerStats {
  readonly inFlight: number;
  readonly served: number;
  readonly badRequests: number;
  readonly eventsPublished: number;
  /** Durable mode: events the stream did not confirm. */
  readonly eventPublishErrors: number;
  readonly loadsPublished: number;
}

export class Worker {
  readonly runtime: Runtime;
  readonly engine: EngineAdapter;
  readonly instanceId: WorkerId;
  readonly namespace: string;
  readonly component: string;
  readonly card: ModelCard;
  readonly generateEndpoint: EndpointId;
  /** Resolves true when the instance and card are registered (the readiness gate opens), false when shut down first. */
  readonly registered: Promise<boolean>;
  private settleRegistered: (registered: boolean) => void = () => {};

  private readonly gate = new ReadinessGate();
  private readonly loads: LoadPublisher;
  private readonly serveHandles: ServeHandle[] = [];
  private readonly stopRegistering = new AbortController();
  private readonly unsubscribeEvents: () => void;
  private readonly drainTimeoutMs: number;
  private readonly idleWaiters = new Set<() => void>();
  private registration: Registration | undefined;
  private draining = false;
  private closed: Promise<void> | undefined;
  private inFlight = 0;
  private served = 0;
  private badRequests = 0;
  private eventsPublished = 0;
  private publishErrors = 0;
  private readonly durable: boolean;
  private readonly kvEventsSubject: string;

  private constructor(options: WorkerOptions) {
    this.runtime = options.runtime;
    this.namespace = options.namespace ?? DEFAULT_NAMESPACE;
    this.instanceId = options.instanceId ?? randomU64();
    this.drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.engine = options.engine({
      workerId: this.instanceId,
      transfer: new RuntimeKvTransfer(this.runtime, this.namespace),
    });
    const d = this.engine.description;
    this.component = d.role === 'prefill' ? PREFILL_COMPONENT : BACKEND_COMPONENT;
    this.generateEndpoint = endpointId(this.namespace, this.component, GENERATE_ENDPOINT);
    this.card = {
      modelName: options.modelName,
      role: d.role,
      kvBlockSize: d.kvBlockSize,
      totalKvBlocks: d.totalKvBlocks,
      maxNumSeqs: d.maxNumSeqs,
      maxNumBatchedTokens: d.maxNumBatchedTokens,
      dataParallelSize: d.dataParallelSize,
      ...(d.role === 'prefill' && options.bootstrap ? { bootstrap: options.bootstrap } : {}),
      ...(options.runtimeConfig ? { runtimeConfig: options.runtimeConfig } : {}),
    };
    this.loads = new LoadPublisher({
      events: this.runtime.events,
      subject: kvMetricsSubject(this.namespace, this.component),
      workerId: this.instanceId,
      engine: this.engine,
      intervalMs: options.metricsIntervalMs ?? 1_000,
      throttleMs: options.metricsThrottleMs ?? 100,
    });
    const subject = kvEventsSubject(this.namespace, this.component);
    this.kvEventsSubject = subject;
    this.durable = options.durableKvEvents === true;
    const encoder = new TextEncoder();
    const events = this.runtime.events;
    this.unsubscribeEvents = this.engine.onKvEvent((event: KvCacheEvent) => {
      const payload = encoder.encode(encodeRouterEvent({ workerId: this.instanceId, event }));
      if (this.durable)
        events.publishDurable(subject, payload).catch((error: unknown) => {
          this.publishErrors++;
          log.warn(
            { err: errorMessage(error), eventId: event.eventId.toString() },
            'worker: durable KV event not stored',
          );
        });
      else events.publish(subject, payload);
      this.eventsPublished++;
      this.loads.changed();
    });
    this.registered = new Promise<boolean>((resolve) => {
      this.settleRegistered = resolve;
    });
  }

  /** Serves the endpoints, then registers in the background (see `registered`). */
  static async start(options: WorkerOptions): Promise<Worker> {
    const worker = new Worker(options);
    try {
      if (worker.durable)
        await worker.runtime.events.ensureStream({
          name: streamNameForSubject(worker.kvEventsSubject),
          subjects: [worker.kvEventsSubject],
          maxAgeMs: KV_EVENTS_RETENTION_MS,
        });
      await worker.serveEndpoints();
    } catch (error) {
      await worker.shutdown({ drainTimeoutMs: 0 });
      throw error;
    }
    worker.registerInBackground(options.registerRetryMaxMs ?? 5_000);
    return worker;
  }

  get isReady(): boolean {
    return this.gate.isOpen;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  stats(): WorkerStats {
    return {
      inFlight: this.inFlight,
      served: this.served,
      badRequests: this.badRequests,
      eventsPublished: this.eventsPublished,
      eventPublishErrors: this.publishErrors,
      loadsPublished: this.loads.published,
    };
  }

  /**
   * Deregisters, refuses new requests, waits for in-flight ones (up to the drain timeout), then
   * stops serving and closes the engine. The runtime stays open (its owner closes it).
   */
  shutdown(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.closed ??= this.doShutdown(options.drainTimeoutMs ?? this.drainTimeoutMs);
    return this.closed;
  }

  private async doShutdown(drainTimeoutMs: number): Promise<void> {
    this.draining = true;
    this.stopRegistering.abort();
    const registration = this.registration;
    if (registration !== undefined) {
      const deregistered = registration.deregister().catch((error: unknown) => {
        log.warn({ err: error }, 'worker: deregistration failed; the lease expires the instance');
      });
      await within(deregistered, Math.max(1_000, Math.min(drainTimeoutMs, 5_000)));
    }
    this.settleRegistered(false);
    this.gate.open(); // parked requests now see WORKER_UNAVAILABLE
    if (this.inFlight > 0) {
      log.info({ inFlight: this.inFlight, drainTimeoutMs }, 'worker: draining in-flight requests');
      await within(this.idle(), drainTimeoutMs);
    }
    this.loads.stop();
    this.unsubscribeEvents();
    await Promise.all(this.serveHandles.map((h) => h.stop().catch(() => undefined)));
    this.engine.close();
    log.info({ instanceId: this.instanceId.toString(16), left: this.inFlight }, 'worker: stopped');
  }

  private idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.add(resolve));
  }

  private async serveEndpoints(): Promise<void> {
    const requests = this.runtime.requests;
    const ep = (name: string) => endpointId(this.namespace, this.component, name);
    this.serveHandles.push(
      await requests.serve(
        this.generateEndpoint,
        this.instanceId,
        (payload, ctx) => new DualSource(this.pullGenerate, this.pushGenerate, { input: payload, ctx }),
        { valueHandler: this.generateValue },
      ),
    );
    this.serveHandles.push(
      await requests.serve(ep(KV_INDEXER_QUERY_ENDPOINT), this.instanceId, (payload) =>
        this.indexerQuery(payload),
      ),
    );
    if (this.engine.description.role === 'prefill')
      this.serveHandles.push(
        await requests.serve(ep(KV_TRANSFER_ENDPOINT), this.instanceId, (payload, ctx) =>
          this.transfer(payload, ctx),
        ),
      );
  }

  private registerInBackground(retryMaxMs: number): void {
    const signal = this.stopRegistering.signal;
    const attempt = async () => {
      let delay = 100;
      for (let n = 1; !signal.aborted; n++) {
        try {
          this.registration = await this.runtime.discovery.register(
            { endpoint: this.generateEndpoint, instanceId: this.instanceId },
            this.card,
          );
          if (signal.aborted) {
            await this.registration.deregister().catch(() => undefined);
            return;
          }
          log.info(
            {
              instanceId: this.instanceId.toString(16),
              endpoint: `${this.namespace}.${this.component}.${GENERATE_ENDPOINT}`,
              model: this.card.modelName,
              dpSize: this.card.dataParallelSize,
            },
            'worker: registered',
          );
          this.gate.open();
          this.settleRegistered(true);
          return;
        } catch (error) {
          if (signal.aborted || isRuntimeError(error, 'RUNTIME_CLOSED')) return;
          log.warn(
            { attempt: n, retryInMs: delay, err: errorMessage(error) },
            'worker: registration failed; retrying',
          );
          await sleep(delay, signal).catch(() => undefined);
          delay = Math.min(retryMaxMs, delay * 2);
        }
      }
    };
    void attempt();
  }

  private enter(): void {
    this.inFlight++;
  }

  private leave(): void {
    this.inFlight--;
    this.loads.changed();
    if (this.inFlight === 0) {
      for (const wake of [...this.idleWaiters]) wake();
      this.idleWaiters.clear();
    }
  }

  private badRequest(what: string, detail: string): Error {
    this.badRequests++;
    this.runtime.malformed.drop('request', what, detail);
    return new Error(workerErrorText(WORKER_BAD_REQUEST, `invalid ${what}: ${detail}`));
  }

  private unavailable(): Error {
    return new Error(
      workerErrorText(WORKER_UNAVAILABLE, `worker ${this.instanceId.toString(16)} is shutting down`),
    );
  }

  /**
   * An in-process caller's GenerateRequest, checked as its bytes would be (undefined for a shape
   * the value check does not take: the plane then hands over the bytes).
   */
  private readonly generateValue = (
    value: unknown,
    ctx: HandlerContext,
  ): AsyncIterable<Uint8Array> | undefined => {
    const request = generateRequestFromValue(value);
    if (request === undefined) return undefined;
    return new DualSource(this.pullGenerate, this.pushGenerate, { input: request, ctx });
  };

  private readonly pullGenerate = (call: GenerateCall): AsyncIterable<Uint8Array> => this.generate(call);

  private readonly pushGenerate = (call: GenerateCall, sink: PushSink<Uint8Array>): PushHandle => {
    const generatePush = this.engine.generatePush;
    // The fast path needs an engine stream that pushes, and an open gate (no wait before the start).
    if (generatePush === undefined || this.draining || !this.gate.isOpen)
      return pushFromIterable(this.generate(call), sink);
    const request = this.requestOf(call);
    let stream: PushSource<GenerateChunk>;
    try {
      stream = generatePush.call(this.engine, request);
    } catch (error) {
      throw new Error(codedText(error));
    }
    this.enter();
    this.served++;
    this.loads.changed();
    return new PushedGenerate(stream, sink, this.leaveOnce);
  };

  private readonly leaveOnce = (): void => this.leave();

  /** The call's request: handed over in process, or decoded from its bytes. */
  private requestOf(call: GenerateCall): GenerateRequest {
    return call.input instanceof Uint8Array ? this.decodeRequest(call.input) : call.input;
  }

  private decodeRequest(payload: Uint8Array): GenerateRequest {
    try {
      const parsed = decodeGenerateRequest(payload);
      if (!parsed.ok) throw this.badRequest('generate request', parsed.error);
      return parsed.value;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith(WORKER_BAD_REQUEST)) throw error;
      throw this.badRequest('generate request', errorMessage(error));
    }
  }

  private async *generate(call: GenerateCall): AsyncIterable<Uint8Array> {
    if (this.draining) throw this.unavailable();
    const request = this.requestOf(call);
    const ctx = call.ctx;
    // A caller that goes away aborts the signal; the plane may never resume this generator, so the
    // request stops counting as in flight on the abort itself.
    let counted = true;
    const leave = () => {
      if (!counted) return;
      counted = false;
      this.leave();
    };
    this.enter();
    ctx.signal.addEventListener('abort', leave, { once: true });
    try {
      await this.gate.wait(ctx.signal);
      if (this.draining) throw this.unavailable(); // parked behind the gate when shutdown began
      let stream: AsyncIterable<GenerateChunk>;
      try {
        stream = this.engine.generate(request, ctx.signal);
      } catch (error) {
        throw new Error(codedText(error));
      }
      this.served++;
      this.loads.changed();
      try {
        for await (const chunk of stream) yield encodeGenerateChunk(chunk);
      } catch (error) {
        throw new Error(codedText(error)); // e.g. a failed KV pull: ENGINE_BOOTSTRAP_WRONG_RANK
      }
    } finally {
      ctx.signal.removeEventListener('abort', leave);
      leave();
    }
  }

  private async *indexerQuery(payload: Uint8Array): AsyncIterable<Uint8Array> {
    let query: ReturnType<typeof kvIndexerQueryWireSchema.parse>;
    try {
      const parsed = kvIndexerQueryWireSchema.safeParse(decodeJson(payload));
      if (!parsed.success) throw this.badRequest('kv_indexer_query', parsed.error.message);
      query = parsed.data;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith(WORKER_BAD_REQUEST)) throw error;
      throw this.badRequest('kv_indexer_query', errorMessage(error));
    }
    const { dp_rank: dpRank, start_event_id: start, end_event_id: end } = query;
    const size = this.engine.description.dataParallelSize;
    if (dpRank >= size)
      throw new Error(
        workerErrorText('ENGINE_RANK_OUT_OF_RANGE', `rank ${dpRank} out of range [0, ${size})`),
      );
    if ((start === undefined) !== (end === undefined))
      throw this.badRequest('kv_indexer_query', 'give both start_event_id and end_event_id, or neither');
    let answer: KvIndexerAnswer;
    try {
      if (start !== undefined && end !== undefined) {
        const range = this.engine.eventsInRange(dpRank, start, end);
        answer =
          range.kind === 'events'
            ? { kind: 'events', dpRank, lastEventId: end, events: range.events }
            : { kind: 'unavailable', dpRank, oldest: range.oldest, newest: range.newest };
      } else {
        const dump = this.engine.dump(dpRank);
        answer = { kind: 'dump', dpRank, lastEventId: dump.lastEventId, events: dump.events };
      }
    } catch (error) {
      throw new Error(codedText(error));
    }
    yield encodeKvIndexerAnswer(answer);
  }

  private async *transfer(payload: Uint8Array, ctx: HandlerContext): AsyncIterable<Uint8Array> {
    let room: number;
    let dpRank: number;
    try {
      const parsed = kvTransferPullWireSchema.safeParse(decodeJson(payload));
      if (!parsed.success) throw this.badRequest('kv_transfer pull', parsed.error.message);
      room = parsed.data.bootstrap_room;
      dpRank = parsed.data.dp_rank;
    } catch (error) {
      if (error instanceof Error && error.message.startsWith(WORKER_BAD_REQUEST)) throw error;
      throw this.badRequest('kv_transfer pull', errorMessage(error));
    }
    const claim = this.engine.claimRoom;
    if (claim === undefined) throw new Error(workerErrorText('ENGINE_MODE_MISMATCH', 'not a prefill engine'));
    try {
      const pulled = await claim.call(this.engine, room, dpRank, ctx.signal);
      yield encodeJson(kvTransferAnswerToWire({ ok: true, blocks: pulled.blocks, tokenIds: pulled.tokens }));
    } catch (error) {
      const code = error instanceof EngineError ? error.code : 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND';
      yield encodeJson(kvTransferAnswerToWire({ ok: false, code, message: errorMessage(error) }));
    }
  }
}

/** A generate call: its payload's bytes, or the request an in-process caller handed over. */
interface GenerateCall {
  readonly input: Uint8Array | GenerateRequest;
  readonly ctx: HandlerContext;
}

/**
 * The in-process path of a generate call: the engine's chunks are encoded and pushed to the
 * request plane as they come; cancelling (the caller stopped or went away) cancels the engine
 * request. `leave` runs once, when the call ends either way.
 */
class PushedGenerate implements PushSink<GenerateChunk>, PushHandle {
  private readonly upstream: PushHandle;
  private left = false;
  private cancelled = false;

  constructor(
    stream: PushSource<GenerateChunk>,
    private readonly sink: PushSink<Uint8Array>,
    private readonly leave: () => void,
  ) {
    this.upstream = stream[PUSH](this);
    if (this.cancelled) this.upstream.cancel(); // cancelled by a chunk delivered at once
  }

  push(chunk: GenerateChunk): void {
    if (!this.left) pushFrameValue(this.sink, chunk, encodeGenerateChunk);
  }

  end(): void {
    if (this.done()) this.sink.end();
  }

  fail(error: unknown): void {
    // e.g. a failed KV pull: ENGINE_BOOTSTRAP_WRONG_RANK
    if (this.done()) this.sink.fail(new Error(codedText(error)));
  }

  cancel(): void {
    if (!this.done()) return;
    this.cancelled = true;
    this.upstream?.cancel();
  }

  /** True the first time (the call ends now). */
  private done(): boolean {
    if (this.left) return false;
    this.left = true;
    this.leave();
    return true;
  }
}

/** Waits for `promise`, at most `ms` (the timer is cleared either way). */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** `CODE: message` for coded errors (EngineError and friends), the message otherwise. */
function codedText(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? workerErrorText(code, errorMessage(error)) : errorMessage(error);
}
