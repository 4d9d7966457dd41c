/**
 * Event plane over NATS: core pub/sub for fire-and-forget events, JetStream streams with durable
 * pull consumers for the durable option (KV events survive a router restart). Subscriptions come
 * back by themselves after a reconnect (nats.js re-subscribes).
 */
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { log } from '../../util/log.ts';
import { errorMessage, RuntimeError } from '../errors.ts';
import { assertPublishSubject, assertSubscribeSubject } from '../subjects.ts';
import type {
  DurableConsumerOptions,
  DurableMessage,
  DurableStreamConfig,
  EventMessage,
  EventPlane,
  Subscription,
} from '../types.ts';

const nanos = (ms: number) => Math.round(ms * 1_000_000);

export class NatsEventPlane implements EventPlane {
  private jsm: Promise<JetStreamManager> | undefined;
  private js: JetStreamClient | undefined;
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;

  constructor(private readonly nc: NatsConnection) {}

  publish(subject: string, payload: Uint8Array): void {
    this.assertOpen();
    assertPublishSubject(subject);
    this.nc.publish(subject, payload);
  }

  subscribe(subject: string, listener: (message: EventMessage) => void): Subscription {
    this.assertOpen();
    assertSubscribeSubject(subject);
    const sub = this.nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error) return log.warn({ err: error, subject }, 'runtime: event subscription error');
        try {
          listener({ subject: msg.subject, payload: msg.data });
        } catch (e) {
          log.error({ err: e, subject: msg.subject }, 'runtime: event listener threw');
        }
      },
    });
    return this.track(() => {
      if (!this.nc.isClosed()) sub.unsubscribe();
    });
  }

  async flush(): Promise<void> {
    await this.nc.flush();
  }

  async ensureStream(config: DurableStreamConfig): Promise<void> {
    this.assertOpen();
    for (const s of config.subjects) assertSubscribeSubject(s);
    const jsm = await this.manager();
    try {
      await jsm.streams.info(config.name);
      return;
    } catch {
      // Not there yet.
    }
    await jsm.streams.add({
      name: config.name,
      subjects: [...config.subjects],
      storage: StorageType.File,
      ...(config.maxAgeMs !== undefined ? { max_age: nanos(config.maxAgeMs) } : {}),
    });
  }

  async publishDurable(subject: string, payload: Uint8Array): Promise<number> {
    this.assertOpen();
    assertPublishSubject(subject);
    try {
      const ack = await this.client().publish(subject, payload);
      return ack.seq;
    } catch (error) {
      throw new RuntimeError(
        'RUNTIME_NO_RESPONDERS',
        `durable publish to ${subject} failed: ${errorMessage(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  async subscribeDurable(
    stream: string,
    consumer: string,
    listener: (message: DurableMessage) => void,
    options: DurableConsumerOptions = {},
  ): Promise<Subscription> {
    this.assertOpen();
    const jsm = await this.manager();
    const ackWait = nanos(options.ackWaitMs ?? 60_000);
    try {
      const info = await jsm.consumers.info(stream, consumer);
      if (info.config.ack_wait !== ackWait)
        await jsm.consumers.update(stream, consumer, { ack_wait: ackWait });
    } catch {
      await jsm.consumers.add(stream, {
        durable_name: consumer,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: ackWait,
      });
    }
    const pull = await this.client().consumers.get(stream, consumer);
    const unacked = new Set<JsMsg>();
    const messages = await pull.consume({
      max_messages: 1000,
      callback: (m) => {
        let settled = false;
        unacked.add(m);
        const settle = () => {
          if (settled) return false;
          settled = true;
          unacked.delete(m);
          return true;
        };
        const message: DurableMessage = {
          subject: m.subject,
          payload: m.data,
          seq: m.seq,
          deliveries: m.info.deliveryCount,
          ack: () => {
            if (settle()) m.ack();
          },
          nak: () => {
            if (settle()) m.nak();
          },
        };
        try {
          listener(message);
        } catch (error) {
          log.error({ err: error, subject: m.subject }, 'runtime: durable listener threw');
        }
      },
    });
    return this.track(() => {
      // What was delivered but not acked goes back to the stream now, not after ack_wait.
      for (const m of unacked) m.nak();
      unacked.clear();
      void messages.close().catch(() => {});
    });
  }

  async deleteConsumer(stream: string, consumer: string): Promise<void> {
    const jsm = await this.manager();
    await jsm.consumers.delete(stream, consumer).catch((error: unknown) => {
      log.debug({ err: error, stream, consumer }, 'runtime: consumer delete failed');
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const sub of [...this.subscriptions]) sub.unsubscribe();
  }

  private track(stop: () => void): Subscription {
    const handle: Subscription = {
      unsubscribe: () => {
        if (!this.subscriptions.delete(handle)) return;
        stop();
      },
    };
    this.subscriptions.add(handle);
    return handle;
  }

  private manager(): Promise<JetStreamManager> {
    this.jsm ??= jetstreamManager(this.nc);
    this.jsm.catch(() => {
      this.jsm = undefined;
    });
    return this.jsm;
  }

  private client(): JetStreamClient {
    this.js ??= jetstream(this.nc);
    return this.js;
  }

  private assertOpen(): void {
    if (this.closed) throw new RuntimeError('RUNTIME_CLOSED', 'event plane is closed');
  }
}
