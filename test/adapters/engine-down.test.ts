/**
 * The engine behind a supervised worker goes away and comes back (same port): the worker
 * deregisters within its health checks, requests fail fast instead of hanging (in flight, and new
 * ones while no worker serves), and the worker re-registers once the engine answers again.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ModelRouter } from '../../src/cluster/model-router.ts';
import { remoteEngineConnector } from '../../src/engine/adapters/connect.ts';
import { httpHealthCheck, SupervisedWorker } from '../../src/engine/adapters/supervised-worker.ts';
import { type FakeEngineOptions, FakeEngineServer } from '../../src/engine/fakes/fake-engine-server.ts';
import { LocalCluster } from '../../src/runtime/local/cluster.ts';
import { collect, freePorts, waitUntil } from './helpers.ts';

const HEALTH_MS = 200;
const FAILURES = 2;

describe('engine down and back', () => {
  const cluster = new LocalCluster();
  let fake: FakeEngineServer | undefined;
  let supervisor: SupervisedWorker | undefined;
  let router: ModelRouter | undefined;

  afterAll(async () => {
    await router?.close();
    await supervisor?.stop(0);
    await fake?.close();
  });

  it('deregisters while the engine is down, fails requests fast, re-registers when it returns', async () => {
    const port = await freePorts(3);
    const options: FakeEngineOptions = {
      api: 'sglang',
      port,
      zmqPort: port + 1,
      dataParallelSize: 2,
      engine: { blockSize: 4, numGpuBlocks: 4096, speedupRatio: 1 },
    };
    fake = await FakeEngineServer.start(options);
    supervisor = SupervisedWorker.start({
      runtime: cluster.runtime(),
      modelName: 'fake-model',
      connect: remoteEngineConnector({ engine: 'sglang', url: fake.url }),
      healthy: httpHealthCheck(fake.url),
      healthIntervalMs: HEALTH_MS,
      failuresBeforeDown: FAILURES,
    });
    await supervisor.waitFor('up', 10_000);
    router = await ModelRouter.create({
      runtime: cluster.runtime(),
      model: 'fake-model',
      config: { blockSize: 4 },
      waitForWorkersMs: 800,
      migrationLimit: 0,
    });
    await waitUntil(() => router!.instances().length === 1, 5000, 'registration');
    const r = router;
    const request = (id: string, maxTokens: number) =>
      r.generate({
        requestId: id,
        tokenIds: [1, 2, 3, 4, 5, 6, 7, 8, 9],
        sampling: { maxTokens, ignoreEos: true },
      });
    expect((await collect(request('before', 3))).at(-1)?.finishReason).toBe('length');

    // A long request in flight when the engine dies ends with an error, not a hang.
    const slow = request('in-flight', 3000);
    const first = await slow.next();
    expect(first.done).toBe(false);
    const slowRest = (async () => {
      for await (const _ of { [Symbol.asyncIterator]: () => slow }) {
        // drain
      }
    })();
    const downAt = Date.now();
    await fake.close();
    await expect(slowRest).rejects.toThrow();
    expect(Date.now() - downAt).toBeLessThan(2000);

    await supervisor.waitFor('down', 3000);
    const detected = Date.now() - downAt;
    expect(detected).toBeLessThan(HEALTH_MS * (FAILURES + 1) + 500);
    await waitUntil(() => r.instances().length === 0, 3000, 'deregistration');
    expect(supervisor.worker).toBeNull();

    // No worker: a new request fails after the router's wait, it does not hang.
    const waitedFrom = Date.now();
    await expect(collect(request('while-down', 3))).rejects.toThrow(/no .*worker/i);
    expect(Date.now() - waitedFrom).toBeLessThan(3000);

    fake = await FakeEngineServer.start(options);
    await supervisor.waitFor('up', 5000);
    await waitUntil(() => r.instances().length === 1, 5000, 're-registration');
    expect(r.instances()[0].workerId).toBe(supervisor.instanceId);
    expect((await collect(request('after', 3))).at(-1)?.finishReason).toBe('length');
    expect(fake.requests.map((q) => q.rid)).toEqual(['after']);
    expect(supervisor.changes).toBe(2);
  });
});
