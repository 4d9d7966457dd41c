import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/bench/generate.ts';
import { runReplay } from '../../src/bench/replay.ts';
import { headline, writeReport } from '../../src/bench/report.ts';
import type { ParsedTrace, TraceRequest } from '../../src/bench/trace.ts';
import { PolynomialPerfModel } from '../../src/engine/perf-model.ts';
import { POLICY_NAMES } from '../../src/routing/policy.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const trace = (requests: TraceRequest[]): ParsedTrace => ({ requests, skipped: [] });

const inTemp = tempDir('kvgate-replay-');

describe('trace replay', () => {
  it('gives byte-identical report.json for the same seed', async () => {
    const requests = generateTrace({
      seed: 7,
      arrivals: 60,
      rate: 40,
      groups: 3,
      prefixBlocks: 4,
      conversations: 2,
    });
    const options = { source: 'gen.jsonl', workers: 2, dpSize: 2, seed: 11, rate: 2 } as const;
    const a = await runReplay(trace(requests), options);
    const b = await runReplay(trace(requests), options);
    const pa = await writeReport(inTemp('a'), a.report);
    const pb = await writeReport(inTemp('b'), b.report);
    const ja = await readFile(pa.json);
    expect(ja.equals(await readFile(pb.json))).toBe(true);
    expect((await readFile(pa.html)).equals(await readFile(pb.html))).toBe(true);
    const report = JSON.parse(ja.toString('utf8'));
    expect(report.policies.map((p: { policy: string }) => p.policy)).toEqual([...POLICY_NAMES]);
    for (const p of report.policies) {
      expect(p.completed).toBe(60);
      expect(p.failed).toBe(0);
      expect(p.kvEventErrors).toBe(0);
      expect(p.ranks).toHaveLength(4);
      expect(p.ranks.reduce((n: number, r: { requests: number }) => n + r.requests, 0)).toBe(60);
    }
    // No wall-clock figure or date leaks into the report.
    expect(ja.toString('utf8')).not.toMatch(/wall|20\d\d-\d\d-\d\d/i);
    // The random policy depends on the seed.
    const c = await runReplay(trace(requests), { ...options, seed: 12, policies: ['random'] });
    const randomA = report.policies.find((p: { policy: string }) => p.policy === 'random');
    expect(c.report.policies[0].ranks.map((r) => r.requests)).not.toEqual(
      randomA.ranks.map((r: { requests: number }) => r.requests),
    );
  });

  it('never beats the oracle, and kv beats round-robin on a shared-prefix workload', async () => {
    // 16 groups × 4096-token system prompts; a rank holds ~6 of them (400 blocks of 64), so spraying
    // every group over every rank (round-robin) thrashes the caches while kv keeps groups together.
    const requests = generateTrace({
      seed: 3,
      arrivals: 200,
      rate: 40,
      groups: 16,
      prefixBlocks: 8,
      suffixBlocks: 1,
      outputLength: 16,
    });
    const { report } = await runReplay(trace(requests), {
      source: 'shared-prefix',
      workers: 4,
      dpSize: 1,
      numGpuBlocks: 400,
      seed: 1,
    });
    const by = new Map(report.policies.map((p) => [p.policy, p]));
    for (const p of report.policies) {
      expect(p.completed).toBe(200);
      expect(p.hitRate).toBeLessThanOrEqual(report.oracle.hitRate);
      expect(p.cachedTokens).toBeLessThanOrEqual(report.oracle.hitTokens);
    }
    const kv = by.get('kv')!;
    const rr = by.get('round-robin')!;
    expect(kv.hitRate).toBeGreaterThan(rr.hitRate + 0.2);
    expect(kv.ttftMs.p90).toBeLessThan(rr.ttftMs.p90);
    expect(kv.hitRate).toBeGreaterThan(0.8 * report.oracle.hitRate);
    const line = headline(report, 1);
    expect(line.kv_hit_rate).toBe(kv.hitRate);
    expect(line.rr_ttft_p90_ms).toBe(rr.ttftMs.p90);
    expect(line.best_peer_ttft_p90_ms).toBe(
      Math.min(...report.policies.filter((p) => p.policy !== 'kv').map((p) => p.ttftMs.p90)),
    );
  });

  it('gives a lone request on an idle system the perf model time of its prefill passes', async () => {
    const perf = new PolynomialPerfModel();
    const numGpuBlocks = 16_384;
    const blockSize = 64;
    const totalKv = numGpuBlocks * blockSize;
    const one = (inputLength: number): ParsedTrace =>
      trace([
        {
          timestamp: 1234,
          inputLength,
          outputLength: 4,
          hashIds: Array.from({ length: Math.ceil(inputLength / 512) }, (_, i) => i),
        },
      ]);
    for (const policy of POLICY_NAMES) {
      const { report } = await runReplay(one(3000), {
        source: 'one',
        workers: 3,
        dpSize: 2,
        policies: [policy],
      });
      const p = report.policies[0];
      // One pass prefills the prompt and samples the first token (a decode step of a batch of one).
      const expected = perf.prefillMs(3000) + perf.decodeMs(3000, totalKv, 1);
      expect(p.ttftMs.p50).toBeCloseTo(expected, 2);
      expect(p.ttftMs.p99).toBeCloseTo(expected, 2);
      expect(p.hitRate).toBe(0);
    }
    // Chunked prefill: 20000 tokens in passes of at most 8192 batched tokens.
    const { report } = await runReplay(one(20_000), { source: 'one', workers: 1, policies: ['kv'] });
    const chunked =
      2 * perf.prefillMs(8192) + perf.prefillMs(20_000 - 2 * 8192) + perf.decodeMs(20_000, totalKv, 1);
    expect(report.policies[0].ttftMs.p50).toBeCloseTo(chunked, 2);
    // The speed-up ratio divides every pass.
    const fast = await runReplay(one(3000), { source: 'one', workers: 1, policies: ['kv'], speedupRatio: 4 });
    expect(fast.report.policies[0].ttftMs.p50).toBeCloseTo(
      (perf.prefillMs(3000) + perf.decodeMs(3000, totalKv, 1)) / 4,
      2,
    );
  });

  it('scales arrivals by the rate and reports the trace it replayed', async () => {
    const requests = generateTrace({ seed: 9, arrivals: 20, rate: 5 });
    const slow = await runReplay(trace(requests), {
      source: 't',
      workers: 2,
      rate: 1,
      policies: ['round-robin'],
    });
    const fast = await runReplay(trace(requests), {
      source: 't',
      workers: 2,
      rate: 4,
      policies: ['round-robin'],
    });
    const span = requests[requests.length - 1].timestamp - requests[0].timestamp;
    expect(slow.report.trace.recordedDurationMs).toBeCloseTo(span, 3);
    expect(fast.report.trace.replayedDurationMs).toBeCloseTo(span / 4, 3);
    expect(fast.report.policies[0].makespanMs).toBeLessThan(slow.report.policies[0].makespanMs);
    expect(slow.report.trace.promptTokens).toBe(requests.reduce((n, r) => n + r.inputLength, 0));
    expect(slow.report.policies[0].promptTokens).toBe(slow.report.trace.promptTokens);
  });

  it('fails only the requests an engine refuses', async () => {
    const requests: TraceRequest[] = [
      { timestamp: 0, inputLength: 600, outputLength: 2, hashIds: [1, 2] },
      {
        timestamp: 1,
        inputLength: 5000,
        outputLength: 2,
        hashIds: Array.from({ length: 10 }, (_, i) => 10 + i),
      },
      { timestamp: 2, inputLength: 600, outputLength: 2, hashIds: [1, 3] },
    ];
    // 20 blocks of 64 tokens hold the short prompts, not the 5000-token one.
    const { report } = await runReplay(trace(requests), { source: 't', workers: 1, numGpuBlocks: 20 });
    for (const p of report.policies) {
      expect(p.completed).toBe(2);
      expect(p.failed).toBe(1);
      expect(p.promptTokens).toBe(1200);
    }
  });

  it('rejects bad settings', async () => {
    const t = trace(generateTrace({ arrivals: 2 }));
    await expect(runReplay(t, { source: 't', workers: 0 })).rejects.toThrow(RangeError);
    await expect(runReplay(t, { source: 't', rate: 0 })).rejects.toThrow(RangeError);
    await expect(runReplay(t, { source: 't', seed: -1 })).rejects.toThrow(/seed/);
    await expect(runReplay(t, { source: 't', routerConfig: { blockSize: 16 } })).rejects.toThrow(
      /block size/,
    );
    await expect(runReplay(t, { source: 't', policies: ['nope'] })).rejects.toThrow(/unknown policy/);
  });
});
