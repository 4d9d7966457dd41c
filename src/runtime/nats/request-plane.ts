/**
 * Streaming request/reply over core NATS.
 *
 * A call publishes REQUEST on the instance's subject with a reply subject under this plane's one
 * wildcard inbox subscription (`{inbox}.c{n}`); the server streams DATA frames, then END or ERROR,
 * to it. Both sides watch each other:
 * - the server sends a HEARTBEAT per stream every `heartbeatMs`; a caller that hears nothing for
 *   `inactivityTimeoutMs` fails with RUNTIME_STREAM_LOST (the server died or the path broke);
 * - heartbeats carry a reply subject, so when the caller's inbox has gone (the caller died) NATS
 *   answers "no responders" and the server aborts the handler;
 * - a REQUEST nobody subscribes to gets the same "no responders" answer: RUNTIME_NO_RESPONDERS;
 * - the caller's abort, timeout or `break` sends CANCEL, aborting the handler's signal.
 * Frames carry sequence numbers, so a frame lost across a reconnect fails the stream loudly.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { createInbox } from '@nats-io/transport-node';
import { log } from '../../util/log.ts';
import { AsyncQueue } from '../async-queue.ts';
import { errorMessage, RemoteError, RuntimeError } from '../errors.ts';
import { MalformedCounter } from '../stats.ts';
import { requestSubject } from '../subjects.ts';
import {
  type CallOptions,
  type EndpointId,
  formatEndpointId,
  type InstanceId,
  type InstanceTransport,
  type RequestHandler,
  type RequestPlane,
  type ServeHandle,
  type StopOptions,
} from '../types.ts';
import { waitUntil } from '../wait.ts';
import { CANCEL_FRAME, FrameKind, frameText, parseServerFrame, requestFrame, serverFrame } from './frames.ts';

export interface NatsRequestPlaneOptions {
  /** Heartbeat period of a server stream (default 1000 ms). */
  readonly heartbeatMs?: number;
  /** A caller gives up after this long without any frame (default 3 heartbeats). */
  readonly inactivityTimeoutMs?: number;
  readonly malformed?: MalformedCounter;
}

const NO_RESPONDERS = 503;

function isNoResponders(msg: Msg): boolean {
  return msg.headers?.code === NO_RESPONDERS && msg.data.length === 0;
}

class NatsCall implements AsyncIterator<Uint8Array> {
  readonly queue = new AsyncQueue<Uint8Array>();
  lastFrameAt = performance.now();
  private expected = 0;
  private active = true;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly onAbort = () =>
    this.cancel(new RuntimeError('RUNTIME_CANCELLED', 'call cancelled by the caller'));

  constructor(
    private readonly plane: NatsRequestPlane,
    readonly token: string,
    readonly subject: string,
    readonly reply: string,
    private readonly label: string,
    private readonly options: CallOptions,
  ) {
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (options.timeoutMs !== undefined)
      this.timer = setTimeout(
        () =>
          this.cancel(new RuntimeError('RUNTIME_TIMEOUT', `call timed out after ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
  }

  onMessage(msg: Msg): void {
    if (!this.active) return;
    this.lastFrameAt = performance.now();
    if (isNoResponders(msg)) {
      this.finish(new RuntimeError('RUNTIME_NO_RESPONDERS', `no responders for ${this.label}`));
      return;
    }
    const frame = parseServerFrame(msg.data);
    if (!frame) {
      this.plane.malformed.drop('request', 'response frame', `${msg.data.length} bytes on ${msg.subject}`);
      return;
    }
    if (frame.kind === FrameKind.stopped) {
      this.finish(new RuntimeError('RUNTIME_SERVER_CANCELLED', frameText(frame.body)));
      return;
    }
    if (frame.seq !== this.expected) {
      this.cancel(
        new RuntimeError(
          'RUNTIME_STREAM_LOST',
          `${this.label}: frames lost (expected ${this.expected}, got ${frame.seq})`,
        ),
      );
      return;
    }
    if (frame.kind === FrameKind.data) {
      this.expected++;
      this.queue.push(frame.body);
    } else if (frame.kind === FrameKind.end) this.finish();
    else if (frame.kind === FrameKind.error) this.finish(new RemoteError(frameText(frame.body)));
  }

  /** Fails the call now (queued chunks are dropped) and tells the server to stop. */
  cancel(error: RuntimeError): void {
    if (!this.active) return;
    this.plane.sendCancel(this.subject, this.reply);
    this.finish(error, true);
  }

  checkInactivity(now: number, limitMs: number): void {
    if (this.active && now - this.lastFrameAt > limitMs)
      this.cancel(new RuntimeError('RUNTIME_STREAM_LOST', `${this.label}: no frame for ${limitMs} ms`));
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    return this.queue.next();
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    this.cancel(new RuntimeError('RUNTIME_CANCELLED', 'caller stopped reading'));
    return { value: undefined, done: true };
  }

  finish(error?: RuntimeError, now = false): void {
    if (!this.active) return;
    this.active = false;
    this.plane.forget(this.token);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    if (this.timer) clearTimeout(this.timer);
    if (!error) this.queue.end();
    else if (now) this.queue.failNow(error);
    else this.queue.fail(error);
  }
}

interface ServerStream {
  readonly reply: string;
  readonly token: string;
  readonly abort: AbortController;
  seq: number;
}

interface Served {
  readonly subscription: Subscription;
  readonly streams: Map<string, ServerStream>;
  draining: boolean;
}

export class NatsRequestPlane implements RequestPlane {
  readonly malformed: MalformedCounter;
  private readonly inbox: string;
  private readonly inboxSubscription: Subscription;
  private readonly calls = new Map<string, NatsCall>();
  private readonly heartbeatStreams = new Map<string, ServerStream>();
  private readonly served = new Map<string, Served>();
  private readonly heartbeatMs: number;
  private readonly inactivityMs: number;
  private readonly ticker: ReturnType<typeof setInterval>;
  private counter = 0;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    options: NatsRequestPlaneOptions = {},
  ) {
    this.malformed = options.malformed ?? new MalformedCounter();
    this.heartbeatMs = options.heartbeatMs ?? 1_000;
    this.inactivityMs = options.inactivityTimeoutMs ?? 3 * this.heartbeatMs;
    this.inbox = createInbox();
    const prefixLength = this.inbox.length + 1;
    this.inboxSubscription = nc.subscribe(`${this.inbox}.*`, {
      callback: (error, msg) => {
        if (error) return log.warn({ err: error }, 'runtime: request inbox error');
        const token = msg.subject.slice(prefixLength);
        if (token.startsWith('c')) this.calls.get(token)?.onMessage(msg);
        else if (isNoResponders(msg)) {
          const stream = this.heartbeatStreams.get(token);
          stream?.abort.abort(new RuntimeError('RUNTIME_CANCELLED', 'the caller went away'));
        }
      },
    });
    this.ticker = setInterval(
      () => this.tick(),
      Math.max(10, Math.min(this.heartbeatMs, this.inactivityMs / 3)),
    );
    this.ticker.unref?.();
  }

  transportFor(endpoint: EndpointId, instanceId: InstanceId): InstanceTransport {
    return { kind: 'nats', subject: requestSubject(endpoint, instanceId) };
  }

  async serve(endpoint: EndpointId, instanceId: InstanceId, handler: RequestHandler): Promise<ServeHandle> {
    this.assertOpen();
    const subject = requestSubject(endpoint, instanceId);
    if (this.served.has(subject)) throw new RuntimeError('RUNTIME_INVALID', `${subject} is already served`);
    const streams = new Map<string, ServerStream>();
    let served: Served | undefined;
    const subscription = this.nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error) return log.warn({ err: error, subject }, 'runtime: serve subscription error');
        if (served) this.onRequest(msg, served, handler);
      },
    });
    served = { subscription, streams, draining: false };
    const handle = served;
    this.served.set(subject, handle);
    await this.nc.flush();
    return {
      stop: async (options?: StopOptions) => {
        const graceMs = options?.graceMs ?? 0;
        if (graceMs > 0 && !handle.draining) {
          // Stay subscribed while draining: callers' CANCEL frames still have to arrive.
          handle.draining = true;
          await waitUntil(() => streams.size === 0, graceMs);
        }
        await this.unserve(subject, handle, 'the server stopped serving');
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
        this.assertOpen();
        const token = `c${(this.counter++).toString(36)}`;
        const subject = requestSubject(endpoint, instanceId);
        const label = `${formatEndpointId(endpoint)} instance ${instanceId.toString(16)}`;
        const call = new NatsCall(this, token, subject, `${this.inbox}.${token}`, label, options);
        this.calls.set(token, call);
        if (options.signal?.aborted) {
          call.finish(new RuntimeError('RUNTIME_CANCELLED', 'call cancelled by the caller'));
          return call;
        }
        try {
          this.nc.publish(subject, requestFrame(payload), { reply: call.reply });
        } catch (error) {
          const code = this.nc.isClosed() ? 'RUNTIME_CLOSED' : 'RUNTIME_INVALID';
          call.finish(new RuntimeError(code, `cannot send request: ${errorMessage(error)}`));
        }
        return call;
      },
    };
  }

  /** Simulated crash support: stop everything without a word to anyone. */
  abandon(): void {
    this.closed = true;
    clearInterval(this.ticker);
    for (const served of this.served.values())
      for (const stream of served.streams.values())
        stream.abort.abort(new RuntimeError('RUNTIME_CLOSED', 'crashed'));
    for (const call of [...this.calls.values()])
      call.finish(new RuntimeError('RUNTIME_CLOSED', 'crashed'), true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    await Promise.all(
      [...this.served].map(([subject, served]) => this.unserve(subject, served, 'the server shut down')),
    );
    for (const call of [...this.calls.values()])
      call.cancel(new RuntimeError('RUNTIME_CLOSED', 'request plane closed'));
    if (!this.nc.isClosed()) this.inboxSubscription.unsubscribe();
  }

  sendCancel(subject: string, reply: string): void {
    this.safePublish(subject, CANCEL_FRAME, reply);
  }

  forget(token: string): void {
    this.calls.delete(token);
  }

  private onRequest(msg: Msg, served: Served, handler: RequestHandler): void {
    const { streams } = served;
    const data = msg.data;
    const reply = msg.reply;
    if (!reply || data.length === 0) {
      this.malformed.drop('request', 'request frame', `${data.length} bytes without a usable reply subject`);
      return;
    }
    if (data[0] === FrameKind.cancel) {
      streams.get(reply)?.abort.abort(new RuntimeError('RUNTIME_CANCELLED', 'call cancelled by the caller'));
      return;
    }
    if (data[0] !== FrameKind.request || streams.has(reply)) {
      this.malformed.drop('request', 'request frame', `kind ${data[0]} from ${reply}`);
      return;
    }
    if (served.draining) {
      this.safePublish(reply, serverFrame(FrameKind.stopped, 0, 'the server is draining'));
      return;
    }
    const stream: ServerStream = {
      reply,
      token: `s${(this.counter++).toString(36)}`,
      abort: new AbortController(),
      seq: 0,
    };
    streams.set(reply, stream);
    this.heartbeatStreams.set(stream.token, stream);
    void this.pump(stream, data.subarray(1), handler).finally(() => {
      streams.delete(reply);
      this.heartbeatStreams.delete(stream.token);
    });
  }

  private async pump(stream: ServerStream, payload: Uint8Array, handler: RequestHandler): Promise<void> {
    const { signal } = stream.abort;
    try {
      for await (const chunk of handler(payload, { signal })) {
        if (signal.aborted) return;
        if (!(chunk instanceof Uint8Array))
          throw new TypeError('handler yielded a value that is not a Uint8Array');
        // Throws when the chunk is over max_payload (the caller gets an ERROR frame) or when the
        // connection is closed (the catch below then cannot send anything either).
        this.nc.publish(stream.reply, serverFrame(FrameKind.data, stream.seq, chunk));
        stream.seq++;
      }
      if (!signal.aborted) this.safePublish(stream.reply, serverFrame(FrameKind.end, stream.seq));
    } catch (error) {
      if (!signal.aborted)
        this.safePublish(stream.reply, serverFrame(FrameKind.error, stream.seq, errorMessage(error)));
    }
  }

  private async unserve(subject: string, served: Served, why: string): Promise<void> {
    if (this.served.get(subject) !== served) return;
    this.served.delete(subject);
    if (!this.nc.isClosed()) served.subscription.unsubscribe();
    for (const stream of served.streams.values()) {
      stream.abort.abort(new RuntimeError('RUNTIME_SERVER_CANCELLED', why));
      this.safePublish(stream.reply, serverFrame(FrameKind.stopped, stream.seq, why));
    }
    if (!this.nc.isClosed()) await this.nc.flush().catch(() => {});
  }

  private tick(): void {
    for (const stream of this.heartbeatStreams.values())
      this.safePublish(
        stream.reply,
        serverFrame(FrameKind.heartbeat, stream.seq),
        `${this.inbox}.${stream.token}`,
      );
    const now = performance.now();
    for (const call of [...this.calls.values()]) call.checkInactivity(now, this.inactivityMs);
  }

  private safePublish(subject: string, data: Uint8Array, reply?: string): boolean {
    try {
      this.nc.publish(subject, data, reply ? { reply } : undefined);
      return true;
    } catch (error) {
      log.debug({ err: error, subject }, 'runtime: publish failed');
      return false;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new RuntimeError('RUNTIME_CLOSED', 'request plane is closed');
  }
}
