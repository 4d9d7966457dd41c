import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerRequestError } from '../../src/cluster/errors.ts';
import { ModelRouter } from '../../src/cluster/model-router.ts';
import type { BootstrapInfo } from '../../src/protocol/generate.ts';
import type { Runtime } from '../../src/runtime/types.ts';
import type { MockEngineAdapter } from '../../src/worker/engine-adapter.ts';
import type { Worker } from '../../src/worker/worker.ts';
import { BLOCK_SIZE, drain, MODEL, prompt, req, startWorker } from '../cluster/helpers.ts';
import { distributedFixture, localFixture, type RuntimeFixture, uniqueNamespace } from './fixtures.ts';

function transferSuite(name: string, makeFixture: () => Promise<RuntimeFixture>): void {
  describe(`KV transfer between a prefill and a decode worker over the ${name} runtime`, () => {
    let fixture: RuntimeFixture;
    let prefill: Worker;
    let decode: Worker;
    let prefillRouter: ModelRouter;
    let decodeRouter: ModelRouter;

    beforeAll(async () => {
      fixture = await makeFixture();
      const ns = uniqueNamespace();
      const runtime = async (): Promise<Runtime> => fixture.runtime();
      prefill = await startWorker(await runtime(), ns, { mode: 'prefill', dataParallelSize: 2 });
      decode = await startWorker(await runtime(), ns, { mode: 'decode', dataParallelSize: 2 });
      const routerRuntime = await runtime();
      const common = {
        runtime: routerRuntime,
        namespace: ns,
        model: MODEL,
        config: { blockSize: BLOCK_SIZE },
      };
      prefillRouter = await ModelRouter.create({ ...common, component: 'prefill' });
      decodeRouter = await ModelRouter.create(common);
    }, 60_000);
    afterAll(async () => {
      await prefillRouter?.close();
      await decodeRouter?.close();
      await prefill?.shutdown({ drainTimeoutMs: 0 });
      await decode?.shutdown({ drainTimeoutMs: 0 });
      await fixture?.teardown();
    }, 30_000);

    const prefillOn = async (tokens: number[], dpRank: number): Promise<BootstrapInfo> => {
      const chunks = await drain(prefillRouter.generate(req(tokens, 1, { dpRank })));
      const bootstrap = chunks.find((c) => c.bootstrap !== undefined)?.bootstrap;
      expect(bootstrap).toMatchObject({ prefillWorkerId: prefill.instanceId, prefillDpRank: dpRank });
      return bootstrap!;
    };

    it('the decode worker pulls the room from exactly the prefill worker and rank, rank 0 included', async () => {
      for (const [prefillRank, decodeRank] of [
        [1, 0],
        [0, 1],
      ]) {
        const tokens = prompt(prefillRank + 10, 23);
        const bootstrap = await prefillOn(tokens, prefillRank);
        const request = { ...req(tokens, 6, { dpRank: decodeRank }), bootstrap };
        const chunks = await drain(decodeRouter.generate(request));
        expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(6);
        expect(chunks[0]).toMatchObject({ workerId: decode.instanceId, dpRank: decodeRank });
        const placement = (decode.engine as MockEngineAdapter).engine.placement(request.requestId);
        expect(placement).toMatchObject({
          dpRank: decodeRank,
          prefillWorkerId: prefill.instanceId,
          prefillDpRank: prefillRank,
        });
      }
      expect((prefill.engine as MockEngineAdapter).engine.openRooms).toBe(0);
    });

    it('a room asked for on the wrong rank fails loudly with the engine’s code', async () => {
      const tokens = prompt(30, 19);
      const bootstrap = await prefillOn(tokens, 0);
      const error = await drain(
        decodeRouter.generate({ ...req(tokens, 4), bootstrap: { ...bootstrap, prefillDpRank: 1 } }),
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkerRequestError);
      expect((error as WorkerRequestError).workerCode).toBe('ENGINE_BOOTSTRAP_WRONG_RANK');
      const unknown = await drain(
        decodeRouter.generate({ ...req(tokens, 4), bootstrap: { ...bootstrap, prefillWorkerId: 0x1234n } }),
      ).catch((e: unknown) => e);
      expect((unknown as WorkerRequestError).workerCode).toBe('ENGINE_BOOTSTRAP_UNKNOWN_WORKER');
      // The room is still there for the right rank.
      const chunks = await drain(decodeRouter.generate({ ...req(tokens, 4), bootstrap }));
      expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(4);
    });
  });
}

transferSuite('local', async () => localFixture());
transferSuite('nats + etcd', distributedFixture);
