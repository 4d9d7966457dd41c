/**
 * In-process request plane. A call pulls straight from the handler's async iterator (payloads are
 * passed by reference, no copy or encoding), so the caller's pace is the handler's back-pressure.
 * Semantics match the NATS plane: handler errors arrive as RemoteError, the caller's abort or
 * `break` aborts the handler's signal, a stopped or crashed server fails its callers at once.
 */

import { log } from '../../util/log.ts';
import { RunQueue } from '../../util/run-all.ts';
import { errorMessage, RemoteError, RuntimeError } from '../errors.ts';
import { type FrameSink, type PushHandle, type PushSink, pushFrameValue, pushFromIterable } from '../push.ts';
import {
  type CallOptions,
  type EndpointId,
  formatEndpointId,
  type HandlerContext,
  type InstanceId,
  type InstanceTransport,
  type RequestHandler,
  type RequestPlane,
  type ServeHandle,
  type ServeOptions,
  type StopOptions,
  type ValueHandler,
} from '../types.ts';
import { waitUntil } from '../wait.ts';

/** A running call, pulled or pushed, as the plane sees it. */
interface RunningCall {
  /** Ends the call with an error (server stopped or crashed, caller's plane closed). */
  abortCall(error: RuntimeError): void;
}

interface Served {
  readonly handler: RequestHandler;
  readonly valueHandler: ValueHandler | undefined;
  readonly owner: LocalRequestPlane;
  readonly calls: Set<RunningCall>;
  draining: boolean;
}

/** The registry of served endpoints that all local planes of one cluster share. */
export class LocalRequestHub {
  readonly served = new Map<string, Served>();
}

function servedKey(endpoint: EndpointId, instanceId: InstanceId): string {
  return `${formatEndpointId(endpoint)}/${instanceId.toString(16)}`;
}

const noop = () => {};
const RESOLVED = Promise.resolve();
const DONE: IteratorResult<Uint8Array> = { value: undefined, done: true };

class LocalCall implements AsyncIterator<Uint8Array>, RunningCall {
  private readonly handlerAbort = new AbortController();
  private iterator: AsyncIterator<Uint8Array> | undefined;
  private failure: RuntimeError | undefined;
  /** Rejects the caller's pending next(), if any (settling twice is a no-op). */
  private rejectPending: (error: RuntimeError) => void = noop;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private finished = false;
  private readonly onCallerAbort = () =>
    this.abortCall(new RuntimeError('RUNTIME_CANCELLED', 'call cancelled by the caller'));

  constructor(
    private readonly served: Served,
    private readonly callerCalls: Set<RunningCall>,
    private readonly payload: Uint8Array,
    private readonly options: CallOptions,
  ) {
    served.calls.add(this);
    callerCalls.add(this);
    options.signal?.addEventListener('abort', this.onCallerAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      this.timer = setTimeout(
        () =>
          this.abortCall(new RuntimeError('RUNTIME_TIMEOUT', `call timed out after ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
    }
    if (options.signal?.aborted) this.onCallerAbort();
  }

  /** Ends the call with an error: the caller sees it on its next (or pending) next(). */
  abortCall(error: RuntimeError): void {
    if (this.finished || this.failure) return;
    this.failure = error;
    this.handlerAbort.abort(error);
    this.rejectPending(error);
    this.release();
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.finished) return Promise.resolve(DONE);
    let pending: Promise<IteratorResult<Uint8Array>>;
    try {
      this.iterator ??= this.served
        .handler(this.payload, { signal: this.handlerAbort.signal })
        [Symbol.asyncIterator]();
      pending = this.iterator.next();
    } catch (error) {
      return Promise.reject(this.handlerFailed(error));
    }
    // One promise per chunk, settled by the handler's result or by fail(), whichever comes first.
    return new Promise((resolve, reject) => {
      this.rejectPending = reject;
      pending.then(
        (result) => {
          if (this.failure) reject(this.failure);
          else if (result.done) {
            this.finish();
            resolve(DONE);
          } else if (!(result.value instanceof Uint8Array)) {
            reject(this.handlerFailed(new TypeError('handler yielded a value that is not a Uint8Array')));
          } else resolve(result);
        },
        (error: unknown) => reject(this.handlerFailed(error)),
      );
    });
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    if (!this.finished && !this.failure) {
      this.handlerAbort.abort(callerStoppedReading());
      this.iterator?.return?.().catch(noop);
      this.finish();
    }
    return DONE;
  }

  private handlerFailed(error: unknown): RuntimeError {
    if (this.failure) return this.failure;
    this.finish();
    return new RemoteError(errorMessage(error));
  }

  private finish(): void {
    this.finished = true;
    this.release();
  }

  private release(): void {
    this.served.calls.delete(this);
    this.callerCalls.delete(this);
    this.options.signal?.removeEventListener('abort', this.onCallerAbort);
    if (this.timer) clearTimeout(this.timer);
  }
}

/**
 * A call in push form: the handler's frames reach the caller's sink by plain calls (no promise
 * per frame when the handler's stream is a PushSource too), as values when both ends take them;
 * the payload too, when the caller gives a value (`encode` non-null) and the handler takes values.
 * Same semantics as LocalCall. The handler's signal is made only if the handler asks for it: an
 * AbortSignal costs microseconds.
 */
class LocalPushCall implements RunningCall, PushHandle, FrameSink, HandlerContext {
  private controller: AbortController | null = null;
  private upstream: PushHandle | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private done = false;
  /** Why the call ended early (the reason a handler signal made afterwards carries). */
  private reason: RuntimeError | undefined;

  constructor(
    private readonly served: Served,
    private readonly callerCalls: Set<RunningCall>,
    /** The payload's bytes, or (with `encode`) the value they encode. */
    private readonly payload: unknown,
    private readonly encode: ((value: unknown) => Uint8Array) | null,
    private readonly sink: PushSink<Uint8Array>,
    private readonly options: CallOptions,
  ) {
    served.calls.add(this);
    callerCalls.add(this);
    const signal = options.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.done = true;
        this.release();
        this.reason = new RuntimeError('RUNTIME_CANCELLED', 'call cancelled by the caller');
        RESOLVED.then(() => sink.fail(this.reason));
        return;
      }
      signal.addEventListener('abort', this); // removed in release()
    }
    if (options.timeoutMs !== undefined)
      this.timer = setTimeout(
        () =>
          this.abortCall(new RuntimeError('RUNTIME_TIMEOUT', `call timed out after ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
    // Started on a later tick, as a pulled call starts on the first next(): the caller holds its
    // handle before any frame or error arrives.
    startSoon(this);
  }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.done) this.controller.abort(this.reason ?? callerStoppedReading());
    }
    return this.controller.signal;
  }

  /** Runs the handler (see startSoon). */
  start(): void {
    if (this.done) return;
    try {
      const served = this.served;
      const encode = this.encode;
      let frames: AsyncIterable<Uint8Array> | undefined;
      if (encode === null) frames = served.handler(this.payload as Uint8Array, this);
      else {
        if (served.valueHandler !== undefined) frames = served.valueHandler(this.payload, this);
        frames ??= served.handler(encode(this.payload), this);
      }
      const upstream = pushFromIterable(frames, this);
      if (this.done) upstream.cancel();
      else this.upstream = upstream;
    } catch (error) {
      this.fail(error);
    }
  }

  /** Handler side: one frame. */
  push(frame: Uint8Array): void {
    if (this.done) return;
    if (!(frame instanceof Uint8Array)) {
      this.fail(new TypeError('handler yielded a value that is not a Uint8Array'));
      this.upstream?.cancel();
      return;
    }
    this.sink.push(frame);
  }

  /** Handler side: a frame's value, handed on as it is when the caller takes values. */
  pushValue<V>(value: V, encode: (value: V) => Uint8Array): void {
    if (!this.done) pushFrameValue(this.sink, value, encode);
  }

  /** Handler side: the stream ended. */
  end(): void {
    if (this.done) return;
    this.done = true;
    this.release();
    this.sink.end();
  }

  /** Handler side: the handler threw. */
  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.release();
    this.sink.fail(new RemoteError(errorMessage(error)));
  }

  /** Caller side: stop (like `break`). */
  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.release();
    this.upstream?.cancel();
    this.controller?.abort(callerStoppedReading());
  }

  abortCall(error: RuntimeError): void {
    if (this.done) return;
    this.done = true;
    this.reason = error;
    this.release();
    this.upstream?.cancel();
    this.controller?.abort(error);
    this.sink.fail(error);
  }

  /** The caller's signal aborted (this object is its listener). */
  handleEvent(): void {
    this.abortCall(new RuntimeError('RUNTIME_CANCELLED', 'call cancelled by the caller'));
  }

  private release(): void {
    this.served.calls.delete(this);
    this.callerCalls.delete(this);
    this.options.signal?.removeEventListener('abort', this);
    if (this.timer) clearTimeout(this.timer);
  }
}

/**
 * Push calls made in this tick, started together in one promise reaction (a reaction per call
 * costs a closure and a promise each; queueMicrotask makes an AsyncResource per call, dearer still).
 */
const pendingStarts = new RunQueue<LocalPushCall>(startCall);

// A caller's sink that throws (when told the handler failed) stops neither the other calls nor the
// process: the error is logged. (Rethrown from the reaction, it would be an unhandled rejection.)
function startCall(call: LocalPushCall): void {
  try {
    call.start();
  } catch (error) {
    log.error({ err: error }, 'request plane: a caller failed while its call was starting');
  }
}

function startSoon(call: LocalPushCall): void {
  if (pendingStarts.push(call)) RESOLVED.then(startPending);
}

function startPending(): void {
  pendingStarts.drain();
}

export class LocalRequestPlane implements RequestPlane {
  private readonly serving = new Set<string>();
  private readonly calls = new Set<RunningCall>();
  private closed = false;

  constructor(private readonly hub: LocalRequestHub) {}

  transportFor(): InstanceTransport {
    return { kind: 'local' };
  }

  async serve(
    endpoint: EndpointId,
    instanceId: InstanceId,
    handler: RequestHandler,
    options?: ServeOptions,
  ): Promise<ServeHandle> {
    if (this.closed) throw new RuntimeError('RUNTIME_CLOSED', 'request plane is closed');
    const key = servedKey(endpoint, instanceId);
    if (this.hub.served.has(key))
      throw new RuntimeError('RUNTIME_INVALID', `${key} is already served in this process`);
    const served: Served = {
      handler,
      valueHandler: options?.valueHandler,
      owner: this,
      calls: new Set(),
      draining: false,
    };
    this.hub.served.set(key, served);
    this.serving.add(key);
    return {
      stop: async (options?: StopOptions) => {
        const graceMs = options?.graceMs ?? 0;
        if (graceMs > 0 && !served.draining) {
          served.draining = true;
          await waitUntil(() => served.calls.size === 0, graceMs);
        }
        this.unserve(key, served, 'RUNTIME_SERVER_CANCELLED', 'the server stopped serving');
      },
    };
  }

  call(
    endpoint: EndpointId,
    instanceId: InstanceId,
    payload: Uint8Array,
    options: CallOptions = {},
  ): AsyncIterable<Uint8Array> {
    return {
      [Symbol.asyncIterator]: () => {
        if (this.closed) throw new RuntimeError('RUNTIME_CLOSED', 'request plane is closed');
        const served = this.hub.served.get(servedKey(endpoint, instanceId));
        if (!served)
          return rejecting(
            new RuntimeError(
              'RUNTIME_NO_RESPONDERS',
              `no responders for ${formatEndpointId(endpoint)} instance ${instanceId.toString(16)}`,
            ),
          );
        if (served.draining)
          return rejecting(new RuntimeError('RUNTIME_SERVER_CANCELLED', 'the server is draining'));
        return new LocalCall(served, this.calls, payload, options);
      },
    };
  }

  /** Served keys of the endpoint objects callers reuse (a router keeps one per endpoint). */
  private readonly keys = new WeakMap<EndpointId, Map<InstanceId, string>>();

  /** servedKey, remembered per endpoint object: formatting it costs more than the rest of a call. */
  private keyOf(endpoint: EndpointId, instanceId: InstanceId): string {
    let byInstance = this.keys.get(endpoint);
    if (byInstance === undefined) {
      byInstance = new Map();
      this.keys.set(endpoint, byInstance);
    }
    let key = byInstance.get(instanceId);
    if (key === undefined) {
      key = servedKey(endpoint, instanceId);
      if (byInstance.size >= 4096) byInstance.clear();
      byInstance.set(instanceId, key);
    }
    return key;
  }

  callPush(
    endpoint: EndpointId,
    instanceId: InstanceId,
    payload: Uint8Array,
    sink: PushSink<Uint8Array>,
    options: CallOptions = {},
  ): PushHandle {
    const served = this.servedFor(endpoint, instanceId);
    if (served instanceof RuntimeError) return failedCall(sink, served);
    return new LocalPushCall(served, this.calls, payload, null, sink, options);
  }

  callPushValue<V>(
    endpoint: EndpointId,
    instanceId: InstanceId,
    value: V,
    encode: (value: V) => Uint8Array,
    sink: PushSink<Uint8Array>,
    options: CallOptions = {},
  ): PushHandle {
    const served = this.servedFor(endpoint, instanceId);
    if (served instanceof RuntimeError) return failedCall(sink, served);
    return new LocalPushCall(
      served,
      this.calls,
      value,
      encode as (value: unknown) => Uint8Array,
      sink,
      options,
    );
  }

  /** The served endpoint a call goes to, or why the call fails at once. */
  private servedFor(endpoint: EndpointId, instanceId: InstanceId): Served | RuntimeError {
    if (this.closed) return new RuntimeError('RUNTIME_CLOSED', 'request plane is closed');
    const served = this.hub.served.get(this.keyOf(endpoint, instanceId));
    if (served === undefined)
      return new RuntimeError(
        'RUNTIME_NO_RESPONDERS',
        `no responders for ${formatEndpointId(endpoint)} instance ${instanceId.toString(16)}`,
      );
    if (served.draining) return new RuntimeError('RUNTIME_SERVER_CANCELLED', 'the server is draining');
    return served;
  }

  /**
   * Simulates this process dying: callers of its endpoints fail with STREAM_LOST, handlers serving
   * its own outgoing calls are aborted (as a remote server notices its caller went away).
   */
  simulateCrash(): void {
    this.closed = true;
    for (const key of [...this.serving]) {
      const served = this.hub.served.get(key);
      if (served) this.unserve(key, served, 'RUNTIME_STREAM_LOST', 'the serving instance went away');
    }
    for (const call of [...this.calls]) call.abortCall(new RuntimeError('RUNTIME_CLOSED', 'crashed'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const key of [...this.serving]) {
      const served = this.hub.served.get(key);
      if (served) this.unserve(key, served, 'RUNTIME_SERVER_CANCELLED', 'the server shut down');
    }
    for (const call of [...this.calls])
      call.abortCall(new RuntimeError('RUNTIME_CLOSED', 'request plane closed'));
  }

  private unserve(
    key: string,
    served: Served,
    code: 'RUNTIME_SERVER_CANCELLED' | 'RUNTIME_STREAM_LOST',
    why: string,
  ) {
    if (this.hub.served.get(key) === served) this.hub.served.delete(key);
    this.serving.delete(key);
    for (const call of [...served.calls]) call.abortCall(new RuntimeError(code, why));
  }
}

/**
 * The abort reason a handler sees when its caller stops reading, which is how every normal stream
 * ends (the caller stops at the final chunk): built without a stack trace, whose capture would be a
 * noticeable part of a short request's cost.
 */
function callerStoppedReading(): RuntimeError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new RuntimeError('RUNTIME_CANCELLED', 'caller stopped reading');
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** A push call that failed at once: the sink hears the error on a later tick, unless cancelled first. */
function failedCall(sink: PushSink<Uint8Array>, error: RuntimeError): PushHandle {
  let cancelled = false;
  RESOLVED.then(() => {
    if (!cancelled) sink.fail(error);
  });
  return {
    cancel: () => {
      cancelled = true;
    },
  };
}

function rejecting(error: RuntimeError): AsyncIterator<Uint8Array> {
  return { next: () => Promise.reject(error) };
}
