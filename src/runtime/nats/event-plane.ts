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
    await this.prepareConsumer(jsm, stream, consumer, nanos(options.ackWaitMs ?? 60_000));
    const pull = await this.client().consumers.get(stream, consumer);
    const messages = await pull.consume({
      max_messages: 1000,
      callback: (m) => {
        let settled = false;
        const message: DurableMessage = {
          subject: m.subject,
          payload: m.data,
          seq: m.seq,
          deliveries: m.info.deliveryCount,
          ack: () => {
            if (settled) return;
            settled = true;
            m.ack();
          },
          nak: () => {
            if (settled) return;
            settled = true;
            m.nak();
          },
        };
        try {
          listener(message);
        } catch (error) {
          log.error({ err: error, subject: m.subject }, 'runtime: durable listener threw');
        }
      },
    });
    return this.track(() => void messages.close().catch(() => {}));
  }

  /**
   * Makes the durable consumer deliver, in order, everything after its ack floor. JetStream would
   * redeliver messages left unacked by a previous subscription only after ack_wait, behind newer
   * ones; so a consumer with pending acks is recreated to start right after its ack floor
   * (at-least-once: a message acked above the floor may come again).
   */
  private async prepareConsumer(jsm: JetStreamManager, stream: string, consumer: string, ackWait: number) {
    const base = { durable_name: consumer, ack_policy: AckPolicy.Explicit, ack_wait: ackWait };
    let info: Awaited<ReturnType<JetStreamManager['consumers']['info']>> | undefined;
    try {
      info = await jsm.consumers.info(stream, consumer);
    } catch {
      info = undefined;
    }
    if (!info) {
      await jsm.consumers.add(stream, { ...base, deliver_policy: DeliverPolicy.All });
      return;
    }
    if (info.num_ack_pending === 0 && info.config.ack_wait === ackWait) return;
    await jsm.consumers.delete(stream, consumer);
    await jsm.consumers.add(stream, {
      ...base,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: info.ack_floor.stream_seq + 1,
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
