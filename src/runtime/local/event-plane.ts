/**
 * In-process event plane: NATS subject rules, asynchronous in-order delivery (one microtask drains
 * everything published since the last drain), payloads shared by reference (subscribers must not
 * mutate them). Streams and durable consumers live in `durable.ts`.
 */
import { log } from '../../util/log.ts';
import { RuntimeError } from '../errors.ts';
import { assertPublishSubject, assertSubscribeSubject, isWildcard, subjectMatches } from '../subjects.ts';
import type {
  DurableConsumerOptions,
  DurableMessage,
  DurableStreamConfig,
  EventMessage,
  EventPlane,
  Subscription,
} from '../types.ts';
import { LocalStreams } from './durable.ts';

interface Subscriber {
  readonly pattern: readonly string[];
  readonly listener: (message: EventMessage) => void;
  active: boolean;
}

/** The subscriptions and streams that all local event planes of one cluster share. */
export class LocalEventBus {
  private readonly exact = new Map<string, Subscriber[]>();
  private wildcard: Subscriber[] = [];
  private queue: EventMessage[] = [];
  private scheduled = false;
  readonly streams = new LocalStreams();

  /** `capture: false` when the caller already stored the message in its stream. */
  publish(subject: string, payload: Uint8Array, capture = true): void {
    this.queue.push({ subject, payload });
    if (capture) this.streams.capture(subject, payload);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.drain);
    }
  }

  subscribe(subject: string, listener: (message: EventMessage) => void): Subscriber {
    const sub: Subscriber = { pattern: subject.split('.'), listener, active: true };
    if (isWildcard(subject)) this.wildcard = [...this.wildcard, sub];
    else this.exact.set(subject, [...(this.exact.get(subject) ?? []), sub]);
    return sub;
  }

  unsubscribe(subject: string, sub: Subscriber): void {
    sub.active = false;
    if (isWildcard(subject)) this.wildcard = this.wildcard.filter((s) => s !== sub);
    else {
      const rest = (this.exact.get(subject) ?? []).filter((s) => s !== sub);
      if (rest.length > 0) this.exact.set(subject, rest);
      else this.exact.delete(subject);
    }
  }

  private readonly drain = (): void => {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const message of batch) {
      const exact = this.exact.get(message.subject);
      if (exact) for (const sub of exact) deliver(sub, message);
      if (this.wildcard.length > 0) {
        const tokens = message.subject.split('.');
        for (const sub of this.wildcard) if (subjectMatches(sub.pattern, tokens)) deliver(sub, message);
      }
    }
  };
}

function deliver(sub: Subscriber, message: EventMessage): void {
  if (!sub.active) return;
  try {
    sub.listener(message);
  } catch (error) {
    log.error({ err: error, subject: message.subject }, 'runtime: event listener threw');
  }
}

export class LocalEventPlane implements EventPlane {
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;

  constructor(private readonly bus: LocalEventBus) {}

  publish(subject: string, payload: Uint8Array): void {
    this.assertOpen();
    assertPublishSubject(subject);
    this.bus.publish(subject, payload);
  }

  subscribe(subject: string, listener: (message: EventMessage) => void): Subscription {
    this.assertOpen();
    assertSubscribeSubject(subject);
    const sub = this.bus.subscribe(subject, listener);
    const handle: Subscription = {
      unsubscribe: () => {
        if (!this.subscriptions.delete(handle)) return;
        this.bus.unsubscribe(subject, sub);
      },
    };
    this.subscriptions.add(handle);
    return handle;
  }

  async flush(): Promise<void> {
    await new Promise<void>((resolve) => queueMicrotask(resolve));
  }

  async ensureStream(config: DurableStreamConfig): Promise<void> {
    this.assertOpen();
    for (const s of config.subjects) assertSubscribeSubject(s);
    this.bus.streams.ensure(config);
  }

  async publishDurable(subject: string, payload: Uint8Array): Promise<number> {
    this.assertOpen();
    assertPublishSubject(subject);
    const seq = this.bus.streams.capture(subject, payload);
    if (seq === undefined) throw new RuntimeError('RUNTIME_NO_RESPONDERS', `no stream captures ${subject}`);
    this.bus.publish(subject, payload, false);
    return seq;
  }

  async subscribeDurable(
    stream: string,
    consumer: string,
    listener: (message: DurableMessage) => void,
    options: DurableConsumerOptions = {},
  ): Promise<Subscription> {
    this.assertOpen();
    const stop = this.bus.streams.consume(stream, consumer, listener, options.ackWaitMs ?? 60_000);
    const handle: Subscription = {
      unsubscribe: () => {
        if (!this.subscriptions.delete(handle)) return;
        stop();
      },
    };
    this.subscriptions.add(handle);
    return handle;
  }

  async deleteConsumer(stream: string, consumer: string): Promise<void> {
    this.bus.streams.deleteConsumer(stream, consumer);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const sub of [...this.subscriptions]) sub.unsubscribe();
  }

  private assertOpen(): void {
    if (this.closed) throw new RuntimeError('RUNTIME_CLOSED', 'event plane is closed');
  }
}
