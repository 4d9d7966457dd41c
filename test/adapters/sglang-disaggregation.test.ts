/**
 * P/D with the SGLang-API fake in prefill and decode modes, each behind a supervised worker, routed
 * by the DisaggregatedModelRouter on the local runtime: the bootstrap room and the prefill rank the
 * prefill router chose reach both servers, and the decode server pulls the room from that rank.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DisaggChunk,
  DisaggregatedModelRouter,
} from '../../src/cluster/disagg/disaggregated-model-router.ts';
import { ModelRouter } from '../../src/cluster/model-router.ts';
import { remoteEngineConnector } from '../../src/engine/adapters/connect.ts';
import { httpHealthCheck, SupervisedWorker } from '../../src/engine/adapters/supervised-worker.ts';
import { FakeEngineServer } from '../../src/engine/fakes/fake-engine-server.ts';
import { LocalCluster } from '../../src/runtime/local/cluster.ts';
import { collect, freePorts, prompts, waitUntil } from './helpers.ts';

const BLOCK = 4;
const DP = 3;

describe('SGLang adapter: prefill/decode disaggregation', () => {
  const cluster = new LocalCluster();
  let prefill: FakeEngineServer;
  let decode: FakeEngineServer;
  const supervisors: SupervisedWorker[] = [];
  let prefillRouter: ModelRouter;
  let decodeRouter: ModelRouter;
  let router: DisaggregatedModelRouter;

  beforeAll(async () => {
    const zmq = await freePorts(DP);
    const engine = { blockSize: BLOCK, numGpuBlocks: 256, speedupRatio: 0 };
    prefill = await FakeEngineServer.start({
      api: 'sglang',
      dataParallelSize: DP,
      disaggregationMode: 'prefill',
      bootstrapPort: 0,
      zmqPort: zmq,
      engine,
    });
    decode = await FakeEngineServer.start({
      api: 'sglang',
      dataParallelSize: DP,
      disaggregationMode: 'decode',
      engine,
    });
    for (const fake of [prefill, decode]) {
      const supervisor = SupervisedWorker.start({
        runtime: cluster.runtime(),
        modelName: 'fake-model',
        connect: remoteEngineConnector({ engine: 'sglang', url: fake.url }),
        healthy: httpHealthCheck(fake.url),
        healthIntervalMs: 200,
      });
      supervisors.push(supervisor);
      await supervisor.waitFor('up', 10_000);
      await supervisor.worker!.registered;
    }
    const common = {
      runtime: cluster.runtime(),
      model: 'fake-model',
      config: { blockSize: BLOCK },
      waitForWorkersMs: 5000,
    };
    prefillRouter = await ModelRouter.create({ ...common, component: 'prefill' });
    decodeRouter = await ModelRouter.create(common);
    await waitUntil(() => prefillRouter.instances().length === 1 && decodeRouter.instances().length === 1);
    router = new DisaggregatedModelRouter({
      runtime: cluster.runtime(),
      decode: decodeRouter,
      prefill: prefillRouter,
      enforceDisagg: true,
    });
  });

  afterAll(async () => {
    await prefillRouter?.close();
    await decodeRouter?.close();
    for (const s of supervisors) await s.stop(0);
    await prefill?.close();
    await decode?.close();
  });

  it('registers a prefill worker with the bootstrap endpoint and a decode worker', () => {
    const [p, d] = supervisors.map((s) => s.worker!);
    expect(p.component).toBe('prefill');
    expect(p.card).toMatchObject({
      role: 'prefill',
      dataParallelSize: DP,
      bootstrap: { host: '127.0.0.1', port: prefill.bootstrapPort },
    });
    expect(d.component).toBe('backend');
    expect(d.card.role).toBe('decode');
  });

  it('room and prefill rank reach both sides; the decode pulls from the rank the prefill router chose', async () => {
    const all = prompts(24, BLOCK, 11);
    const outcomes = await Promise.all(
      all.map(async (tokens, i) => {
        const chunks: DisaggChunk[] = await collect(
          router.generate({
            requestId: `pd-${i}`,
            tokenIds: tokens,
            sampling: { maxTokens: 5, ignoreEos: true },
          }),
        );
        return { chunks, tokens };
      }),
    );
    const prefillRanks = new Set<number>();
    for (const { chunks } of outcomes) {
      const last = chunks.at(-1)!;
      expect(last.finishReason).toBe('length');
      expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(5);
      expect(last.disaggregated).toBe(true);
      prefillRanks.add(last.prefillDpRank!);
    }
    expect(prefill.requests).toHaveLength(24);
    expect(decode.requests).toHaveLength(24);
    const decodeByRoom = new Map(decode.requests.map((r) => [r.bootstrapRoom, r]));
    for (const p of prefill.requests) {
      // The prefill server got the routed rank and a room on that rank.
      expect(p.dataParallelRank).toBe(p.rank);
      expect(p.routedDpRank).toBe(p.rank);
      expect(p.bootstrapRoom! % DP).toBe(p.rank);
      expect(p.bootstrapPort).toBe(prefill.bootstrapPort);
      const d = decodeByRoom.get(p.bootstrapRoom)!;
      expect(d, `decode for room ${p.bootstrapRoom}`).toBeDefined();
      expect(d.bootstrapHost).toBe('127.0.0.1');
      expect(d.bootstrapPort).toBe(prefill.bootstrapPort);
      expect(d.prefillDpRank).toBe(p.rank);
      expect(d.dataParallelRank).toBe(d.rank);
      expect(prefill.claims).toContainEqual({ room: p.bootstrapRoom, dpRank: p.rank, ok: true });
    }
    // What the router reported as the prefill rank is what the prefill server ran on.
    const reported = outcomes.map(({ chunks }) => chunks.at(-1)!.prefillDpRank).sort();
    expect(reported).toEqual(prefill.requests.map((r) => r.rank).sort());
    expect(prefillRanks.size).toBeGreaterThan(1);
  });
});
