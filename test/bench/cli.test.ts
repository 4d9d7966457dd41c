import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runReplay } from '../../src/bench/replay.ts';
import { readTrace } from '../../src/bench/trace.ts';
import type { KvRouterConfigInput } from '../../src/routing/config.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'bin', 'kvgate.js');

async function kvgate(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      timeout: 60_000,
      env: { ...process.env, ...env },
    });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

const gen = (out: string, ...flags: string[]) => kvgate(['bench', 'gen', '--out', out, ...flags]);
const replay = (trace: string, ...flags: string[]) => kvgate(['bench', 'replay', '--trace', trace, ...flags]);

const inTemp = tempDir('kvgate-bench-cli-');

describe('kvgate bench', () => {
  it('generates a trace and replays it, ending stdout with the benchmark JSON line', async () => {
    const trace = inTemp('gen.jsonl');
    const generated = await gen(trace, '--arrivals', '40', '--groups', '3', '--seed', '4');
    expect(generated.code).toBe(0);
    expect(generated.stdout).toContain('wrote 40 requests');
    const out = inTemp('report');
    const replayed = await replay(
      trace,
      ...['--workers', '2', '--dp-size', '2', '--policy', 'kv,round-robin,cache-aware'],
      ...['--out', out, '--seed', '3'],
    );
    expect(replayed.stderr).toBe('');
    expect(replayed.code).toBe(0);
    const lines = replayed.stdout.trim().split('\n');
    const last = JSON.parse(lines[lines.length - 1]);
    expect(Object.keys(last).sort()).toEqual(
      [
        'best_peer_ttft_p90_ms',
        'kv_hit_rate',
        'kv_ttft_p90_ms',
        'oracle_hit_rate',
        'replay_speed_x',
        'rr_ttft_p90_ms',
      ].sort(),
    );
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    expect(report.trace.source).toBe('gen.jsonl');
    expect(report.settings.router.blockSize).toBe(64);
    expect(last.kv_ttft_p90_ms).toBe(report.policies[0].ttftMs.p90);
    expect(last.oracle_hit_rate).toBe(report.oracle.hitRate);
    expect(last.best_peer_ttft_p90_ms).toBe(
      Math.min(report.policies[1].ttftMs.p90, report.policies[2].ttftMs.p90),
    );
    expect((await readFile(join(out, 'report.html'), 'utf8')).startsWith('<!doctype html>')).toBe(true);
  });

  it('names the bad line of a trace, or skips and counts bad lines with --skip-bad', async () => {
    const trace = inTemp('bad.jsonl');
    const good = JSON.stringify({ timestamp: 0, input_length: 600, output_length: 3, hash_ids: [1, 2] });
    await writeFile(trace, `${good}\n{"timestamp": 5, "input_length": 600}\n${good}\n`);
    const oneWorker = ['--workers', '1', '--policy', 'kv'];
    const failed = await replay(trace, ...oneWorker);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/bad\.jsonl:2: /);
    const skipped = await replay(trace, ...oneWorker, '--skip-bad');
    expect(skipped.code).toBe(0);
    expect(skipped.stderr).toContain('skipped 1 bad line(s)');
    expect(skipped.stdout).toContain('2/2 done');
  });

  it('routes with the router settings given as flags or KVGATE_ROUTER_* variables', async () => {
    const trace = inTemp('r.jsonl');
    expect((await gen(trace, '--arrivals', '40', '--groups', '4', '--rate', '40')).code).toBe(0);
    // The same replay in process: what the kv policy does with and without the settings.
    const parsed = await readTrace(trace);
    const settings = { overlapScoreWeight: 0, prefillQueueWeight: 3 };
    const kvPolicy = async (routerConfig: KvRouterConfigInput) =>
      (await runReplay(parsed, { source: 'r.jsonl', workers: 2, dpSize: 2, policies: ['kv'], routerConfig }))
        .report.policies;
    const [expected, withDefaults] = await Promise.all([kvPolicy(settings), kvPolicy({})]);
    // On this trace the settings change where requests go (else the check below would prove nothing).
    expect(expected[0].ranks.map((r) => r.requests)).not.toEqual(
      withDefaults[0].ranks.map((r) => r.requests),
    );

    const common = ['--workers', '2', '--dp-size', '2', '--policy', 'kv'];
    const report = async (name: string, flags: string[], env: Record<string, string> = {}) => {
      const out = inTemp(name);
      const result = await kvgate(
        ['bench', 'replay', '--trace', trace, ...common, ...flags, '--out', out],
        env,
      );
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    };
    const [byFlags, byEnv] = await Promise.all([
      report('r-flags', ['--router-kv-overlap-score-weight', '0', '--router-prefill-queue-weight', '3']),
      report('r-env', [], {
        KVGATE_ROUTER_KV_OVERLAP_SCORE_WEIGHT: '0',
        KVGATE_ROUTER_PREFILL_QUEUE_WEIGHT: '3',
      }),
    ]);
    for (const r of [byFlags, byEnv]) {
      expect(r.settings.router).toMatchObject(settings);
      expect(r.policies).toEqual(expected);
    }
  });

  it("refuses a router block size other than the engines' and an unknown policy", async () => {
    const trace = inTemp('bad-flags.jsonl');
    await gen(trace, '--arrivals', '10');
    const mismatch = await replay(trace, '--router-block-size', '16');
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/differs from --block-size 64/);
    const badPolicy = await replay(trace, '--policy', 'kv,bogus');
    expect(badPolicy.code).not.toBe(0);
    expect(badPolicy.stderr).toMatch(/unknown policy "bogus"/);
  });
});
