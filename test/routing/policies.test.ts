import { describe, expect, it } from 'vitest';
import { UnknownPolicyError } from '../../src/routing/errors.ts';
import { CacheAwarePolicy, createPolicy } from '../../src/routing/policies/index.ts';
import { POLICY_NAMES, type RoutingPolicy } from '../../src/routing/policy.ts';
import { seededRandom } from '../../src/routing/random.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { BS, blocks, randomTokens, storedEvent } from './helpers.ts';

const SIZES = new Map([
  [10n, 1],
  [20n, 2],
  [30n, 4],
]);

function make(name: string, seed = 1): RoutingPolicy {
  const policy = createPolicy(name, {
    config: { blockSize: BS },
    clock: new ManualClock(),
    random: seededRandom(seed),
  });
  for (const [id, size] of SIZES) policy.addWorker(id, { dataParallelSize: size });
  return policy;
}

const load = (p: RoutingPolicy) =>
  p.loads().reduce((sum, l) => sum + l.activeDecodeBlocks + l.activePrefillTokens + l.activeRequests, 0);

describe.each(POLICY_NAMES)('policy %s', (name) => {
  it('returns registered workers with integer ranks in [0, data_parallel_size)', () => {
    const policy = make(name);
    expect(policy.name).toBe(name);
    const used = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const d = policy.route(`r${i}`, randomTokens(16 + (i % 5) * 16, i + 1));
      const size = SIZES.get(d.workerId);
      expect(size).toBeDefined();
      expect(Number.isInteger(d.dpRank)).toBe(true);
      expect(d.dpRank).toBeGreaterThanOrEqual(0);
      expect(d.dpRank).toBeLessThan(size!);
      used.add(`${d.workerId}:${d.dpRank}`);
      if (i % 3 === 0) policy.free(`r${i - 3}`);
    }
    expect(used.size).toBeGreaterThan(1);
  });

  it('tracks load through route / markPrefillCompleted / free back to zero', () => {
    const policy = make(name);
    for (let i = 0; i < 20; i++) policy.route(`r${i}`, randomTokens(40, i + 7));
    expect(load(policy)).toBeGreaterThan(0);
    for (let i = 0; i < 20; i++) expect(policy.markPrefillCompleted(`r${i}`)).toBe(true);
    expect(policy.loads().every((l) => l.activePrefillTokens === 0)).toBe(true);
    for (let i = 0; i < 20; i++) expect(policy.free(`r${i}`)).toBe(true);
    expect(policy.free('r0')).toBe(false);
    expect(load(policy)).toBe(0);
  });

  it('handles worker removal: the worker, its ranks and its load are gone', () => {
    const policy = make(name);
    for (let i = 0; i < 30; i++) policy.route(`r${i}`, randomTokens(32, i + 3));
    expect(policy.removeWorker(30n)).toBe(true);
    expect(policy.removeWorker(30n)).toBe(false);
    expect(policy.workerCount).toBe(2);
    expect(policy.loads().some((l) => l.workerId === 30n)).toBe(false);
    for (let i = 0; i < 50; i++)
      expect(policy.route(`s${i}`, randomTokens(32, 100 + i)).workerId).not.toBe(30n);
    expect(policy.applyEvent(storedEvent(30n, 0, blocks(1)))?.code).toBe('KV_UNKNOWN_WORKER');
    for (let i = 0; i < 30; i++) policy.free(`r${i}`);
    for (let i = 0; i < 50; i++) policy.free(`s${i}`);
    expect(load(policy)).toBe(0);
  });

  it('honours pins (rank 0 included) and rejects bad input with typed errors', () => {
    const policy = make(name);
    expect(policy.route('p', [1, 2, 3], { pinned: { workerId: 30n, dpRank: 0 }, dpRank: 3 })).toMatchObject({
      workerId: 30n,
      dpRank: 0,
    });
    expect(policy.loads().find((l) => l.workerId === 30n && l.dpRank === 0)!.activeRequests).toBe(1);
    expect(policy.bestWorker([1, 2], { pinned: { workerId: 30n }, dpRank: 0 }).dpRank).toBe(0);
    expect(policy.bestWorker([1, 2], { dpRank: 3 })).toMatchObject({ workerId: 30n, dpRank: 3 });
    expect(() => policy.route('x', [])).toThrow(expect.objectContaining({ code: 'ROUTER_INVALID_TOKENS' }));
    expect(() => policy.route('x', [0.5])).toThrow(
      expect.objectContaining({ code: 'ROUTER_INVALID_TOKENS' }),
    );
    expect(() => policy.route('x', [1], { pinned: { workerId: 99n } })).toThrow(
      expect.objectContaining({ code: 'ROUTER_UNKNOWN_WORKER' }),
    );
    expect(() => policy.route('x', [1], { pinned: { workerId: 20n, dpRank: 2 } })).toThrow(
      expect.objectContaining({ code: 'ROUTER_RANK_OUT_OF_RANGE' }),
    );
    expect(() => policy.route('x', [1], { overrides: { routerTemperature: -1 } })).toThrow(
      expect.objectContaining({ code: 'ROUTER_INVALID_OVERRIDE' }),
    );
    const empty = createPolicy(name);
    expect(() => empty.route('x', [1])).toThrow(expect.objectContaining({ code: 'ROUTER_NO_WORKERS' }));
  });
});

describe('baseline specifics', () => {
  it('round-robin visits every rank in turn; bestWorker does not advance it', () => {
    const policy = make('round-robin');
    const first = policy.bestWorker([1]);
    expect(policy.bestWorker([1])).toEqual(first);
    const seen: string[] = [];
    for (let i = 0; i < 14; i++) {
      const d = policy.route(`r${i}`, [1, 2]);
      seen.push(`${d.workerId}:${d.dpRank}`);
    }
    expect(new Set(seen.slice(0, 7)).size).toBe(7);
    expect(seen.slice(7)).toEqual(seen.slice(0, 7));
  });

  it('least-loaded picks the emptiest rank; power-of-two never picks the busier of its two', () => {
    for (const name of ['least-loaded', 'power-of-two']) {
      const policy = createPolicy(name, { config: { blockSize: BS }, random: seededRandom(2) });
      policy.addWorker(1n, { dataParallelSize: 2 });
      policy.route('busy', randomTokens(10 * BS, 1), { pinned: { workerId: 1n, dpRank: 1 } });
      for (let i = 0; i < 20; i++) expect(policy.bestWorker([1, 2, 3]).dpRank).toBe(0);
    }
  });

  it('unknown policy names are a typed error', () => {
    expect(() => createPolicy('fastest')).toThrow(UnknownPolicyError);
  });
});

describe('cache-aware (SGLang)', () => {
  function cacheAware(options = {}) {
    const policy = new CacheAwarePolicy({ blockSize: BS, random: seededRandom(4), ...options });
    policy.addWorker(1n, { dataParallelSize: 2 });
    return policy;
  }
  const prompt = blocks(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);

  it('sends a repeated prompt back to the rank that served it', () => {
    const policy = cacheAware();
    const first = policy.route('a', prompt);
    policy.free('a');
    // Give the other rank the lower load so only the cache can explain the choice.
    policy.route('other', randomTokens(BS, 5), { pinned: { workerId: 1n, dpRank: first.dpRank } });
    const again = policy.route('b', prompt);
    expect(again).toEqual({ ...first, overlapBlocks: 10 });
  });

  it('a cache miss goes to the least-loaded rank, not to the smallest tree', () => {
    const policy = cacheAware();
    // Rank 0: big tree, idle. Rank 1: small tree, busy.
    for (let i = 0; i < 10; i++) {
      policy.route(`t${i}`, randomTokens(8 * BS, 50 + i), { pinned: { workerId: 1n, dpRank: 0 } });
      policy.free(`t${i}`);
    }
    for (let i = 0; i < 3; i++)
      policy.route(`busy${i}`, blocks(70 + i), { pinned: { workerId: 1n, dpRank: 1 } });
    expect(policy.bestWorker(randomTokens(8 * BS, 999)).dpRank).toBe(0);
  });

  it('below the cache threshold the match is ignored for the least-loaded rank', () => {
    const policy = cacheAware();
    policy.route('seed', blocks(1, 2), { pinned: { workerId: 1n, dpRank: 0 } });
    // Rank 0 matches 2 of 10 blocks (0.2 < 0.3) and carries one request; rank 1 is idle.
    expect(policy.bestWorker(prompt)).toMatchObject({ dpRank: 1, overlapBlocks: 0 });
    // Above the threshold (4 of 10) the match wins despite the load.
    policy.route('seed2', blocks(1, 2, 3, 4), { pinned: { workerId: 1n, dpRank: 0 } });
    expect(policy.bestWorker(prompt)).toMatchObject({ dpRank: 0, overlapBlocks: 4 });
  });

  it('under imbalance (absolute and relative) routes to the least-loaded rank even on a hit', () => {
    const policy = cacheAware({ balanceAbsThreshold: 4, balanceRelThreshold: 1.5 });
    policy.route('hit', prompt, { pinned: { workerId: 1n, dpRank: 0 } });
    for (let i = 0; i < 4; i++) policy.route(`l${i}`, [i], { pinned: { workerId: 1n, dpRank: 0 } });
    // 5 vs 0 in flight: 5 − 0 > 4 and 5 > 0 × 1.5.
    expect(policy.bestWorker(prompt).dpRank).toBe(1);
    policy.free('l0');
    // 4 vs 0: not above the absolute threshold, so the cache wins again.
    expect(policy.bestWorker(prompt)).toMatchObject({ dpRank: 0, overlapBlocks: 10 });
  });

  it('forgets a removed worker in its tree', () => {
    const policy = cacheAware();
    policy.addWorker(2n, { dataParallelSize: 1 });
    policy.route('a', prompt, { pinned: { workerId: 2n } });
    policy.route('b', blocks(40, 41), { pinned: { workerId: 1n, dpRank: 1 } });
    expect(policy.treeSize).toBe(12);
    policy.removeWorker(2n);
    expect(policy.treeSize).toBe(2);
    expect(policy.bestWorker(prompt).overlapBlocks).toBe(0);
  });

  it('keeps its tree within maxTreeSize, dropping the least recently routed blocks', () => {
    const policy = cacheAware({ maxTreeSize: 20 });
    for (let i = 0; i < 10; i++) {
      policy.route(`r${i}`, randomTokens(5 * BS, 300 + i));
      policy.free(`r${i}`);
    }
    expect(policy.treeSize).toBeLessThanOrEqual(20);
    expect(policy.bestWorker(randomTokens(5 * BS, 309)).overlapBlocks).toBe(5);
    expect(policy.bestWorker(randomTokens(5 * BS, 300)).overlapBlocks).toBe(0);
  });
});
