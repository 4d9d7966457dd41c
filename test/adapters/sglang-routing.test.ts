/**
 * A worker in front of the SGLang-API fake (dp 4, real HTTP, real ZMQ on loopback), routed by an
 * in-process ModelRouter on the local runtime: every request reaches the rank the router chose
 * (rank 0 included, sent as 0), and the KV events make the router's index equal the fake's
 * per-rank caches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelRouter, type RoutedChunk } from '../../src/cluster/model-router.ts';
import { remoteEngineConnector } from '../../src/engine/adapters/connect.ts';
import type { RemoteEngineAdapter } from '../../src/engine/adapters/remote-engine.ts';
import { httpHealthCheck, SupervisedWorker } from '../../src/engine/adapters/supervised-worker.ts';
import { FakeEngineServer } from '../../src/engine/fakes/fake-engine-server.ts';
import { LocalCluster } from '../../src/runtime/local/cluster.ts';
import { blockSet, collect, freePorts, prompts, waitUntil } from './helpers.ts';

const BLOCK = 16;
const DP = 4;

describe('SGLang adapter: routed ranks and KV events (dp 4)', () => {
  const cluster = new LocalCluster();
  let fake: FakeEngineServer;
  let supervisor: SupervisedWorker;
  let router: ModelRouter;

  beforeAll(async () => {
    const zmq = await freePorts(DP * 2);
    fake = await FakeEngineServer.start({
      api: 'sglang',
      zmqPort: zmq,
      replayPort: zmq + DP,
      dataParallelSize: DP,
      engine: { blockSize: BLOCK, numGpuBlocks: 512, speedupRatio: 0, seed: 3 },
    });
    supervisor = SupervisedWorker.start({
      runtime: cluster.runtime(),
      modelName: 'fake-model',
      connect: remoteEngineConnector({ engine: 'sglang', url: fake.url }),
      healthy: httpHealthCheck(fake.url),
      healthIntervalMs: 200,
      metricsIntervalMs: 100,
    });
    await supervisor.waitFor('up', 10_000);
    await supervisor.worker!.registered;
    router = await ModelRouter.create({
      runtime: cluster.runtime(),
      model: 'fake-model',
      config: { blockSize: BLOCK },
      waitForWorkersMs: 5000,
    });
    await waitUntil(() => router.instances().length === 1, 5000, 'router to see the worker');
  });

  afterAll(async () => {
    await router?.close();
    await supervisor?.stop(0);
    await fake?.close();
  });

  it('takes the model card from the server info', () => {
    const card = supervisor.worker!.card;
    expect(card).toMatchObject({
      role: 'aggregated',
      dataParallelSize: DP,
      kvBlockSize: BLOCK,
      totalKvBlocks: 512, // ceil(max_total_num_tokens / page_size)
    });
  });

  it('100 requests run on exactly the rank the router chose, rank 0 included', async () => {
    const chosen = new Map<string, number>();
    const all = prompts(100, BLOCK, 7);
    const results = await Promise.all(
      all.map(async (tokens, i) => {
        const requestId = `req-${i}`;
        const chunks: RoutedChunk[] = await collect(
          router.generate({
            requestId,
            tokenIds: tokens,
            sampling: { maxTokens: 4 + (i % 5), ignoreEos: true },
          }),
        );
        chosen.set(requestId, chunks[0].dpRank);
        return chunks;
      }),
    );
    for (const [i, chunks] of results.entries()) {
      expect(chunks.at(-1)?.finishReason).toBe('length');
      expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(4 + (i % 5));
    }
    const seen = new Map(fake.requests.map((r) => [r.rid, r]));
    expect(seen.size).toBe(100);
    for (const [requestId, rank] of chosen) {
      const record = seen.get(requestId)!;
      expect(record.dataParallelRank, requestId).toBe(rank);
      expect(record.routedDpRank, requestId).toBe(rank);
      expect(record.rank, requestId).toBe(rank);
    }
    expect(new Set(chosen.values()).has(0)).toBe(true);
    expect(new Set(chosen.values()).size).toBeGreaterThan(1);
  });

  it("KV events over ZMQ make the router's index equal the fake's per-rank caches", async () => {
    const adapter = supervisor.worker!.engine as RemoteEngineAdapter;
    const truth = () =>
      Array.from({ length: DP }, (_, r) => blockSet(fake.engine.localIndexer(r).dump(), r))
        .flat()
        .sort();
    await waitUntil(
      async () => {
        await adapter.kvEventsIdle();
        await router.settled();
        return JSON.stringify(blockSet(router.dump())) === JSON.stringify(truth());
      },
      5000,
      'router index to match the engine',
    ).catch((error: Error) => {
      const a = blockSet(router.dump());
      const t = truth();
      throw new Error(
        `${error.message}: router ${a.length} blocks, engine ${t.length}, adapter stats ${JSON.stringify(adapter.kvEventStats())}, router ingest ${JSON.stringify(router.stats().events, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}; only in router: ${a.filter((x) => !t.includes(x)).slice(0, 3)}; only in engine: ${t.filter((x) => !a.includes(x)).slice(0, 3)}`,
      );
    });
    expect(blockSet(router.dump())).toEqual(truth());
    expect(truth().length).toBeGreaterThan(50);
    for (let r = 0; r < DP; r++)
      expect(blockSet(adapter.dump(r).events, r)).toEqual(blockSet(fake.engine.localIndexer(r).dump(), r));
    const stats = adapter.kvEventStats()!;
    expect(stats.malformedFrames + stats.malformedPayloads + stats.resets).toBe(0);
  });

  it('malformed ZMQ frames and payloads are counted and dropped; the worker keeps serving', async () => {
    const adapter = supervisor.worker!.engine as RemoteEngineAdapter;
    const before = adapter.kvEventStats()!;
    const pub = fake.publisher!;
    await pub.sendRaw(2, ['', 'not a sequence']);
    await pub.publishPayload(2, Uint8Array.from([0x93, 0xc1, 0xc1, 0xc1]));
    const chunks = await collect(
      router.generate({
        requestId: 'after-garbage',
        tokenIds: prompts(1, BLOCK, 99)[0],
        sampling: { maxTokens: 3, ignoreEos: true },
      }),
    );
    expect(chunks.at(-1)?.finishReason).toBe('length');
    await waitUntil(async () => {
      await adapter.kvEventsIdle();
      const s = adapter.kvEventStats()!;
      return s.malformedFrames > before.malformedFrames && s.malformedPayloads > before.malformedPayloads;
    });
    const after = adapter.kvEventStats()!;
    expect(after.malformedFrames - before.malformedFrames).toBe(1);
    expect(after.malformedPayloads - before.malformedPayloads).toBe(1);
    expect(after.resets).toBe(0);
    expect(supervisor.state).toBe('up');
    expect(supervisor.worker!.isReady).toBe(true);
    expect(router.instances()).toHaveLength(1);
  });
});
