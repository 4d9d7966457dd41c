/**
 * In-process streams with durable consumers, JetStream's semantics where the router relies on
 * them: a stream stores what is published on its subjects (dropping messages older than maxAge);
 * a named consumer remembers what it acked, so a new subscription gets everything unacked first;
 * an unacked message is redelivered after ackWait, a nak'd one at once.
 */
import { log } from '../../util/log.ts';
import { RuntimeError } from '../errors.ts';
import { subjectMatches } from '../subjects.ts';
import type { DurableMessage, DurableStreamConfig } from '../types.ts';

interface Stored {
  readonly seq: number;
  readonly subject: string;
  readonly payload: Uint8Array;
  readonly at: number;
}

interface Consumer {
  ackFloor: number;
  readonly acked: Set<number>;
  readonly deliveries: Map<number, number>;
  readonly timers: Map<number, ReturnType<typeof setTimeout>>;
  /** The next sequence not yet delivered in this subscription. */
  cursor: number;
  listener: ((message: DurableMessage) => void) | undefined;
  ackWaitMs: number;
}

interface Stream {
  readonly config: DurableStreamConfig;
  readonly patterns: (readonly string[])[];
  messages: Stored[];
  lastSeq: number;
  readonly consumers: Map<string, Consumer>;
}

export class LocalStreams {
  private readonly streams = new Map<string, Stream>();

  ensure(config: DurableStreamConfig): void {
    if (this.streams.has(config.name)) return;
    this.streams.set(config.name, {
      config,
      patterns: config.subjects.map((s) => s.split('.')),
      messages: [],
      lastSeq: 0,
      consumers: new Map(),
    });
  }

  /** Stores the message in the stream that captures its subject; returns its sequence. */
  capture(subject: string, payload: Uint8Array): number | undefined {
    if (this.streams.size === 0) return undefined;
    const tokens = subject.split('.');
    for (const stream of this.streams.values()) {
      if (!stream.patterns.some((p) => subjectMatches(p, tokens))) continue;
      const seq = ++stream.lastSeq;
      const now = Date.now();
      stream.messages.push({ seq, subject, payload, at: now });
      this.expire(stream, now);
      for (const consumer of stream.consumers.values()) if (consumer.listener) this.pump(stream, consumer);
      return seq;
    }
    return undefined;
  }

  consume(
    streamName: string,
    name: string,
    listener: (message: DurableMessage) => void,
    ackWaitMs: number,
  ): () => void {
    const stream = this.streams.get(streamName);
    if (!stream) throw new RuntimeError('RUNTIME_INVALID', `stream ${streamName} not found`);
    let consumer = stream.consumers.get(name);
    if (!consumer) {
      consumer = {
        ackFloor: 0,
        acked: new Set(),
        deliveries: new Map(),
        timers: new Map(),
        cursor: 1,
        listener: undefined,
        ackWaitMs,
      };
      stream.consumers.set(name, consumer);
    }
    if (consumer.listener)
      throw new RuntimeError('RUNTIME_INVALID', `consumer ${name} is already subscribed`);
    consumer.listener = listener;
    consumer.ackWaitMs = ackWaitMs;
    // Like the NATS plane: everything after the ack floor again, in order (at-least-once).
    consumer.cursor = consumer.ackFloor + 1;
    consumer.acked.clear();
    consumer.deliveries.clear();
    const c = consumer;
    queueMicrotask(() => this.pump(stream, c));
    return () => {
      if (c.listener !== listener) return;
      c.listener = undefined;
      for (const timer of c.timers.values()) clearTimeout(timer);
      c.timers.clear();
    };
  }

  deleteConsumer(streamName: string, name: string): void {
    const consumer = this.streams.get(streamName)?.consumers.get(name);
    if (!consumer) return;
    for (const timer of consumer.timers.values()) clearTimeout(timer);
    consumer.listener = undefined;
    this.streams.get(streamName)?.consumers.delete(name);
  }

  private pump(stream: Stream, consumer: Consumer): void {
    const first = stream.messages[0]?.seq ?? stream.lastSeq + 1;
    if (consumer.cursor < first) consumer.cursor = first;
    while (consumer.listener && consumer.cursor <= stream.lastSeq) {
      const seq = consumer.cursor++;
      if (seq <= consumer.ackFloor) continue;
      const stored = stream.messages[seq - first];
      if (stored) this.deliver(stream, consumer, stored);
    }
  }

  private deliver(stream: Stream, consumer: Consumer, stored: Stored): void {
    const listener = consumer.listener;
    if (!listener) return;
    const deliveries = (consumer.deliveries.get(stored.seq) ?? 0) + 1;
    consumer.deliveries.set(stored.seq, deliveries);
    const redeliver = () => {
      clearTimeout(consumer.timers.get(stored.seq));
      consumer.timers.delete(stored.seq);
      if (consumer.listener && !consumer.acked.has(stored.seq) && stored.seq > consumer.ackFloor)
        this.deliver(stream, consumer, stored);
    };
    const timer = setTimeout(redeliver, consumer.ackWaitMs);
    timer.unref?.();
    consumer.timers.set(stored.seq, timer);
    let settled = false;
    const message: DurableMessage = {
      subject: stored.subject,
      payload: stored.payload,
      seq: stored.seq,
      deliveries,
      ack: () => {
        if (settled) return;
        settled = true;
        this.ack(consumer, stored.seq);
      },
      nak: () => {
        if (settled) return;
        settled = true;
        queueMicrotask(redeliver);
      },
    };
    try {
      listener(message);
    } catch (error) {
      log.error({ err: error, subject: stored.subject }, 'runtime: durable listener threw');
    }
  }

  private ack(consumer: Consumer, seq: number): void {
    clearTimeout(consumer.timers.get(seq));
    consumer.timers.delete(seq);
    consumer.deliveries.delete(seq);
    if (seq <= consumer.ackFloor) return;
    consumer.acked.add(seq);
    while (consumer.acked.delete(consumer.ackFloor + 1)) consumer.ackFloor++;
  }

  private expire(stream: Stream, now: number): void {
    const maxAge = stream.config.maxAgeMs;
    if (maxAge === undefined) return;
    let drop = 0;
    while (drop < stream.messages.length && now - stream.messages[drop].at > maxAge) drop++;
    if (drop > 0) stream.messages = stream.messages.slice(drop);
  }
}
