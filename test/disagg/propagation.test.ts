import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkerSelection } from '../../src/cluster/disagg/selection.ts';
import type { RequestRouting } from '../../src/cluster/model-router.ts';
import { PREFILL_COMPONENT } from '../../src/protocol/wire.ts';
import { collect, type Layout, MODEL, prompt, request, startLayout, tokensOf } from './helpers.ts';

/** Prefill router decisions, by prompt, as the orchestrator received them. */
const chosen = new Map<string, WorkerSelection>();
/**
 * Prompts whose prefill the router must place on a rank 0 (of the worker it picks): rank 0 is the
 * rank a lost dp_rank turns into, so it is covered every time instead of when ties happen to fall on it.
 */
const onRankZero = new Set<string>();
let layout: Layout;

beforeAll(async () => {
  layout = await startLayout(
    { prefillWorkers: 2, decodeWorkers: 2 },
    {
      prefillSelector: {
        select: (tokens: readonly number[], routing: RequestRouting) => {
          const router = layout.handle.watcher.routerFor(MODEL, PREFILL_COMPONENT)!;
          const key = tokens.join(',');
          const decision = router.decide(tokens, onRankZero.has(key) ? { ...routing, dpRank: 0 } : routing);
          chosen.set(key, decision);
          return decision;
        },
      },
    },
  );
});

afterAll(async () => {
  await layout?.close();
});

describe('prefill router over a dp-4 prefill pool', () => {
  it('answers an integer dp_rank in [0, 4) every time', () => {
    const router = layout.handle.watcher.routerFor(MODEL, PREFILL_COMPONENT)!;
    for (let i = 0; i < 100; i++) {
      const decision = router.decide(prompt(i, 20 + (i % 80)));
      expect(Number.isInteger(decision.dpRank)).toBe(true);
      expect(decision.dpRank).toBeGreaterThanOrEqual(0);
      expect(decision.dpRank).toBeLessThan(4);
    }
  });

  it('50 varied prompts use at least 2 prefill ranks and 2 decode ranks', async () => {
    const prefillRanks = new Set<string>();
    const decodeRanks = new Set<string>();
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const chunks = await collect(
          layout.handle.router.generate(request(`cov-${i}`, prompt(1000 + i, 40 + i * 7))),
        );
        const first = chunks[0];
        expect(first.disaggregated).toBe(true);
        prefillRanks.add(`${first.prefillWorkerId}:${first.prefillDpRank}`);
        decodeRanks.add(`${first.workerId}:${first.dpRank}`);
      }),
    );
    expect(prefillRanks.size).toBeGreaterThanOrEqual(2);
    expect(decodeRanks.size).toBeGreaterThanOrEqual(2);
  });
});

describe('dp_rank propagation, end to end', () => {
  it('for 200 requests: prefill engine rank = prefill router rank = rank the decode engine pulled from', async () => {
    const rows: {
      id: string;
      forced: boolean;
      routerRank: number;
      prefillRan: number;
      decodePulled: number;
    }[] = [];
    const shared = prompt(7, 48);
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const i = batch * 20 + j;
          const tokens =
            i % 3 === 0 ? prompt(5000 + i, 64 + (i % 50), shared) : prompt(5000 + i, 17 + (i % 120));
          const id = `prop-${i}`;
          const forced = i % 10 === 5;
          if (forced) onRankZero.add(tokens.join(','));
          const chunks = await collect(layout.handle.router.generate(request(id, tokens)));
          expect(tokensOf(chunks)).toHaveLength(3);
          const first = chunks[0];
          expect(first.disaggregated).toBe(true);
          const selection = chosen.get(tokens.join(','))!;
          expect(first.prefillWorkerId).toBe(selection.workerId);
          expect(first.prefillDpRank).toBe(selection.dpRank);
          const prefillPlacement = layout.placement(first.prefillWorkerId!, id)!;
          const decodePlacement = layout.placement(first.workerId, id)!;
          expect(decodePlacement.prefillWorkerId).toBe(first.prefillWorkerId);
          expect(decodePlacement.dpRank).toBe(first.dpRank);
          rows.push({
            id,
            forced,
            routerRank: selection.dpRank!,
            prefillRan: prefillPlacement.dpRank,
            decodePulled: decodePlacement.prefillDpRank!,
          });
        }),
      );
    }
    expect(rows).toHaveLength(200);
    for (const row of rows) {
      expect(row.prefillRan, row.id).toBe(row.routerRank);
      expect(row.decodePulled, row.id).toBe(row.routerRank);
    }
    // Rank 0 survives the whole way: the router kept the restriction, and prefill and decode followed.
    const forced = rows.filter((r) => r.forced);
    expect(forced).toHaveLength(20);
    for (const row of forced)
      expect([row.routerRank, row.prefillRan, row.decodePulled], row.id).toEqual([0, 0, 0]);
    // The router's own choices spread over several ranks.
    expect(new Set(rows.filter((r) => !r.forced).map((r) => r.routerRank)).size).toBeGreaterThanOrEqual(2);
    // The prefill pool's load is released once every request finished.
    const prefillRouter = layout.handle.watcher.routerFor(MODEL, PREFILL_COMPONENT)!;
    expect(prefillRouter.loads().every((l) => l.activeRequests === 0 && l.activePrefillTokens === 0)).toBe(
      true,
    );
  });
});
