/**
 * The in-process "cluster": the shared store, request hub and event bus that every local runtime
 * of one process talks through (`kvgate serve` runs frontend, router and workers this way).
 */
import { KvDiscovery } from '../kv-discovery.ts';
import { MalformedCounter } from '../stats.ts';
import type { Runtime } from '../types.ts';
import { LocalEventBus, LocalEventPlane } from './event-plane.ts';
import { LocalKvStore } from './kv-store.ts';
import { LocalRequestHub, LocalRequestPlane } from './request-plane.ts';

export interface LocalRuntimeOptions {
  /** Lease TTL in seconds (default 10); a crashed runtime's instances vanish after it. */
  readonly leaseTtlSeconds?: number;
}

export class LocalRuntime implements Runtime {
  readonly discovery: KvDiscovery;
  readonly requests: LocalRequestPlane;
  readonly events: LocalEventPlane;
  readonly malformed = new MalformedCounter();

  constructor(cluster: LocalCluster, options: LocalRuntimeOptions = {}) {
    this.requests = new LocalRequestPlane(cluster.requests);
    this.events = new LocalEventPlane(cluster.events);
    this.discovery = new KvDiscovery(cluster.store, {
      leaseTtlSeconds: options.leaseTtlSeconds,
      defaultTransport: () => this.requests.transportFor(),
      malformed: this.malformed,
    });
  }

  /** The process "dies": serving stops at once, the lease is no longer kept alive. */
  async simulateCrash(): Promise<void> {
    this.requests.simulateCrash();
    await this.discovery.abandonLease();
    await this.events.close();
  }

  async close(): Promise<void> {
    await this.discovery.close();
    await this.requests.close();
    await this.events.close();
  }
}

export class LocalCluster {
  readonly store = new LocalKvStore();
  readonly requests = new LocalRequestHub();
  readonly events = new LocalEventBus();

  runtime(options: LocalRuntimeOptions = {}): LocalRuntime {
    return new LocalRuntime(this, options);
  }
}
