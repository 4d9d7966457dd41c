/**
 * Publishes each rank's load on `kv_metrics`: every `intervalMs`, and soon after a change (at most
 * once per `throttleMs`). Each message is one (worker, rank), with the rank's newest KV event id so
 * a router can notice events it missed at the tail of the stream.
 */

import { workerLoadToWire } from '../protocol/wire.ts';
import { encodeJson } from '../runtime/codec.ts';
import type { EventPlane } from '../runtime/types.ts';
import { log } from '../util/log.ts';
import type { EngineAdapter } from './engine-adapter.ts';

export interface LoadPublisherOptions {
  readonly events: EventPlane;
  readonly subject: string;
  readonly workerId: bigint;
  readonly engine: EngineAdapter;
  readonly intervalMs: number;
  readonly throttleMs: number;
}

export class LoadPublisher {
  private readonly interval: ReturnType<typeof setInterval>;
  private pending: ReturnType<typeof setTimeout> | null = null;
  private lastPublishedAt = 0;
  private stopped = false;
  published = 0;

  constructor(private readonly options: LoadPublisherOptions) {
    this.interval = setInterval(() => this.publishNow(), options.intervalMs);
    this.interval.unref();
  }

  /** Something changed: publish now, or once the throttle window has passed. */
  changed(): void {
    if (this.stopped || this.pending !== null) return;
    const wait = this.lastPublishedAt + this.options.throttleMs - Date.now();
    if (wait <= 0) {
      this.publishNow();
      return;
    }
    this.pending = setTimeout(() => {
      this.pending = null;
      this.publishNow();
    }, wait);
    this.pending.unref();
  }

  publishNow(): void {
    if (this.stopped) return;
    this.lastPublishedAt = Date.now();
    const { engine, events, subject, workerId } = this.options;
    try {
      const newest = engine.newestEventIds();
      for (const load of engine.rankLoads()) {
        const payload = workerLoadToWire({
          workerId,
          ...load,
          lastEventId: newest[load.dpRank] ?? null,
        });
        events.publish(subject, encodeJson(payload));
        this.published++;
      }
    } catch (error) {
      log.warn({ err: error }, 'worker: publishing load failed');
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.interval);
    if (this.pending !== null) clearTimeout(this.pending);
    this.pending = null;
  }
}
