/**
 * When a request does not run disaggregated, and what happens when its prefill fails: conditional
 * disaggregation, no prefill pool, enforced disaggregation, a prefill engine lost mid-request.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DisaggChunk } from '../../src/cluster/disagg/disaggregated-model-router.ts';
import { startDisaggregatedWorkers, waitForPools } from '../../src/cluster/disagg/embedded.ts';
import { DisaggError } from '../../src/cluster/disagg/errors.ts';
import type { LocalRuntime } from '../../src/runtime/local/cluster.ts';
import {
  BLOCK_SIZE,
  collect,
  type Layout,
  MODEL,
  prompt,
  request,
  startLayout,
  tokensOf,
} from './helpers.ts';

let layout: Layout | undefined;

afterEach(async () => {
  await layout?.close();
  layout = undefined;
});

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('conditional disaggregation', () => {
  it('short uncached prompts skip prefill; long ones are disaggregated', async () => {
    layout = await startLayout(
      { prefillWorkers: 1, decodeWorkers: 1, decodeRole: 'aggregated' },
      { minUncachedTokens: 100 },
    );
    const router = layout.handle.router;
    const short = await collect(router.generate(request('short', prompt(1, 60))));
    expect(tokensOf(short)).toHaveLength(3);
    expect(short[0].disaggregated).toBe(false);
    expect(short[0].prefillWorkerId).toBeUndefined();
    expect(layout.placement(layout.workers.prefill[0].instanceId, 'short')).toBeUndefined();

    const long = await collect(router.generate(request('long', prompt(2, 200))));
    expect(long[0].disaggregated).toBe(true);
    expect(long[0].prefillWorkerId).toBe(layout.workers.prefill[0].instanceId);
    expect(router.stats().aggregated.short_prompt).toBe(1);
    expect(router.stats().disaggregated).toBe(1);
  });

  it('every prefill rank busy: the request runs aggregated', async () => {
    layout = await startLayout(
      {
        prefillWorkers: 1,
        decodeWorkers: 1,
        decodeRole: 'aggregated',
        prefillEngine: { dataParallelSize: 1, speedupRatio: 0.05 },
      },
      { prefillBusyThresholds: { activePrefillTokensThreshold: 1000 } },
    );
    const router = layout.handle.router;
    // A long prompt keeps the only prefill rank over 1000 pending prompt tokens for about a second.
    const long = collect(router.generate(request('long', prompt(7, 3000))));
    await until(() => router.stats().handoffs >= 1, 'the long prefill');
    const second = await collect(router.generate(request('while-busy', prompt(8, 300))));
    expect(second[0].disaggregated).toBe(false);
    expect(router.stats().aggregated.prefill_busy).toBe(1);
    expect((await long)[0].disaggregated).toBe(true);
    const after = await collect(router.generate(request('after', prompt(9, 300))));
    expect(after[0].disaggregated).toBe(true);
  });

  it('without an aggregated worker to prefill locally, short prompts are still disaggregated', async () => {
    layout = await startLayout({ prefillWorkers: 1, decodeWorkers: 1 }, { minUncachedTokens: 100 });
    const chunks = await collect(layout.handle.router.generate(request('short', prompt(3, 40))));
    expect(chunks[0].disaggregated).toBe(true);
  });
});

describe('no prefill pool', () => {
  it('runs aggregated, or fails clearly when disaggregation is enforced', async () => {
    layout = await startLayout({ prefillWorkers: 0, decodeWorkers: 1, decodeRole: 'aggregated' });
    const chunks = await collect(layout.handle.router.generate(request('agg', prompt(4, 50))));
    expect(chunks[0].disaggregated).toBe(false);
    expect(layout.handle.router.stats().aggregated.no_prefill_workers).toBe(1);
    await layout.close();

    layout = await startLayout(
      { prefillWorkers: 0, decodeWorkers: 1, decodeRole: 'aggregated' },
      { enforceDisagg: true },
    );
    const failure = collect(layout.handle.router.generate(request('enforced', prompt(5, 50))));
    await expect(failure).rejects.toBeInstanceOf(DisaggError);
    await expect(failure).rejects.toMatchObject({ code: 'DISAGG_NO_PREFILL_WORKER', statusCode: 503 });
  });
});

describe('a prefill engine lost mid-request', () => {
  async function lostPrefill(enforceDisagg: boolean) {
    layout = await startLayout(
      {
        prefillWorkers: 1,
        decodeWorkers: 1,
        decodeRole: 'aggregated',
        // About a second of simulated prefill for the long prompt.
        prefillEngine: { speedupRatio: 0.05 },
      },
      { enforceDisagg },
    );
    const router = layout.handle.router;
    const running = collect(router.generate(request('lost', prompt(6, 3000))));
    running.catch(() => undefined);
    await until(() => router.stats().handoffs >= 1, 'the prefill handoff');
    layout.workers.engineOf(layout.workers.prefill[0]).engine.close();
    return { router, running };
  }

  it('falls back to an aggregated run', async () => {
    const { router, running } = await lostPrefill(false);
    const chunks = await running;
    expect(tokensOf(chunks)).toHaveLength(3);
    expect(chunks[0].disaggregated).toBe(false);
    expect(router.stats().prefillFailures).toBe(1);
    expect(router.stats().aggregated.prefill_failed).toBe(1);
  });

  it('fails with a clear error when disaggregation is enforced', async () => {
    const { running } = await lostPrefill(true);
    await expect(running).rejects.toMatchObject({ code: 'DISAGG_PREFILL_FAILED', statusCode: 503 });
    await expect(running).rejects.toThrow(/prefill worker [0-9a-f]+ rank \d.*disaggregation is enforced/);
  });
});

describe('a client that goes away', () => {
  it('cancels the prefill and the decode and releases their load', async () => {
    layout = await startLayout({
      prefillWorkers: 1,
      decodeWorkers: 1,
      prefillEngine: { speedupRatio: 0.05 },
    });
    const router = layout.handle.router;
    const controller = new AbortController();
    const running = collect(router.generate(request('gone', prompt(10, 3000)), controller.signal));
    running.catch(() => undefined);
    await until(() => router.stats().handoffs >= 1, 'the prefill handoff');
    controller.abort(new Error('client disconnected'));
    await expect(running).rejects.toThrow();
    const prefillEngine = layout.workers.engineOf(layout.workers.prefill[0]).engine;
    const decodeEngine = layout.workers.engineOf(layout.workers.decode[0]).engine;
    await until(
      () =>
        prefillEngine.placement('gone')?.finishReason === 'cancelled' &&
        decodeEngine.placement('gone')?.finishReason === 'cancelled',
      'both engines to cancel the request',
    );
    expect(prefillEngine.openRooms).toBe(0);
    for (const load of router.loads()) {
      expect(load.activeRequests).toBe(0);
      expect(load.activePrefillTokens).toBe(0);
    }
  });
});

describe('a decode worker lost mid-stream', () => {
  it('continues the request from its output so far: re-prefilled, decoded elsewhere, usage of the original', async () => {
    layout = await startLayout({
      prefillWorkers: 1,
      decodeWorkers: 2,
      // About 30 ms per output token.
      decodeEngine: { speedupRatio: 0.2 },
    });
    const router = layout.handle.router;
    const tokens = prompt(11, 200);
    const chunks: DisaggChunk[] = [];
    let crashed: bigint | undefined;
    for await (const chunk of router.generate({
      requestId: 'decode-lost',
      tokenIds: tokens,
      sampling: { maxTokens: 30, ignoreEos: true, seed: 3 },
    })) {
      chunks.push(chunk);
      if (crashed === undefined && tokensOf(chunks).length >= 3) {
        crashed = chunk.workerId;
        await (layout.workerById(crashed).runtime as LocalRuntime).simulateCrash();
      }
    }
    expect(tokensOf(chunks)).toHaveLength(30);
    expect(router.stats().decodeContinuations).toBe(1);
    const lastChunk = chunks.at(-1)!;
    expect(lastChunk.finishReason).toBe('length');
    expect(lastChunk.usage).toMatchObject({ promptTokens: 200, completionTokens: 30 });
    expect(lastChunk.workerId).not.toBe(crashed);
    expect(lastChunk.disaggregated).toBe(true);
    // The continuation was prefilled as prompt + the output so far.
    const continuation = layout.placement(lastChunk.prefillWorkerId!, 'decode-lost:cont1')!;
    expect(continuation).toBeDefined();
    const survivor = layout.placement(lastChunk.workerId, 'decode-lost:cont1')!;
    expect(survivor.prefillDpRank).toBe(continuation.dpRank);
  });
});

describe('a backend pool of decode and aggregated workers', () => {
  it('prefilled requests decode on decode workers, short ones prefill on aggregated workers; pins of either kind are honoured', async () => {
    layout = await startLayout({ prefillWorkers: 1, decodeWorkers: 1 }, { minUncachedTokens: 100 });
    const aggregated = await startDisaggregatedWorkers({
      model: MODEL,
      prefillWorkers: 0,
      decodeWorkers: 1,
      decodeRole: 'aggregated',
      engine: { blockSize: BLOCK_SIZE, dataParallelSize: 4, speedupRatio: 0 },
      cluster: layout.workers.cluster,
      transfer: layout.workers.transfer,
      drainTimeoutMs: 0,
    });
    try {
      await waitForPools(layout.handle.watcher, MODEL, { prefill: 1, decode: 2 });
      const router = layout.handle.router;
      const decodeId = layout.workers.decode[0].instanceId;
      const aggregatedId = aggregated.decode[0].instanceId;
      for (let i = 0; i < 6; i++) {
        const long = await collect(router.generate(request(`mixed-long-${i}`, prompt(20 + i, 200))));
        expect(long[0].disaggregated).toBe(true);
        expect(long[0].workerId).toBe(decodeId);
        const short = await collect(router.generate(request(`mixed-short-${i}`, prompt(40 + i, 50))));
        expect(short[0].disaggregated).toBe(false);
        expect(short[0].workerId).toBe(aggregatedId);
      }
      // A short prompt pinned to the decode-only worker is disaggregated rather than refused.
      const pinnedDecode = await collect(
        router.generate(request('mixed-pin-decode', prompt(60, 50), { routing: { workerId: decodeId } })),
      );
      expect(pinnedDecode[0]).toMatchObject({ disaggregated: true, workerId: decodeId });
      // An aggregated worker may be pinned for a prefilled request (it pulls like a decode worker).
      const pinnedAggregated = await collect(
        router.generate(request('mixed-pin-agg', prompt(61, 200), { routing: { workerId: aggregatedId } })),
      );
      expect(pinnedAggregated[0]).toMatchObject({ disaggregated: true, workerId: aggregatedId });
    } finally {
      await aggregated.close();
    }
  });
});
