import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DisaggregatedModelRouter } from '../../src/cluster/disagg/disaggregated-model-router.ts';
import { DEFAULT_NAMESPACE, PREFILL_COMPONENT } from '../../src/protocol/wire.ts';
import { RemoteRouterClient } from '../../src/router-service/client.ts';
import {
  BEST_WORKER_ENDPOINT,
  bestWorkerAnswerFromWire,
  ROUTER_COMPONENT,
  routerGenerateRequestFromWire,
} from '../../src/router-service/protocol.ts';
import { RouterService } from '../../src/router-service/router-service.ts';
import { encodeJson } from '../../src/runtime/codec.ts';
import { endpointId, type Runtime } from '../../src/runtime/types.ts';
import { BLOCK_SIZE, collect, type Layout, prompt, request, startLayout, tokensOf } from './helpers.ts';

describe('router service wire shapes', () => {
  it('a legacy two-field answer decodes without a rank; rank 0 stays 0', () => {
    const legacy = bestWorkerAnswerFromWire({ worker_id: 7n, overlap_blocks: 2 });
    expect(legacy).toEqual({ ok: true, value: { workerId: 7n, overlapBlocks: 2 } });
    const zero = bestWorkerAnswerFromWire({ worker_id: 7, dp_rank: 0, overlap_blocks: 0 });
    expect(zero.ok && zero.value.dpRank).toBe(0);
    expect(bestWorkerAnswerFromWire({ worker_id: -1, overlap_blocks: 0 }).ok).toBe(false);
  });

  it('routing generate takes routing.dp_rank, else a top-level dp_rank', () => {
    const base = { request_id: 'r', token_ids: [1, 2], sampling: { max_tokens: 2 } };
    const top = routerGenerateRequestFromWire({ ...base, dp_rank: 0 });
    expect(top.ok && top.value.routing).toEqual({ dpRank: 0 });
    const both = routerGenerateRequestFromWire({
      ...base,
      dp_rank: 1,
      routing: { dp_rank: 3, worker_id: 5 },
    });
    expect(both.ok && both.value.routing).toEqual({ dpRank: 3, workerId: 5n });
    expect(routerGenerateRequestFromWire({ ...base, routing: { dp_rank: -1 } }).ok).toBe(false);
  });
});

describe('standalone router and legacy answers', () => {
  let layout: Layout;
  let runtime: Runtime;
  let legacyTarget: bigint;

  beforeAll(async () => {
    // The disaggregated router asks a "router service" that answers in the legacy two-field shape.
    layout = await startLayout({ prefillWorkers: 1, decodeWorkers: 1 }, { prefillSelector: undefined });
    runtime = layout.workers.cluster.runtime();
  });

  afterAll(async () => {
    await layout?.close();
    await runtime?.close();
  });

  it('a legacy answer uses the request-level data_parallel_rank (0 and 2), else the engine chooses', async () => {
    const legacyRuntime = layout.workers.cluster.runtime();
    const ns = 'legacyns';
    legacyTarget = layout.workers.prefill[0].instanceId;
    const ep = endpointId(ns, ROUTER_COMPONENT, BEST_WORKER_ENDPOINT);
    const id = await legacyRuntime.discovery.primaryInstanceId();
    await legacyRuntime.requests.serve(ep, id, async function* () {
      yield encodeJson({ worker_id: legacyTarget, overlap_blocks: 0 });
    });
    await legacyRuntime.discovery.register({ endpoint: ep, instanceId: id });
    const client = new RemoteRouterClient({ runtime, namespace: ns });
    const router = new DisaggregatedModelRouter({
      runtime,
      decode: layout.handle.router.decode,
      prefill: () => layout.handle.router.prefill,
      prefillSelector: client,
    });
    try {
      for (const [i, rank] of [
        [0, 2],
        [1, 0],
        [2, undefined],
      ] as const) {
        const id = `legacy-${i}`;
        const chunks = await collect(
          router.generate(request(id, prompt(300 + i, 50), rank === undefined ? {} : { dpRank: rank })),
        );
        expect(tokensOf(chunks)).toHaveLength(3);
        const first = chunks[0];
        expect(first.prefillWorkerId).toBe(legacyTarget);
        const ran = layout.placement(legacyTarget, id)!.dpRank;
        if (rank !== undefined) expect(ran).toBe(rank);
        expect(first.prefillDpRank).toBe(ran);
        expect(layout.placement(first.workerId, id)!.prefillDpRank).toBe(ran);
      }
    } finally {
      await client.close();
      await legacyRuntime.close();
    }
  });

  it('serves best_worker_id (worker, integer rank, overlap) and a routing generate', async () => {
    const service = await RouterService.start({
      runtime: layout.workers.cluster.runtime(),
      endpoint: endpointId(DEFAULT_NAMESPACE, PREFILL_COMPONENT, 'generate'),
      config: { blockSize: BLOCK_SIZE, trackActiveBlocks: false },
    });
    const client = new RemoteRouterClient({ runtime });
    try {
      for (let i = 0; i < 20; i++) {
        const answer = await client.bestWorker(prompt(700 + i, 40 + i));
        expect(answer.workerId).toBe(layout.workers.prefill[0].instanceId);
        expect(Number.isInteger(answer.dpRank)).toBe(true);
        expect(answer.dpRank).toBeGreaterThanOrEqual(0);
        expect(answer.dpRank).toBeLessThan(4);
      }
      const pinned = await client.bestWorker(prompt(800, 40), { dpRank: 0 });
      expect(pinned.dpRank).toBe(0);
      // A routing generate on a prefill pool: one token, from the rank asked for.
      const chunks = [];
      for await (const chunk of client.generate({
        requestId: 'svc-gen',
        tokenIds: prompt(801, 40),
        sampling: { maxTokens: 1 },
        routing: { dpRank: 3 },
      }))
        chunks.push(chunk);
      expect(chunks.every((c) => c.dpRank === 3 && c.workerId === layout.workers.prefill[0].instanceId)).toBe(
        true,
      );
      expect(layout.placement(layout.workers.prefill[0].instanceId, 'svc-gen')!.dpRank).toBe(3);
      await expect(client.bestWorker(prompt(802, 40), { dpRank: 9 })).rejects.toThrow(
        /ROUTER_RANK_OUT_OF_RANGE/,
      );
    } finally {
      await client.close();
      await service.close();
    }
  });

  it('a client moves on to another router replica when one stops', async () => {
    const runtimes = [layout.workers.cluster.runtime(), layout.workers.cluster.runtime()];
    const start = (rt: Runtime) =>
      RouterService.start({
        runtime: rt,
        endpoint: endpointId(DEFAULT_NAMESPACE, PREFILL_COMPONENT, 'generate'),
        config: { blockSize: BLOCK_SIZE, trackActiveBlocks: false },
      });
    const [first, second] = await Promise.all(runtimes.map(start));
    const client = new RemoteRouterClient({ runtime });
    try {
      for (let i = 0; i < 4; i++) await client.bestWorker(prompt(900 + i, 40));
      expect(first.stats().queries + second.stats().queries).toBe(4);
      expect(first.stats().queries).toBeGreaterThan(0);
      expect(second.stats().queries).toBeGreaterThan(0);
      await first.close();
      for (let i = 0; i < 4; i++) {
        const answer = await client.bestWorker(prompt(910 + i, 40));
        expect(answer.workerId).toBe(layout.workers.prefill[0].instanceId);
      }
      expect(second.stats().queries).toBeGreaterThanOrEqual(6);
    } finally {
      await client.close();
      await Promise.all([first.close(), second.close()]);
      await Promise.all(runtimes.map((rt) => rt.close()));
    }
  });
});
