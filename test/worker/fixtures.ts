/**
 * Runtimes for worker and cluster tests: the in-process cluster, and nats-server + etcd from the
 * test harness (one pair per suite, a unique namespace per test).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { connectDistributedRuntime, type DistributedRuntime } from '../../src/runtime/distributed.ts';
import { EtcdKvStore } from '../../src/runtime/etcd/kv-store.ts';
import { LocalCluster, type LocalRuntime } from '../../src/runtime/local/cluster.ts';
import type { Runtime } from '../../src/runtime/types.ts';
import { type EtcdServer, type NatsServer, startEtcd, startNatsServer } from '../support/servers.ts';

export const HEARTBEAT_MS = 150;

export interface RuntimeFixture {
  readonly name: string;
  runtime(options?: { leaseTtlSeconds?: number }): Promise<Runtime>;
  /** The process dies without goodbye. */
  crash(runtime: Runtime): Promise<void>;
  /** Raw event-plane publish that bypasses every encoder. */
  rawPublish(subject: string, bytes: Uint8Array): Promise<void>;
  /** Raw discovery write (a bad card). */
  rawPut(key: string, value: Uint8Array): Promise<void>;
  teardown(): Promise<void>;
}

export function localFixture(): RuntimeFixture {
  const cluster = new LocalCluster();
  const runtimes: LocalRuntime[] = [];
  const publisher = cluster.runtime();
  return {
    name: 'local',
    runtime: async (options) => {
      const rt = cluster.runtime(options);
      runtimes.push(rt);
      return rt;
    },
    crash: (rt) => (rt as LocalRuntime).simulateCrash(),
    rawPublish: async (subject, bytes) => publisher.events.publish(subject, bytes),
    rawPut: async (key, value) => cluster.store.putUnleased([{ key, value }]),
    teardown: async () => {
      await Promise.all([...runtimes, publisher].map((rt) => rt.close().catch(() => undefined)));
    },
  };
}

export interface DistributedFixture extends RuntimeFixture {
  readonly nats: NatsServer;
  readonly etcd: EtcdServer;
  runtimeOptions(leaseTtlSeconds?: number): Parameters<typeof connectDistributedRuntime>[0];
}

export async function distributedFixture(): Promise<DistributedFixture> {
  const [nats, etcd] = await Promise.all([startNatsServer(), startEtcd()]);
  const rawEtcd = new EtcdKvStore({ hosts: etcd.endpoint });
  const runtimes: DistributedRuntime[] = [];
  const runtimeOptions = (leaseTtlSeconds?: number) => ({
    nats: { servers: nats.url, reconnectTimeWaitMs: 100 },
    etcd: { hosts: etcd.endpoint },
    leaseTtlSeconds,
    heartbeatMs: HEARTBEAT_MS,
  });
  return {
    name: 'nats + etcd',
    nats,
    etcd,
    runtimeOptions,
    runtime: async (options) => {
      const rt = await connectDistributedRuntime(runtimeOptions(options?.leaseTtlSeconds));
      runtimes.push(rt);
      return rt;
    },
    crash: (rt) => (rt as DistributedRuntime).simulateCrash(),
    rawPublish: async (subject, bytes) => {
      // A fresh connection each time: tests restart nats-server, and this one bypasses the planes.
      const raw: NatsConnection = await connect({ servers: nats.url });
      raw.publish(subject, bytes);
      await raw.flush();
      await raw.close();
    },
    rawPut: (key, value) => rawEtcd.putRaw(key, value),
    teardown: async () => {
      await Promise.all(runtimes.map((rt) => rt.close().catch(() => undefined)));
      await rawEtcd.close().catch(() => undefined);
      await Promise.all([nats.dispose(), etcd.dispose()]);
    },
  };
}

let nsCounter = 0;
export function uniqueNamespace(): string {
  return `w${process.pid.toString(36)}${Date.now().toString(36)}${(nsCounter++).toString(36)}`;
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Tokens [start, start + length). */
export function range(start: number, length: number): number[] {
  return Array.from({ length }, (_, i) => start + i);
}
