import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJson, encodeJson } from '../../src/runtime/codec.ts';
import { connectDistributedRuntime, type DistributedRuntime } from '../../src/runtime/distributed.ts';
import { isRuntimeError, RemoteError } from '../../src/runtime/errors.ts';
import { EtcdKvStore } from '../../src/runtime/etcd/kv-store.ts';
import { requestSubject } from '../../src/runtime/subjects.ts';
import { type DiscoveryEvent, endpointId, type Runtime } from '../../src/runtime/types.ts';
import {
  type EtcdServer,
  type NatsServer,
  preparedEtcd,
  startEtcd,
  startNatsServer,
} from '../support/servers.ts';
import { runPlaneConformance } from './planes.conformance.ts';

const HEARTBEAT_MS = 150;

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function runtimeFor(
  nats: NatsServer,
  etcd: EtcdServer,
  leaseTtlSeconds?: number,
): Promise<DistributedRuntime> {
  return connectDistributedRuntime({
    nats: { servers: nats.url, reconnectTimeWaitMs: 100 },
    etcd: { hosts: etcd.endpoint },
    leaseTtlSeconds,
    heartbeatMs: HEARTBEAT_MS,
  });
}

runPlaneConformance(
  'nats + etcd',
  async () => {
    const [nats, etcd] = await Promise.all([startNatsServer(), startEtcd()]);
    const raw: NatsConnection = await connect({ servers: nats.url });
    const rawEtcd = new EtcdKvStore({ hosts: etcd.endpoint });
    return {
      createRuntime: (options) => runtimeFor(nats, etcd, options?.leaseTtlSeconds),
      crash: (runtime: Runtime) => (runtime as DistributedRuntime).simulateCrash(),
      shortTtlSeconds: 2,
      crashDetectMs: 5_000,
      // Detection takes the inactivity limit (3 heartbeats) plus a tick; the rest is slack for a busy CI.
      streamLossDetectMs: 2_000,
      garbage: {
        discovery: (key, value) => rawEtcd.putRaw(key, value),
        request: async (endpoint, instanceId, bytes, reply) => {
          raw.publish(requestSubject(endpoint, instanceId), bytes, reply ? { reply } : undefined);
          await raw.flush();
        },
        event: async (subject, bytes) => {
          raw.publish(subject, bytes);
          await raw.flush();
        },
      },
      teardown: async () => {
        await raw.close();
        await rawEtcd.close();
        await Promise.all([nats.dispose(), etcd.dispose()]);
      },
    };
  },
  { requestWire: true },
);

describe('nats + etcd runtime: infrastructure failures', () => {
  let nats: NatsServer;
  let etcd: EtcdServer;
  const runtimes: DistributedRuntime[] = [];
  const open = async (ttl?: number) => {
    const rt = await runtimeFor(nats, etcd, ttl);
    runtimes.push(rt);
    return rt;
  };

  beforeAll(async () => {
    [nats, etcd] = await Promise.all([startNatsServer(), startEtcd()]);
  });
  afterAll(async () => {
    await Promise.allSettled(runtimes.map((r) => r.close()));
    await Promise.allSettled([nats?.dispose(), etcd?.dispose()]);
  });

  it('subscriptions and request serving come back after nats-server restarts', async () => {
    const server = await open();
    const client = await open();
    const ep = endpointId('restart', 'backend', 'generate');
    const id = await server.discovery.primaryInstanceId();
    await server.requests.serve(ep, id, async function* (payload) {
      const { n } = decodeJson(payload) as { n: number };
      for (let i = 0; i < n; i++) yield encodeJson({ i });
    });
    const got: number[] = [];
    client.events.subscribe('restart.load.*', (m) => got.push(m.payload[0]));
    await client.events.flush();
    const call = async (n: number) => {
      const out: unknown[] = [];
      for await (const c of client.requests.call(ep, id, encodeJson({ n }))) out.push(decodeJson(c));
      return out;
    };
    expect(await call(5)).toHaveLength(5);

    await nats.restart();
    await waitFor(
      () => !server.nc.isClosed() && !client.nc.isClosed() && server.nc.info !== undefined,
      10_000,
      'reconnect',
    );
    // Calls may fail while the clients reconnect; they must work again shortly after.
    let result: unknown[] | undefined;
    const deadline = Date.now() + 15_000;
    while (!result) {
      try {
        result = await call(64);
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(result).toEqual(Array.from({ length: 64 }, (_, i) => ({ i })));
    server.events.publish('restart.load.w1', new Uint8Array([42]));
    await waitFor(() => got.includes(42), 10_000, 'event after restart');
  });

  it('payloads over the server max_payload fail the call with a typed error, not a hang', async () => {
    const rt = await open();
    const ep = endpointId('big', 'backend', 'generate');
    await rt.requests.serve(ep, 1n, async function* () {
      yield new Uint8Array(10);
      yield new Uint8Array(2 * 1024 * 1024);
    });
    const got: Uint8Array[] = [];
    const error = await (async () => {
      for await (const c of rt.requests.call(ep, 1n, new Uint8Array(1))) got.push(c);
    })().catch((e: unknown) => e);
    expect(got).toHaveLength(1);
    expect(error).toBeInstanceOf(RemoteError);
    const tooBig = await (async () => {
      for await (const _ of rt.requests.call(ep, 1n, new Uint8Array(2 * 1024 * 1024)));
    })().catch((e: unknown) => e);
    expect(isRuntimeError(tooBig, 'RUNTIME_INVALID')).toBe(true);
  });

  it('a worker process killed mid-stream: the caller fails fast, discovery drops it after the TTL', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('../support/child-worker.ts', import.meta.url)),
        nats.url,
        etcd.endpoint,
        'sigkill',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const ready = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /ready ([0-9a-f]+)/.exec(out);
          if (m) resolve(m[1]);
        });
        child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
      });
      const id = BigInt(`0x${ready}`);
      const caller = await open();
      const events: DiscoveryEvent[] = [];
      await caller.discovery.watch({ namespace: 'sigkill' }, (e) => events.push(e));
      expect(events.map((e) => [e.type, e.instance.instanceId])).toEqual([['added', id]]);
      let received = 0;
      let killedAt = 0;
      const error = await (async () => {
        for await (const _ of caller.requests.call(
          endpointId('sigkill', 'backend', 'generate'),
          id,
          encodeJson({}),
        )) {
          if (++received === 3) {
            killedAt = Date.now();
            child.kill('SIGKILL');
          }
        }
      })().catch((e: unknown) => e);
      expect(isRuntimeError(error, 'RUNTIME_STREAM_LOST')).toBe(true);
      expect(Date.now() - killedAt).toBeLessThan(2_000);
      await waitFor(() => events.some((e) => e.type === 'removed'), 6_000, 'lease expiry');
      expect(events.at(-1)?.instance.instanceId).toBe(id);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a lease revoked behind its back is replaced and the instance registered again', async () => {
    const worker = await open(2);
    const watcher = await open();
    const ep = endpointId('relet', 'backend', 'generate');
    const reg = await worker.discovery.register({ endpoint: ep });
    const events: DiscoveryEvent[] = [];
    await watcher.discovery.watch({ namespace: 'relet' }, (e) => events.push(e));
    await watcher.store.client.leaseClient.leaseRevoke({ ID: reg.instance.instanceId.toString() });
    await waitFor(() => events.filter((e) => e.type === 'added').length >= 2, 10_000, 're-registration');
    expect(events.map((e) => e.type)).toEqual(['added', 'removed', 'added']);
    expect(events[2].instance.instanceId).toBe(reg.instance.instanceId);
    const listed = await watcher.discovery.list({ namespace: 'relet' });
    expect(listed.map((d) => d.instance.instanceId)).toEqual([reg.instance.instanceId]);
  });

  it('leases, watches and registration carry on across an etcd restart', async () => {
    const worker = await open();
    const watcher = await open();
    const ep = endpointId('etcd-restart', 'backend', 'generate');
    const before = await worker.discovery.register({ endpoint: ep });
    const events: DiscoveryEvent[] = [];
    await watcher.discovery.watch({ namespace: 'etcd-restart' }, (e) => events.push(e));
    await etcd.restart();
    const late = await (await open()).discovery.register({ endpoint: ep });
    await waitFor(() => events.length >= 2, 15_000, 'the watch to resume');
    expect(events.map((e) => [e.type, e.instance.instanceId])).toEqual([
      ['added', before.instance.instanceId],
      ['added', late.instance.instanceId],
    ]);
    const listed = await watcher.discovery.list({ namespace: 'etcd-restart' });
    expect(listed.map((d) => d.instance.instanceId).sort()).toEqual(
      [before.instance.instanceId, late.instance.instanceId].sort(),
    );
  });

  it('registration waits and retries while etcd is down, then succeeds', async () => {
    const late = await preparedEtcd();
    try {
      const rt = await connectDistributedRuntime({
        nats: { servers: nats.url },
        etcd: { hosts: late.endpoint, dialTimeoutMs: 500 },
        heartbeatMs: HEARTBEAT_MS,
        retryMaxMs: 300,
      });
      runtimes.push(rt);
      const ep = endpointId('late', 'backend', 'generate');
      let registered = false;
      const pending = rt.discovery.register({ endpoint: ep }).then((r) => {
        registered = true;
        return r;
      });
      await new Promise((r) => setTimeout(r, 800));
      expect(registered).toBe(false);
      await late.start();
      const reg = await pending;
      const listed = await rt.discovery.list({ namespace: 'late' });
      expect(listed.map((d) => d.instance.instanceId)).toEqual([reg.instance.instanceId]);
      await rt.close();
    } finally {
      await late.dispose();
    }
  });
});
