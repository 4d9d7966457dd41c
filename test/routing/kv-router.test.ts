import { describe, expect, it } from 'vitest';
import type { RouterEvent } from '../../src/kv/events.ts';
import type { KvRouterConfigInput } from '../../src/routing/config.ts';
import {
  InvalidOverrideError,
  InvalidTokensError,
  NoWorkersError,
  RankOutOfRangeError,
  RoutingError,
  UnknownWorkerError,
} from '../../src/routing/errors.ts';
import { KvRouter } from '../../src/routing/kv-router.ts';
import { seededRandom } from '../../src/routing/random.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { BS, blocks, randomTokens, storedEvent } from './helpers.ts';

function makeRouter(config: KvRouterConfigInput = {}, clock = new ManualClock(), seed = 1) {
  return new KvRouter({ blockSize: BS, ...config }, { clock, random: seededRandom(seed) });
}

function totalLoad(router: KvRouter) {
  return router
    .loads()
    .reduce((sum, l) => sum + l.activeDecodeBlocks + l.activePrefillTokens + l.activeRequests, 0);
}

describe('KvRouter: data-parallel ranks', () => {
  it('routes to the rank holding the prefix: rank 2, then rank 0', () => {
    for (const cachedRank of [2, 0]) {
      const router = makeRouter();
      router.addWorker(7n, { dataParallelSize: 4 });
      const prompt = blocks(1, 2, 3, 4, 5);
      expect(router.applyEvent(storedEvent(7n, cachedRank, prompt))).toBeNull();
      const best = router.bestWorker(prompt);
      expect(best).toEqual({ workerId: 7n, dpRank: cachedRank, overlapBlocks: 5 });
      const routed = router.route('r', prompt);
      expect(routed.dpRank).toBe(cachedRank);
      expect(Number.isInteger(routed.dpRank)).toBe(true);
    }
  });

  it('rank 0 (and worker id 0) survive every layer: pins, request ranks, events, loads, sync events', () => {
    const router = makeRouter();
    router.addWorker(0n, { dataParallelSize: 4 });
    const prompt = blocks(11, 12, 13, 14);
    // The cache is on rank 3, so anything that drops a 0 rank falls through to rank 3.
    router.applyEvent(storedEvent(0n, 3, prompt));
    expect(router.bestWorker(prompt).dpRank).toBe(3);

    // Pinned rank 0 wins over a request-level rank (`pinned.dpRank || options.dpRank` would give 2).
    const pinned = router.route('a', prompt, { pinned: { workerId: 0n, dpRank: 0 }, dpRank: 2 });
    expect(pinned).toEqual({ workerId: 0n, dpRank: 0, overlapBlocks: 0 });
    // A pinned worker without a rank takes the request-level rank 0 (not "no rank, pick best" = 3).
    expect(router.route('b', prompt, { pinned: { workerId: 0n }, dpRank: 0 }).dpRank).toBe(0);
    // A request-level rank 0 without a pin restricts the choice to rank 0.
    expect(router.bestWorker(prompt, { dpRank: 0 }).dpRank).toBe(0);

    const rank0 = router.loads().find((l) => l.dpRank === 0)!;
    expect(rank0).toMatchObject({ workerId: 0n, activeRequests: 2, activePrefillTokens: 2 * prompt.length });
    expect(router.loads().filter((l) => l.dpRank !== 0 && l.activeRequests > 0)).toEqual([]);

    // Events on rank 0 land on rank 0.
    const other = blocks(21, 22);
    router.applyEvent(storedEvent(0n, 0, other));
    expect(router.potentialLoads(other).map((l) => [l.dpRank, l.overlapBlocks])).toEqual([
      [0, 2],
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
    // Replica-sync events on rank 0 are applied to rank 0.
    expect(
      router.applySequenceEvent({
        kind: 'add',
        requestId: 'remote',
        workerId: 0n,
        dpRank: 0,
        blocks: null,
        unsharedBlocks: 0,
        isl: 32,
        overlapBlocks: 0,
      }),
    ).toBe(true);
    expect(router.loads().find((l) => l.dpRank === 0)!.activeRequests).toBe(3);
    for (const id of ['a', 'b', 'remote']) expect(router.free(id)).toBe(true);
    expect(totalLoad(router)).toBe(0);
  });

  it('50 varied prompts on empty caches at equal load: integer ranks in [0, 4), at least 2 distinct', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 4 });
    const ranks = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const { workerId, dpRank } = router.bestWorker(randomTokens(20 + i * 7, i + 1));
      expect(workerId).toBe(1n);
      expect(Number.isInteger(dpRank)).toBe(true);
      expect(dpRank).toBeGreaterThanOrEqual(0);
      expect(dpRank).toBeLessThan(4);
      ranks.add(dpRank);
    }
    expect(ranks.size).toBeGreaterThanOrEqual(2);
    expect(totalLoad(router)).toBe(0); // bestWorker changes no state
  });
});

describe('KvRouter: cost-based choice', () => {
  // Dynamo's test_router_decisions, letters = blocks; workers a and b with 4 ranks each.
  const [A, B, C, D, E, F, G] = [1, 2, 3, 4, 5, 6, 7];

  it('longest prefix wins at equal load; equal prefix goes to the smaller tree', () => {
    const router = makeRouter();
    router.addWorker(0xan, { dataParallelSize: 4 });
    router.addWorker(0xbn, { dataParallelSize: 4 });
    // What the forced (pinned) requests left in the engines' caches.
    router.applyEvent(storedEvent(0xan, 0, blocks(A, B)));
    router.applyEvent(storedEvent(0xan, 0, blocks(A, C, D)));
    router.applyEvent(storedEvent(0xbn, 1, blocks(A, C, E)));

    const acdf = router.bestWorker(blocks(A, C, D, F));
    expect(acdf).toEqual({ workerId: 0xan, dpRank: 0, overlapBlocks: 3 }); // prefix 3 vs 2
    router.applyEvent(storedEvent(0xan, 0, blocks(A, C, D, F)));

    // Tied at 2 blocks: (b, 1) holds 3 blocks, (a, 0) holds 5.
    expect(router.bestWorker(blocks(A, C, G))).toEqual({ workerId: 0xbn, dpRank: 1, overlapBlocks: 2 });
    const stored = (w: bigint, r: number) =>
      router
        .dump()
        .filter((e) => e.workerId === w && e.event.dpRank === r && e.event.data.kind === 'stored')
        .reduce((n, e) => n + (e.event.data.kind === 'stored' ? e.event.data.blocks.length : 0), 0);
    expect(stored(0xan, 0)).toBe(5);
    expect(stored(0xbn, 1)).toBe(3);
  });

  it('a heavily loaded rank loses despite more overlap when the cost says so', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 2 });
    const prompt = blocks(1, 2, 3, 4, 5, 6, 7, 8);
    router.applyEvent(storedEvent(1n, 0, blocks(1, 2, 3, 4)));
    expect(router.bestWorker(prompt).dpRank).toBe(0);

    // Pin unrelated work onto rank 0 until its cost is higher.
    for (let i = 0; i < 3; i++)
      router.route(`load-${i}`, randomTokens(64, 100 + i), { pinned: { workerId: 1n, dpRank: 0 } });
    const loads = router.potentialLoads(prompt);
    const [r0, r1] = [loads.find((l) => l.dpRank === 0)!, loads.find((l) => l.dpRank === 1)!];
    expect(r0.overlapBlocks).toBe(4);
    expect(r1.overlapBlocks).toBe(0);
    // rank 0: (128 - 64 + 3·64)/16 = 16 prefill blocks + (8 + 12) decode blocks = 36
    // rank 1: 128/16 = 8 prefill blocks + 8 decode blocks = 16
    expect(r0.cost).toBe(36);
    expect(r1.cost).toBe(16);
    expect(router.bestWorker(prompt)).toEqual({ workerId: 1n, dpRank: 1, overlapBlocks: 0 });
  });

  it("prefillQueueWeight < 1 keeps a cached prefix on its busy rank; 1 is Dynamo's cost", () => {
    const costs = (prefillQueueWeight: number) => {
      const router = makeRouter({ prefillQueueWeight });
      router.addWorker(1n, { dataParallelSize: 2 });
      const prompt = blocks(1, 2, 3, 4, 5, 6, 7, 8);
      router.applyEvent(storedEvent(1n, 0, blocks(1, 2, 3, 4, 5, 6)));
      // 64 tokens still prefilling on rank 0 (prefill never marked completed).
      router.route('queued', randomTokens(64, 7), { pinned: { workerId: 1n, dpRank: 0 } });
      const loads = router.potentialLoads(prompt);
      return {
        r0: loads.find((l) => l.dpRank === 0)!.cost,
        r1: loads.find((l) => l.dpRank === 1)!.cost,
        chosen: router.bestWorker(prompt).dpRank,
      };
    };
    // rank 0: (32 uncached + q·64 queued)/16 prefill blocks + (8 new + 4 active) decode blocks
    // rank 1: 128/16 + 8
    expect(costs(1)).toEqual({ r0: 6 + 12, r1: 16, chosen: 1 });
    expect(costs(0.25)).toEqual({ r0: 3 + 12, r1: 16, chosen: 0 });
  });

  it('potential loads combine the index overlap with the tracked load (prefill and decode blocks)', () => {
    const router = makeRouter();
    for (const id of [1n, 2n, 3n]) router.addWorker(id, { dataParallelSize: 1 });
    // 10-block prompt; cached 2, 5 and 8 blocks give prefill 8, 5, 2.
    const prompt = blocks(...Array.from({ length: 10 }, (_, i) => 50 + i));
    router.applyEvent(storedEvent(1n, 0, prompt.slice(0, 2 * BS)));
    router.applyEvent(storedEvent(2n, 0, prompt.slice(0, 5 * BS)));
    router.applyEvent(storedEvent(3n, 0, prompt.slice(0, 8 * BS)));
    // Decoding load on worker 3 only: 8 blocks shared with the prompt, 7 not.
    router.route('w3a', prompt.slice(0, 8 * BS), { pinned: { workerId: 3n } }); // shares 8 blocks
    router.markPrefillCompleted('w3a');
    router.route('w3b', randomTokens(7 * BS, 11), { pinned: { workerId: 3n } }); // 7 more
    router.markPrefillCompleted('w3b');
    const loads = router.potentialLoads(prompt);
    const byWorker = (id: bigint) => loads.find((l) => l.workerId === id)!;
    expect(byWorker(1n).prefillTokens / BS).toBe(8);
    expect(byWorker(2n).prefillTokens / BS).toBe(5);
    expect(byWorker(3n).prefillTokens / BS).toBe(2);
    expect(byWorker(1n).decodeBlocks).toBe(10);
    expect(byWorker(3n).decodeBlocks).toBe(2 + 15);
    // Worker 2 has no load: 5 + 10 = 15; worker 3: 2 + 17 = 19; worker 1: 8 + 10 = 18.
    expect(loads.map((l) => l.cost)).toEqual([18, 15, 19]);
    expect(router.bestWorker(prompt).workerId).toBe(2n);
  });

  it('overlap weight 0 (per request) ignores the cache; temperature override samples', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 2 });
    const prompt = blocks(1, 2, 3, 4);
    router.applyEvent(storedEvent(1n, 0, prompt));
    router.route('x', randomTokens(16, 3), { pinned: { workerId: 1n, dpRank: 0 } });
    expect(router.bestWorker(prompt).dpRank).toBe(0);
    expect(router.bestWorker(prompt, { overrides: { overlapScoreWeight: 0 } })).toEqual({
      workerId: 1n,
      dpRank: 1,
      overlapBlocks: 0,
    });
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++)
      seen.add(router.bestWorker(prompt, { overrides: { routerTemperature: 5 } }).dpRank);
    expect(seen).toEqual(new Set([0, 1]));
  });
});

describe('KvRouter: lifecycle', () => {
  it('add → prefill done → free brings every load back to zero; double free is harmless', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 2 });
    router.addWorker(2n, { dataParallelSize: 2 });
    const shared = blocks(1, 2, 3);
    const ids = ['a', 'b', 'c', 'd', 'e'];
    ids.forEach((id, i) => {
      router.route(id, [...shared, ...blocks(10 + i)], {});
    });
    expect(totalLoad(router)).toBeGreaterThan(0);
    for (const id of ids) expect(router.markPrefillCompleted(id)).toBe(true);
    expect(router.loads().every((l) => l.activePrefillTokens === 0)).toBe(true);
    for (const id of ids) expect(router.free(id)).toBe(true);
    expect(totalLoad(router)).toBe(0);
    expect(router.free('a')).toBe(false);
    expect(router.markPrefillCompleted('a')).toBe(false);
    expect(totalLoad(router)).toBe(0);
  });

  it('resetRank drops the index entries of that rank only, and keeps its load', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 2 });
    for (let rank = 0; rank < 2; rank++) router.applyEvent(storedEvent(1n, rank, blocks(rank + 1, 9)));
    router.route('r1', blocks(2, 9), { pinned: { workerId: 1n, dpRank: 1 } });
    router.resetRank(1n, 1);
    expect(router.dump().map((e) => e.event.dpRank)).toEqual([0, 0]);
    expect(router.bestWorker(blocks(1, 9)).overlapBlocks).toBe(2);
    expect(router.loads().find((l) => l.dpRank === 1)?.activeRequests).toBe(1);
    // The rank indexes again (its dump follows a reset).
    expect(router.applyEvent(storedEvent(1n, 1, blocks(2, 9)))).toBeNull();
    expect(router.bestWorker(blocks(2, 9))).toEqual({ workerId: 1n, dpRank: 1, overlapBlocks: 2 });
  });

  it('removeWorker leaves no load or index entry for any rank, and frees its owner ids', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 3 });
    router.addWorker(2n, { dataParallelSize: 1 });
    for (let rank = 0; rank < 3; rank++) {
      router.applyEvent(storedEvent(1n, rank, blocks(rank + 1, 9)));
      router.route(`r${rank}`, blocks(rank + 1, 9), { pinned: { workerId: 1n, dpRank: rank } });
    }
    router.applyEvent(storedEvent(2n, 0, blocks(5)));
    expect(router.removeWorker(1n)).toBe(true);
    expect(router.loads().map((l) => l.workerId)).toEqual([2n]);
    expect(router.dump().every((e) => e.workerId === 2n)).toBe(true);
    expect(router.owners.ownersOf(1n)).toEqual([]);
    expect(router.bestWorker(blocks(1, 9))).toEqual({ workerId: 2n, dpRank: 0, overlapBlocks: 0 });
    expect(router.free('r0')).toBe(false); // its requests went with it
    expect(router.removeWorker(1n)).toBe(false);
    // Re-adding starts clean.
    router.addWorker(1n, { dataParallelSize: 3 });
    expect(
      router
        .loads()
        .filter((l) => l.workerId === 1n)
        .every((l) => l.activeRequests === 0),
    ).toBe(true);
    expect(router.bestWorker(blocks(1, 9)).overlapBlocks).toBe(0);
  });

  it('expires stale requests', () => {
    const clock = new ManualClock();
    const router = makeRouter({ staleRequestSecs: 10 }, clock);
    router.addWorker(1n, { dataParallelSize: 1 });
    router.route('lost', blocks(1, 2));
    clock.advance(10_001);
    expect(router.expireStaleRequests()).toBe(1);
    expect(totalLoad(router)).toBe(0);
  });
});

describe('KvRouter: events', () => {
  it('rejects events for unknown workers and ranks outside the registration, counts them, keeps going', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 2 });
    expect(router.applyEvent(storedEvent(9n, 0, blocks(1)))?.code).toBe('KV_UNKNOWN_WORKER');
    expect(router.applyEvent(storedEvent(1n, 2, blocks(1)))?.code).toBe('KV_RANK_OUT_OF_RANGE');
    const bad = {
      workerId: 1n,
      event: { eventId: 0n, dpRank: -1, data: { kind: 'cleared' } },
    } as RouterEvent;
    expect(router.applyEvent(bad)?.code).toBe('KV_RANK_OUT_OF_RANGE');
    expect(router.applyEvent(null as unknown as RouterEvent)?.code).toBe('KV_INVALID_EVENT');
    const orphan: RouterEvent = {
      workerId: 1n,
      event: {
        eventId: 1n,
        dpRank: 1,
        data: { kind: 'stored', parentHash: 42n, blocks: [{ blockHash: 1n, tokensHash: 2n }] },
      },
    };
    expect(router.applyEvent(orphan)?.code).toBe('KV_PARENT_NOT_FOUND');
    const shapeless = {
      workerId: 1n,
      event: { eventId: 2n, dpRank: 0, data: null },
    } as unknown as RouterEvent;
    expect(router.applyEvent(shapeless)?.code).toBe('KV_INVALID_EVENT');
    expect(router.applyEvent(storedEvent(1n, 1, blocks(1)))).toBeNull();
    expect(router.metrics()).toMatchObject({
      eventsApplied: 1,
      eventErrors: {
        KV_UNKNOWN_WORKER: 1,
        KV_RANK_OUT_OF_RANGE: 2,
        KV_INVALID_EVENT: 2,
        KV_PARENT_NOT_FOUND: 1,
      },
    });
    expect(router.dump().every((e) => e.workerId === 1n && e.event.dpRank === 1)).toBe(true);
  });
});

describe('KvRouter: approximate mode and predicted blocks', () => {
  it('approximate mode: a decision sticks for the TTL and vanishes after it', () => {
    const clock = new ManualClock();
    const router = makeRouter({ useKvEvents: false, ttlSecs: 120 }, clock);
    router.addWorker(1n, { dataParallelSize: 4 });
    router.addWorker(2n, { dataParallelSize: 4 });
    const prompt = blocks(1, 2, 3, 4, 5, 6);
    const first = router.route('a', prompt);
    router.free('a');
    clock.advance(119_000);
    for (let i = 0; i < 5; i++)
      expect(router.bestWorker(prompt)).toEqual({
        workerId: first.workerId,
        dpRank: first.dpRank,
        overlapBlocks: 6,
      });
    expect(router.dump().length).toBeGreaterThan(0);
    clock.advance(2_000);
    expect(router.bestWorker(prompt).overlapBlocks).toBe(0);
    expect(router.dump()).toEqual([]);
  });

  it('predicted blocks: 8 fan-out siblings sent back to back land on one (worker, rank)', () => {
    // Agent fan-out: the parent turn ran (and finished) on some rank; its stored events have not
    // reached the router yet when 8 siblings sharing its context arrive back to back.
    const context = blocks(...Array.from({ length: 48 }, (_, i) => 100 + i));
    const run = (predictedTtlSecs: number | null) => {
      const router = makeRouter({ predictedTtlSecs }, new ManualClock(), 5);
      for (let w = 1n; w <= 4n; w++) router.addWorker(w, { dataParallelSize: 4 });
      router.route('parent', context);
      router.markPrefillCompleted('parent');
      router.free('parent');
      const targets = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const d = router.route(`sibling-${i}`, [...context, ...blocks(900 + i)]);
        targets.add(`${d.workerId}:${d.dpRank}`);
      }
      return targets;
    };
    expect(run(5).size).toBe(1);
    // Without predicted blocks the same burst spreads (each sibling re-prefills the context).
    expect(run(null).size).toBeGreaterThan(1);
  });

  it('predicted blocks expire after their TTL', () => {
    const clock = new ManualClock();
    const router = makeRouter({ predictedTtlSecs: 5 }, clock);
    router.addWorker(1n, { dataParallelSize: 2 });
    const prompt = blocks(1, 2, 3);
    const d = router.route('a', prompt);
    router.free('a');
    expect(router.bestWorker(prompt)).toEqual({ ...d, overlapBlocks: 3 });
    clock.advance(5_001);
    expect(router.bestWorker(prompt).overlapBlocks).toBe(0);
  });
});

describe('KvRouter: bad input', () => {
  const router = makeRouter();
  router.addWorker(1n, { dataParallelSize: 2 });

  it('rejects bad tokens with InvalidTokensError', () => {
    for (const tokens of [[], [1, 2.5], [1, -1], [2 ** 32], [Number.NaN], ['1'], 'abc', null]) {
      expect(() => router.bestWorker(tokens as number[])).toThrow(InvalidTokensError);
      expect(() => router.route('x', tokens as number[])).toThrow(InvalidTokensError);
    }
    expect(router.metrics().trackedRequests).toBe(0);
  });

  it('rejects unknown pinned workers, ranks out of range and overrides out of range', () => {
    expect(() => router.route('x', [1, 2], { pinned: { workerId: 99n } })).toThrow(UnknownWorkerError);
    expect(() => router.route('x', [1, 2], { pinned: { workerId: 1n, dpRank: 2 } })).toThrow(
      RankOutOfRangeError,
    );
    expect(() => router.route('x', [1, 2], { pinned: { workerId: 1n }, dpRank: 5 })).toThrow(
      RankOutOfRangeError,
    );
    expect(() => router.route('x', [1, 2], { dpRank: 2 })).toThrow(RankOutOfRangeError);
    expect(() => router.route('x', [1, 2], { dpRank: 0.5 })).toThrow(RankOutOfRangeError);
    expect(() => router.route('x', [1, 2], { overrides: { overlapScoreWeight: -1 } })).toThrow(
      InvalidOverrideError,
    );
    expect(() => router.route('x', [1, 2], { overrides: { routerTemperature: Number.NaN } })).toThrow(
      InvalidOverrideError,
    );
    expect(() => router.route('', [1, 2])).toThrow(RoutingError);
    router.route('dup', [1, 2]);
    expect(() => router.route('dup', [1, 2])).toThrow(
      expect.objectContaining({ code: 'ROUTER_DUPLICATE_REQUEST' }),
    );
    router.free('dup');
    expect(router.metrics().trackedRequests).toBe(0);
  });

  it('no workers gives a typed NoWorkers error', () => {
    const empty = makeRouter();
    expect(() => empty.bestWorker([1, 2, 3])).toThrow(NoWorkersError);
    expect(() => empty.route('a', [1, 2, 3])).toThrow(
      expect.objectContaining({ code: 'ROUTER_NO_WORKERS', statusCode: 503 }),
    );
  });

  it('rejects bad registrations', () => {
    expect(() => router.addWorker(3n, { dataParallelSize: 0 })).toThrow(/dataParallelSize/);
    expect(() => router.addWorker(3n, { dataParallelSize: 1.5 })).toThrow(/dataParallelSize/);
    expect(() => router.addWorker(3n, { dataParallelSize: 1, blockSize: 32 })).toThrow(/block size/);
    expect(() => router.addWorker(-1n, { dataParallelSize: 1 })).toThrow(/u64/);
    expect(router.workerCount).toBe(1);
  });
});

describe('KvRouter: hashed prompts, injected indexer, output blocks', () => {
  it('routeHashed / bestWorkerHashed decide exactly as route / bestWorker', () => {
    const a = makeRouter({}, new ManualClock(), 3);
    const b = makeRouter({}, new ManualClock(), 3);
    for (const r of [a, b]) {
      r.addWorker(1n, { dataParallelSize: 4 });
      r.addWorker(2n, { dataParallelSize: 2 });
      r.applyEvent(storedEvent(2n, 1, blocks(1, 2, 3)));
    }
    for (let i = 0; i < 40; i++) {
      const tokens =
        i % 2 === 0 ? [...blocks(1, 2), ...randomTokens(20 + i, i)] : randomTokens(50 + i, 100 + i);
      const hashed = b.hashPrompt(tokens);
      expect(b.bestWorkerHashed(hashed)).toEqual(a.bestWorker(tokens));
      expect(b.routeHashed(`r${i}`, hashed)).toEqual(a.route(`r${i}`, tokens));
    }
    expect(b.loads()).toEqual(a.loads());
  });

  it('rejects hashed prompts whose length and hashes disagree', () => {
    const router = makeRouter();
    router.addWorker(1n, { dataParallelSize: 1 });
    const good = router.hashPrompt(blocks(1, 2));
    expect(() => router.bestWorkerHashed({ ...good, isl: 3 * BS })).toThrow(InvalidTokensError);
    expect(() =>
      router.bestWorkerHashed({ isl: 2 * BS, localHashes: good.localHashes.subarray(0, 3) }),
    ).toThrow(InvalidTokensError);
    expect(() =>
      router.bestWorkerHashed({ ...good, sequenceHashes: good.localHashes.subarray(0, 2) }),
    ).toThrow(InvalidTokensError);
    expect(router.bestWorkerHashed({ isl: 2 * BS + 5, localHashes: good.localHashes }).dpRank).toBe(0);
  });

  it('routes the same with the reference NaiveIndexer injected, and insists on one shared owner table', async () => {
    const { NaiveIndexer } = await import('../../src/kv/naive-indexer.ts');
    const { OwnerTable } = await import('../../src/kv/owners.ts');
    const owners = new OwnerTable();
    const router = new KvRouter(
      { blockSize: BS },
      { owners, indexer: new NaiveIndexer({ owners }), random: seededRandom(1) },
    );
    router.addWorker(3n, { dataParallelSize: 4 });
    router.applyEvent(storedEvent(3n, 0, blocks(7, 8)));
    router.applyEvent(storedEvent(3n, 2, blocks(7, 8, 9)));
    expect(router.bestWorker(blocks(7, 8, 9))).toEqual({ workerId: 3n, dpRank: 2, overlapBlocks: 3 });
    expect(router.bestWorker(blocks(7, 8))).toEqual({ workerId: 3n, dpRank: 0, overlapBlocks: 2 }); // smaller tree
    expect(
      () =>
        new KvRouter({ blockSize: BS }, { owners: new OwnerTable(), indexer: new NaiveIndexer({ owners }) }),
    ).toThrow(/OwnerTable/);
  });

  it('output-block tracking adds decode load only when enabled', () => {
    for (const trackOutputBlocks of [false, true]) {
      const router = makeRouter({ trackOutputBlocks });
      router.addWorker(1n, { dataParallelSize: 1 });
      router.route('a', blocks(1, 2));
      expect(router.addOutputBlock('a')).toBe(trackOutputBlocks);
      router.addOutputBlock('a');
      expect(router.loads()[0].activeDecodeBlocks).toBe(trackOutputBlocks ? 4 : 2);
      router.free('a');
      expect(router.loads()[0].activeDecodeBlocks).toBe(0);
    }
  });

  it('without KV reuse, requests sharing a prefix do not share decode blocks', () => {
    const shared = blocks(1, 2, 3, 4);
    for (const [assumeKvReuse, expected] of [
      [true, 4],
      [false, 8],
    ] as const) {
      const router = makeRouter({ assumeKvReuse });
      router.addWorker(1n, { dataParallelSize: 1 });
      router.route('a', shared);
      router.route('b', shared);
      expect(router.loads()[0].activeDecodeBlocks).toBe(expected);
    }
  });
});
