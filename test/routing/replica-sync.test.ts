import { describe, expect, it } from 'vitest';
import type { KvRouterConfigInput } from '../../src/routing/config.ts';
import { KvRouter } from '../../src/routing/kv-router.ts';
import { seededRandom } from '../../src/routing/random.ts';
import {
  type ActiveSequenceEvent,
  InMemoryReplicaSyncBus,
  ReplicaSync,
} from '../../src/routing/replica-sync.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { BS, blocks, randomTokens, storedEvent } from './helpers.ts';

function replica(
  bus: InMemoryReplicaSyncBus,
  routerId: bigint,
  seed: number,
  config: KvRouterConfigInput = {},
) {
  const router = new KvRouter(
    { blockSize: BS, replicaSync: true, ...config },
    { clock: new ManualClock(), random: seededRandom(seed) },
  );
  for (const id of [1n, 2n]) router.addWorker(id, { dataParallelSize: 2 });
  const sync = new ReplicaSync(router, bus, { routerId, random: seededRandom(seed + 100) });
  return { router, sync };
}

describe('replica sync', () => {
  for (const assumeKvReuse of [true, false]) {
    it(`two routers converge on the same load view after interleaved traffic (assumeKvReuse ${assumeKvReuse})`, () => {
      const bus = new InMemoryReplicaSyncBus();
      const a = replica(bus, 0xa1n, 1, { assumeKvReuse });
      const b = replica(bus, 0xb2n, 2, { assumeKvReuse });
      for (const r of [a.router, b.router]) r.applyEvent(storedEvent(1n, 0, blocks(1, 2, 3)));

      const shared = blocks(1, 2, 3);
      const live: string[] = [];
      const rng = seededRandom(9);
      for (let i = 0; i < 120; i++) {
        const routerOf = () => (rng() < 0.5 ? a.router : b.router);
        const id = `req-${i}`;
        const tokens =
          i % 3 === 0 ? [...shared, ...randomTokens(2 * BS, i)] : randomTokens(BS * (1 + (i % 4)), 500 + i);
        routerOf().route(id, tokens);
        live.push(id);
        // Streams may end on either replica: prefill completion and free come from either side.
        if (i % 2 === 0) routerOf().markPrefillCompleted(live[Math.floor(rng() * live.length)]);
        if (i % 3 === 1) {
          const [done] = live.splice(Math.floor(rng() * live.length), 1);
          routerOf().free(done);
        }
        expect(b.router.loads()).toEqual(a.router.loads());
      }
      const busy = a.router.loads().filter((l) => l.activeRequests > 0);
      expect(busy.length).toBeGreaterThan(1);
      expect(a.router.metrics().trackedRequests).toBe(live.length);
      expect(b.router.metrics().trackedRequests).toBe(live.length);

      for (const id of live) (rng() < 0.5 ? a.router : b.router).free(id);
      expect(a.router.loads().every((l) => l.activeRequests === 0 && l.activeDecodeBlocks === 0)).toBe(true);
      expect(b.router.loads()).toEqual(a.router.loads());
      expect(a.sync.stats().ignoredOwn).toBeGreaterThan(0);
      expect(a.sync.stats().applied).toBeGreaterThan(0);
    });
  }

  it('publishes Dynamo-shaped events and ignores its own router id', () => {
    const bus = new InMemoryReplicaSyncBus();
    const seen: ActiveSequenceEvent[] = [];
    bus.subscribe((e) => seen.push(e));
    const { router, sync } = replica(bus, 7n, 1);
    router.route('r', blocks(1, 2), { pinned: { workerId: 2n, dpRank: 0 } });
    router.markPrefillCompleted('r');
    router.free('r');
    expect(seen.map((e) => e.data)).toEqual([
      { AddRequest: { token_sequence: expect.any(Array), isl: 2 * BS, overlap: 0 } },
      'MarkPrefillCompleted',
      'Free',
    ]);
    expect(seen[0]).toMatchObject({ request_id: 'r', worker: { worker_id: 2n, dp_rank: 0 }, router_id: 7n });
    expect(
      (seen[0].data as { readonly AddRequest: { readonly token_sequence: readonly bigint[] | null } })
        .AddRequest.token_sequence,
    ).toHaveLength(2);
    expect(sync.stats()).toMatchObject({ published: 3, ignoredOwn: 3, applied: 0 });
  });

  it('rejects malformed events and events for unknown workers without throwing', () => {
    const bus = new InMemoryReplicaSyncBus();
    const { router, sync } = replica(bus, 1n, 1);
    const bad = [
      null,
      { request_id: '', worker: { worker_id: 1n, dp_rank: 0 }, data: 'Free', router_id: 2n },
      {
        request_id: 'x',
        worker: { worker_id: 9n, dp_rank: 0 },
        data: { AddRequest: { token_sequence: null, isl: 4, overlap: 0 } },
        router_id: 2n,
      },
      {
        request_id: 'x',
        worker: { worker_id: 1n, dp_rank: 5 },
        data: { AddRequest: { token_sequence: null, isl: 4, overlap: 0 } },
        router_id: 2n,
      },
      {
        request_id: 'x',
        worker: { worker_id: 1n, dp_rank: 0 },
        data: { AddRequest: { token_sequence: [-1n], isl: 4, overlap: 0 } },
        router_id: 2n,
      },
      {
        request_id: 'x',
        worker: { worker_id: 1n, dp_rank: 0 },
        data: { AddRequest: { token_sequence: null, isl: -4, overlap: 0 } },
        router_id: 2n,
      },
      { request_id: 'x', worker: { worker_id: 1n, dp_rank: 0 }, data: 'Explode', router_id: 2n },
    ];
    for (const e of bad) expect(() => bus.publish(e as unknown as ActiveSequenceEvent)).not.toThrow();
    expect(sync.stats().rejected).toBe(bad.length);
    expect(router.metrics().trackedRequests).toBe(0);
  });

  it('keeps routing when the bus fails to publish', async () => {
    const failing = {
      publish: () => Promise.reject(new Error('nats down')),
      subscribe: () => () => {},
    };
    const router = new KvRouter({ blockSize: BS });
    router.addWorker(1n, { dataParallelSize: 1 });
    const sync = new ReplicaSync(router, failing, { routerId: 1n });
    expect(router.route('a', [1, 2, 3]).dpRank).toBe(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(sync.stats().publishErrors).toBe(1);
    sync.close();
  });
});
