/**
 * The router's view of the cluster against real nats-server and etcd processes: worker processes
 * killed with SIGKILL, NATS restarts under traffic, late routers, replica sync, etcd down when a
 * worker starts, garbage on every plane, and migration when a worker dies mid-stream.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WorkerLostError } from '../../src/cluster/errors.ts';
import { ModelRouter, type RoutedChunk } from '../../src/cluster/model-router.ts';
import {
  GENERATE_ENDPOINT,
  generateRequestToWire,
  kvMetricsSubject,
  WORKER_BAD_REQUEST,
  workerErrorCode,
} from '../../src/protocol/wire.ts';
import { encodeJson } from '../../src/runtime/codec.ts';
import { modelCardKey } from '../../src/runtime/discovery-keys.ts';
import { connectDistributedRuntime, type DistributedRuntime } from '../../src/runtime/distributed.ts';
import { RemoteError } from '../../src/runtime/errors.ts';
import { kvEventsSubject } from '../../src/runtime/subjects.ts';
import { endpointId } from '../../src/runtime/types.ts';
import { MockEngineAdapter } from '../../src/worker/engine-adapter.ts';
import { Worker } from '../../src/worker/worker.ts';
import { KvgateProcess } from '../e2e/cli-process.ts';
import { modelRouterKit } from '../helpers/model-routers.ts';
import { preparedEtcd } from '../support/servers.ts';
import { type DistributedFixture, distributedFixture, uniqueNamespace, waitFor } from '../worker/fixtures.ts';
import {
  BLOCK_SIZE,
  canonical,
  drain,
  MODEL,
  prompt,
  req,
  startWorker,
  workersDump,
  zeroLoads,
} from './helpers.ts';

describe('the router’s view of a nats + etcd cluster', () => {
  let fixture: DistributedFixture;
  const processes: KvgateProcess[] = [];

  beforeAll(async () => {
    fixture = await distributedFixture();
  }, 60_000);
  afterEach(() => {
    for (const proc of processes.splice(0)) proc.kill('SIGKILL');
  });
  afterAll(async () => fixture?.teardown(), 30_000);

  const { router, worker, routers, workers } = modelRouterKit((options) => fixture.runtime(options), {
    waitForWorkersMs: 5_000,
    recoveryDelayMs: 50,
  });

  /** `kvgate worker` as a process on the fixture's NATS and etcd (4 ranks of 128 blocks). */
  const spawnWorker = (namespace: string, extra: string[]): KvgateProcess => {
    const proc = new KvgateProcess(
      [
        'worker',
        ...[
          '--model',
          MODEL,
          '--dp-size',
          '4',
          '--block-size',
          String(BLOCK_SIZE),
          '--num-gpu-blocks',
          '128',
        ],
        ...['--metrics-interval', '200', '--lease-ttl', '2'],
        ...['--nats', fixture.nats.url, '--etcd', fixture.etcd.endpoint, '--namespace', namespace],
        ...extra,
      ],
      { KVGATE_LOG_LEVEL: 'info' },
    );
    processes.push(proc);
    return proc;
  };

  it('a worker process killed with SIGKILL leaves the router within lease TTL + 2 s, with no block on any rank', async () => {
    const ns = uniqueNamespace();
    const r = await router(ns);
    const child = spawnWorker(ns, ['--speedup-ratio', '0']);
    await waitFor(
      () => r.instances().length === 1 || !child.running,
      20_000,
      'the worker process to register',
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${child.output()}`);
    });
    expect(child.running).toBe(true);
    const [{ workerId, card }] = r.instances();
    expect(card).toMatchObject({
      modelName: MODEL,
      dataParallelSize: 4,
      kvBlockSize: BLOCK_SIZE,
      totalKvBlocks: 128,
    });
    for (let i = 0; i < 8; i++) await drain(r.generate(req(prompt(i, 21), 2, { dpRank: i % 4 })));
    await waitFor(
      () => new Set(canonical(r.dump()).map((s) => s.split(':')[1])).size === 4,
      5_000,
      'blocks of the worker on all 4 ranks',
    );
    child.kill('SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => r.instances().length === 0, 6_000, 'the instance to go');
    const elapsed = Date.now() - killedAt;
    expect(elapsed).toBeLessThanOrEqual(4_000);
    expect(canonical(r.dump()).filter((s) => s.startsWith(`${workerId}:`))).toEqual([]);
    expect(r.loads()).toEqual([]);
  }, 40_000);

  it('SIGTERM: the worker process deregisters at once, finishes its in-flight request, and exits 0', async () => {
    const ns = uniqueNamespace();
    const r = await router(ns);
    const child = spawnWorker(ns, ['--speedup-ratio', '0.3', '--drain-timeout', '20']);
    await waitFor(() => r.instances().length === 1, 20_000, 'the worker process to register').catch(
      (error: Error) => {
        throw new Error(`${error.message}\n${child.output()}`);
      },
    );
    const chunks: RoutedChunk[] = [];
    const inFlight = (async () => {
      for await (const c of r.generate(req(prompt(8, 20), 40))) chunks.push(c);
    })();
    await waitFor(() => chunks.length > 0, 10_000, 'first chunk');
    child.kill('SIGTERM');
    await waitFor(() => r.instances().length === 0, 1_500, 'deregistration before the lease runs out');
    expect(chunks.at(-1)?.finishReason).toBeUndefined();
    await inFlight;
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(40);
    expect(r.stats().migrations).toBe(0);
    expect(await child.exit()).toEqual({ code: 0, signal: null });
    expect(child.stdout + child.stderr).toMatch(/worker: shutting down/);
  }, 40_000);

  it('NATS restarted twice while 100 requests flow: the router’s index ends equal to the workers’ dumps, and a late router agrees', async () => {
    const ns = uniqueNamespace();
    const ws = [
      await worker(ns, { dataParallelSize: 2, speedupRatio: 5 }),
      await worker(ns, { dataParallelSize: 2, speedupRatio: 5 }),
    ];
    const r = await router(ns, { migrationLimit: 6 });
    let done = 0;
    let failed = 0;
    let next = 0;
    const run = async () => {
      while (next < 100) {
        const i = next++;
        try {
          const chunks = await drain(r.generate(req(prompt(i % 9, 14 + (i % 11), i), 4)));
          expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(4);
          done++;
        } catch {
          failed++;
        }
      }
    };
    const traffic = Promise.all([run(), run(), run(), run()]);
    await waitFor(() => done + failed >= 25, 20_000, '25 requests');
    await fixture.nats.restart();
    await waitFor(() => done + failed >= 60, 30_000, '60 requests');
    await fixture.nats.restart();
    await traffic;
    expect(done + failed).toBe(100);
    expect(done).toBeGreaterThan(50);
    const truth = () => workersDump(ws).join('\n');
    await waitFor(() => canonical(r.dump()).join('\n') === truth(), 15_000, 'the router’s index to converge');
    expect(truth().length).toBeGreaterThan(0);
    expect(zeroLoads(r)).toBe(true);

    const late = await router(ns);
    await late.settled();
    await waitFor(
      () => canonical(late.dump()).join('\n') === canonical(r.dump()).join('\n'),
      5_000,
      'the late router',
    );
  }, 60_000);

  it('durable KV events: a router replays the stream from its consumer, also after a restart', async () => {
    const ns = uniqueNamespace();
    const w = await startWorker(await fixture.runtime(), ns, { dataParallelSize: 2 }, MODEL, {
      durableKvEvents: true,
    });
    workers.push(w);
    const routerId = 0xd0_7ab1en;
    const durable = { config: { durableKvEvents: true }, routerId };
    const first = await router(ns, durable);
    for (let i = 0; i < 10; i++) await drain(first.generate(req(prompt(i % 3, 18, i), 2)));
    await waitFor(
      () => canonical(first.dump()).join() === workersDump([w]).join(),
      5_000,
      'durable router index',
    );
    expect(first.stats().events.applied).toBeGreaterThan(0);
    await first.close();
    routers.splice(routers.indexOf(first), 1);
    // Traffic while that router is away, through another one.
    const other = await router(ns);
    for (let i = 10; i < 20; i++) await drain(other.generate(req(prompt(i % 5, 26, i), 2)));
    const again = await router(ns, durable);
    await again.settled();
    await waitFor(
      () => canonical(again.dump()).join() === workersDump([w]).join(),
      5_000,
      'restarted router index',
    );
    // No traffic since it started: every event it saw was replayed from its consumer's ack floor.
    const replayed = again.stats().events;
    expect(replayed.applied + replayed.duplicates).toBeGreaterThan(0);
    expect(w.stats().eventPublishErrors).toBe(0);
  }, 30_000);

  it('two routers with replica sync agree on every (worker, rank) load', async () => {
    const ns = uniqueNamespace();
    await worker(ns, { speedupRatio: 0.5 });
    await worker(ns, { speedupRatio: 0.5 });
    const [a, b] = [
      await router(ns, { config: { replicaSync: true } }),
      await router(ns, { config: { replicaSync: true } }),
    ];
    const iterators: AsyncIterator<RoutedChunk>[] = [];
    for (let i = 0; i < 12; i++)
      iterators.push((i % 2 === 0 ? a : b).generate(req(prompt(i % 4, 24 + i), 300))[Symbol.asyncIterator]());
    await Promise.all(iterators.map((it) => it.next()));
    const view = (router: ModelRouter) =>
      router
        .loads()
        .map(
          (l) =>
            `${l.workerId}:${l.dpRank}:${l.activeDecodeBlocks}:${l.activePrefillTokens}:${l.activeRequests}`,
        )
        .sort()
        .join('\n');
    await waitFor(() => view(a) === view(b), 5_000, 'replicas to agree');
    expect(a.loads().reduce((n, l) => n + l.activeRequests, 0)).toBe(12);
    expect(a.loads().reduce((n, l) => n + l.activeDecodeBlocks, 0)).toBeGreaterThan(0);
    await Promise.all(iterators.map((it) => it.return?.(undefined)));
    await waitFor(() => zeroLoads(a) && zeroLoads(b), 5_000, 'both replicas to free everything');
  }, 30_000);

  it('drops garbage on every plane with a log line and a count; nothing crashes', async () => {
    const ns = uniqueNamespace();
    const w = await worker(ns);
    const routerRuntime = await fixture.runtime();
    const r = await router(ns, { runtime: routerRuntime });
    const before = { ...routerRuntime.malformed.counts };
    const text = new TextEncoder();
    await fixture.rawPublish(
      kvEventsSubject(ns, 'backend'),
      text.encode('{"worker_id":1,"event":{"event_id":-1}}'),
    );
    await fixture.rawPublish(kvEventsSubject(ns, 'backend'), new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    await fixture.rawPublish(kvMetricsSubject(ns, 'backend'), text.encode('[1,2,3]'));
    await fixture.rawPut(
      modelCardKey(endpointId(ns, 'backend', GENERATE_ENDPOINT), 0xbadcafen),
      text.encode('{"role":7}'),
    );
    await waitFor(() => routerRuntime.malformed.counts.event - before.event >= 3, 5_000, 'event drops');
    await waitFor(() => routerRuntime.malformed.counts.discovery > before.discovery, 5_000, 'card drop');
    const client = await fixture.runtime();
    const bad = await drain(
      client.requests.call(w.generateEndpoint, w.instanceId, text.encode('{"nope":true}')),
    ).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(RemoteError);
    expect(workerErrorCode((bad as Error).message)).toBe(WORKER_BAD_REQUEST);
    expect(w.stats().badRequests).toBe(1);
    const chunks = await drain(r.generate(req(prompt(3, 13), 3)));
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(3);
    expect(r.instances().map((i) => i.workerId)).toEqual([w.instanceId]);
  }, 30_000);

  it('a worker killed mid-stream: the stream completes on another worker; with migration off, a clear error', async () => {
    const ns = uniqueNamespace();
    await worker(ns, { speedupRatio: 0.3 });
    const r = await router(ns);
    const r0 = await router(ns, { migrationLimit: 0 });
    for (const [target, limit] of [
      [r, 3],
      [r0, 0],
    ] as const) {
      const doomedRuntime = await fixture.runtime();
      const doomed = await startWorker(doomedRuntime, ns, { speedupRatio: 0.3 });
      await waitFor(
        () => target.instances().some((i) => i.workerId === doomed.instanceId),
        5_000,
        'doomed worker',
      );
      const chunks: RoutedChunk[] = [];
      const run = async () => {
        for await (const chunk of target.generate(req(prompt(5, 22), 25, { workerId: doomed.instanceId }))) {
          chunks.push(chunk);
          if (chunks.length === 2) await (doomedRuntime as DistributedRuntime).simulateCrash();
        }
      };
      const error = await run().catch((e: unknown) => e);
      doomed.engine.close();
      if (limit === 0) {
        expect(error).toBeInstanceOf(WorkerLostError);
        expect((error as Error).message).toMatch(/migration is off/);
      } else {
        expect(error).toBeUndefined();
        expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(25);
        expect(chunks[0].workerId).toBe(doomed.instanceId);
        expect(chunks.at(-1)?.workerId).not.toBe(doomed.instanceId);
        expect(chunks.at(-1)?.finishReason).toBe('length');
      }
      expect(zeroLoads(target)).toBe(true);
    }
  }, 40_000);

  it('etcd down when a worker starts: it retries, registers once etcd is up, and requests sent meanwhile wait', async () => {
    const etcd = await preparedEtcd();
    const options = {
      ...fixture.runtimeOptions(),
      etcd: { hosts: etcd.endpoint, dialTimeoutMs: 500 },
      retryMaxMs: 300,
    };
    const runtimes: DistributedRuntime[] = [];
    try {
      const ns = uniqueNamespace();
      const workerRuntime = await connectDistributedRuntime(options);
      runtimes.push(workerRuntime);
      const w = await Worker.start({
        runtime: workerRuntime,
        namespace: ns,
        modelName: MODEL,
        engine: MockEngineAdapter.factory({
          dataParallelSize: 2,
          blockSize: BLOCK_SIZE,
          numGpuBlocks: 64,
          speedupRatio: 0,
        }),
      });
      workers.push(w);
      const routerRuntime = await connectDistributedRuntime(options);
      runtimes.push(routerRuntime);
      const r = new ModelRouter({
        runtime: routerRuntime,
        namespace: ns,
        model: MODEL,
        config: { blockSize: BLOCK_SIZE },
        waitForWorkersMs: 20_000,
      });
      routers.push(r);
      let direct = 0;
      const straight = drain(
        workerRuntime.requests.call(
          w.generateEndpoint,
          w.instanceId,
          encodeJson(generateRequestToWire(req(prompt(9, 10), 2))),
        ),
      ).then((frames) => {
        direct = frames.length;
      });
      let settled = 0;
      const pending = [0, 1, 2].map((i) =>
        drain(r.generate(req(prompt(i, 10), 3))).finally(() => {
          settled++;
        }),
      );
      await new Promise((res) => setTimeout(res, 1_500));
      expect(settled).toBe(0);
      expect(direct).toBe(0); // parked behind the worker's readiness gate
      expect(w.isReady).toBe(false);
      await etcd.start();
      const results = await Promise.all(pending);
      for (const chunks of results) expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(3);
      await w.registered;
      expect(w.isReady).toBe(true);
      await straight;
      expect(direct).toBeGreaterThan(0);
    } finally {
      await Promise.all(routers.splice(0).map((r) => r.close()));
      await Promise.all(workers.splice(0).map((w) => w.shutdown({ drainTimeoutMs: 0 })));
      await Promise.all(runtimes.map((rt) => rt.close().catch(() => undefined)));
      await etcd.dispose();
    }
  }, 60_000);
});
