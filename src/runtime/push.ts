/**
 * The push form of a stream, for in-process hot paths. An AsyncIterable costs at least one promise
 * and a microtask hop per value at every layer it passes through; a stream that is also a
 * `PushSource` can instead hand each value to a sink synchronously, so a chain of layers
 * (engine → worker → local request plane → router) costs plain calls, and only the last consumer
 * pays for a promise. A source is consumed once, one way or the other.
 *
 * Sinks and handles are classes in the hot paths, not object literals of arrow functions: under
 * tsx (esbuild keepNames, as in tests) every named closure gets a `name` at creation, which costs
 * far more than the closure itself; the production bundle is built without keepNames.
 */
import type { CallOptions, EndpointId, InstanceId, RequestPlane } from './types.ts';

export const PUSH = Symbol('kvgate.push');

/** Receives a pushed stream: values in order, then exactly one of end() or fail(). */
export interface PushSink<T> {
  push(value: T): void;
  end(): void;
  fail(error: unknown): void;
}

/**
 * A sink of frames that, in process, may take the value a frame encodes instead of its bytes: a
 * producer calls `pushValue(value, encode)` when the sink has it; the sink hands the value on to a
 * receiver that takes values (which checks it as it would check decoded bytes), or pushes
 * `encode(value)`. Saves encoding and decoding every frame when both ends share a process. The
 * value goes to exactly one receiver, which owns it from then on: the producer must not touch it.
 */
export interface FrameSink extends PushSink<Uint8Array> {
  pushValue?<V>(value: V, encode: (value: V) => Uint8Array): void;
}

/** Pushes a frame's value where the sink takes values, its bytes otherwise. */
export function pushFrameValue<V>(
  sink: PushSink<Uint8Array>,
  value: V,
  encode: (value: V) => Uint8Array,
): void {
  const frames = sink as FrameSink;
  if (frames.pushValue !== undefined) frames.pushValue(value, encode);
  else sink.push(encode(value));
}

/** Stops a pushed stream early (as `return()` stops an iterator): the sink hears nothing more. */
export interface PushHandle {
  cancel(): void;
}

export interface PushSource<T> extends AsyncIterable<T> {
  /** Starts pushing to `sink` (instead of being iterated). Throws for a stream refused at once. */
  [PUSH](sink: PushSink<T>): PushHandle;
}

export function isPushSource<T>(stream: AsyncIterable<T>): stream is PushSource<T> {
  return typeof (stream as Partial<PushSource<T>>)[PUSH] === 'function';
}

/**
 * Pushes any AsyncIterable (pulled in a loop). `cancel()` stops delivery and asks the iterator to
 * return; a producer blocked on something else must also be told through its own signal.
 */
export function pushFromIterable<T>(stream: AsyncIterable<T>, sink: PushSink<T>): PushHandle {
  if (isPushSource(stream)) return stream[PUSH](sink);
  const pump = new IterablePump(stream, sink);
  void pump.run();
  return pump;
}

/** A request-plane call in push form: the plane's own `callPush`, or its `call` pulled in a loop. */
export function pushCall(
  plane: RequestPlane,
  endpoint: EndpointId,
  instanceId: InstanceId,
  payload: Uint8Array,
  sink: PushSink<Uint8Array>,
  options: CallOptions = {},
): PushHandle {
  if (plane.callPush !== undefined) return plane.callPush(endpoint, instanceId, payload, sink, options);
  return pushFromIterable(plane.call(endpoint, instanceId, payload, options), sink);
}

/**
 * A request-plane call in push form whose payload is the value `encode` turns into bytes: the
 * plane's own `callPushValue` (in process: the value goes to the handler as it is), or `pushCall`
 * with the encoded bytes.
 */
export function pushCallValue<V>(
  plane: RequestPlane,
  endpoint: EndpointId,
  instanceId: InstanceId,
  value: V,
  encode: (value: V) => Uint8Array,
  sink: PushSink<Uint8Array>,
  options: CallOptions = {},
): PushHandle {
  if (plane.callPushValue !== undefined)
    return plane.callPushValue(endpoint, instanceId, value, encode, sink, options);
  return pushCall(plane, endpoint, instanceId, encode(value), sink, options);
}

class IterablePump<T> implements PushHandle {
  private cancelled = false;
  private iterator: AsyncIterator<T> | undefined;

  constructor(
    private readonly stream: AsyncIterable<T>,
    private readonly sink: PushSink<T>,
  ) {}

  /** Every failure, also of starting the iteration, reaches the sink asynchronously. */
  async run(): Promise<void> {
    try {
      await undefined;
      if (this.cancelled) return;
      this.iterator = this.stream[Symbol.asyncIterator]();
      for (;;) {
        const result = await this.iterator.next();
        if (this.cancelled) return;
        if (result.done) break;
        this.sink.push(result.value);
        if (this.cancelled) return;
      }
    } catch (error) {
      if (!this.cancelled) this.sink.fail(error);
      return;
    }
    this.sink.end();
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.iterator?.return?.()?.catch(noop);
  }
}

function noop(): void {}

/**
 * A stream that is pulled through one function and pushed through another (e.g. a request
 * handler's generic generator and its in-process fast path), built without closures.
 */
export class DualSource<A, T> implements PushSource<T> {
  constructor(
    private readonly pull: (arg: A) => AsyncIterable<T>,
    private readonly push: (arg: A, sink: PushSink<T>) => PushHandle,
    private readonly arg: A,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.pull(this.arg)[Symbol.asyncIterator]();
  }

  [PUSH](sink: PushSink<T>): PushHandle {
    return this.push(this.arg, sink);
  }
}

/**
 * The pull form of a pushed stream, for a consumer that iterates: a queue with one promise per
 * wake-up. Values pushed while the consumer is not waiting queue up (or are merged by `merge`,
 * when given: it returns the merged value, or undefined to keep both).
 */
export class PushQueue<T> implements PushSink<T>, AsyncIterableIterator<T> {
  private readonly queue: T[] = [];
  private head = 0;
  private ended = false;
  private failure: { error: unknown } | null = null;
  private resolve: ((result: IteratorResult<T>) => void) | null = null;
  private reject: ((error: unknown) => void) | null = null;
  /** Called once when the consumer stops early (return) before the end. */
  onReturn: (() => void) | null = null;

  constructor(private readonly merge?: (earlier: T, later: T) => T | undefined) {}

  push(value: T): void {
    if (this.ended || this.failure !== null) return;
    const resolve = this.resolve;
    if (resolve !== null) {
      this.resolve = null;
      this.reject = null;
      resolve({ done: false, value });
      return;
    }
    const queue = this.queue;
    if (this.merge !== undefined && queue.length > this.head) {
      const merged = this.merge(queue[queue.length - 1], value);
      if (merged !== undefined) {
        queue[queue.length - 1] = merged;
        return;
      }
    }
    queue.push(value);
  }

  end(): void {
    if (this.ended || this.failure !== null) return;
    this.ended = true;
    const resolve = this.resolve;
    if (resolve !== null) {
      this.resolve = null;
      this.reject = null;
      resolve({ done: true, value: undefined });
    }
  }

  fail(error: unknown): void {
    if (this.ended || this.failure !== null) return;
    const reject = this.reject;
    if (reject !== null) {
      this.ended = true;
      this.resolve = null;
      this.reject = null;
      reject(error);
      return;
    }
    this.failure = { error };
  }

  return(): Promise<IteratorResult<T>> {
    const stopped = !this.ended;
    this.ended = true;
    this.failure = null;
    this.queue.length = 0;
    this.head = 0;
    const onReturn = this.onReturn;
    this.onReturn = null;
    if (stopped && onReturn !== null) onReturn();
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    const queue = this.queue;
    if (queue.length > this.head) {
      const value = queue[this.head++];
      if (this.head === queue.length) {
        queue.length = 0;
        this.head = 0;
      }
      return Promise.resolve({ done: false, value });
    }
    if (this.failure !== null) {
      const { error } = this.failure;
      this.failure = null;
      this.ended = true;
      return Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    return new Promise<IteratorResult<T>>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}
