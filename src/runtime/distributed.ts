/**
 * The distributed runtime: NATS carries the request and event planes (JetStream for durable
 * events), etcd holds discovery under a lease. One NATS connection and one lease per runtime.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { EtcdKvStore, type EtcdStoreOptions } from './etcd/kv-store.ts';
import { KvDiscovery } from './kv-discovery.ts';
import { connectNats, type NatsOptions } from './nats/connection.ts';
import { NatsEventPlane } from './nats/event-plane.ts';
import { NatsRequestPlane } from './nats/request-plane.ts';
import { MalformedCounter } from './stats.ts';
import type { Runtime } from './types.ts';

export interface DistributedRuntimeOptions {
  readonly nats?: NatsOptions;
  readonly etcd?: EtcdStoreOptions;
  /** Lease TTL in seconds (default 10). */
  readonly leaseTtlSeconds?: number;
  /** Request-plane heartbeat period (default 1000 ms) and caller inactivity limit (default 3×). */
  readonly heartbeatMs?: number;
  readonly inactivityTimeoutMs?: number;
  /** Cap of the back-off between etcd retries (default 5000 ms). */
  readonly retryMaxMs?: number;
}

export class DistributedRuntime implements Runtime {
  readonly malformed = new MalformedCounter();
  readonly discovery: KvDiscovery;
  readonly requests: NatsRequestPlane;
  readonly events: NatsEventPlane;

  constructor(
    readonly nc: NatsConnection,
    readonly store: EtcdKvStore,
    options: DistributedRuntimeOptions = {},
  ) {
    this.requests = new NatsRequestPlane(nc, {
      heartbeatMs: options.heartbeatMs,
      inactivityTimeoutMs: options.inactivityTimeoutMs,
      malformed: this.malformed,
    });
    this.events = new NatsEventPlane(nc);
    this.discovery = new KvDiscovery(store, {
      leaseTtlSeconds: options.leaseTtlSeconds,
      defaultTransport: (endpoint, id) => this.requests.transportFor(endpoint, id),
      malformed: this.malformed,
      retryMaxMs: options.retryMaxMs,
    });
  }

  /** The process "dies": connections drop without goodbye, the lease is no longer kept alive. */
  async simulateCrash(): Promise<void> {
    this.requests.abandon();
    await this.discovery.abandonLease();
    await this.nc.close();
    this.store.client.close();
  }

  async close(): Promise<void> {
    await this.discovery.close();
    await this.requests.close();
    await this.events.close();
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
    await this.store.close();
  }
}

export async function connectDistributedRuntime(
  options: DistributedRuntimeOptions = {},
): Promise<DistributedRuntime> {
  const nc = await connectNats(options.nats);
  return new DistributedRuntime(nc, new EtcdKvStore(options.etcd), options);
}
