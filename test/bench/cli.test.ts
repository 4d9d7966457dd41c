import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'bin', 'kvgate.js');

async function kvgate(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { timeout: 60_000 });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kvgate-bench-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('kvgate bench', () => {
  it('generates a trace and replays it, ending stdout with the benchmark JSON line', async () => {
    const trace = join(dir, 'gen.jsonl');
    const gen = await kvgate(
      'bench',
      'gen',
      '--out',
      trace,
      '--arrivals',
      '40',
      '--groups',
      '3',
      '--seed',
      '4',
    );
    expect(gen.code).toBe(0);
    expect(gen.stdout).toContain('wrote 40 requests');
    const out = join(dir, 'report');
    const replay = await kvgate(
      'bench',
      'replay',
      '--trace',
      trace,
      '--workers',
      '2',
      '--dp-size',
      '2',
      '--policy',
      'kv,round-robin,cache-aware',
      '--out',
      out,
      '--seed',
      '3',
    );
    expect(replay.stderr).toBe('');
    expect(replay.code).toBe(0);
    const lines = replay.stdout.trim().split('\n');
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
    const trace = join(dir, 'bad.jsonl');
    const good = JSON.stringify({ timestamp: 0, input_length: 600, output_length: 3, hash_ids: [1, 2] });
    await writeFile(trace, `${good}\n{"timestamp": 5, "input_length": 600}\n${good}\n`);
    const failed = await kvgate('bench', 'replay', '--trace', trace, '--workers', '1', '--policy', 'kv');
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/bad\.jsonl:2: /);
    const skipped = await kvgate(
      'bench',
      'replay',
      '--trace',
      trace,
      '--workers',
      '1',
      '--policy',
      'kv',
      '--skip-bad',
    );
    expect(skipped.code).toBe(0);
    expect(skipped.stderr).toContain('skipped 1 bad line(s)');
    expect(skipped.stdout).toContain('2/2 done');
  });

  it('passes router settings to the policies and rejects bad flags', async () => {
    const trace = join(dir, 'r.jsonl');
    await kvgate('bench', 'gen', '--out', trace, '--arrivals', '10');
    const out = join(dir, 'r');
    const ok = await kvgate(
      'bench',
      'replay',
      '--trace',
      trace,
      '--workers',
      '2',
      '--policy',
      'kv',
      '--router-kv-overlap-score-weight',
      '2.5',
      '--out',
      out,
    );
    expect(ok.code).toBe(0);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    expect(report.settings.router.overlapScoreWeight).toBe(2.5);
    const mismatch = await kvgate('bench', 'replay', '--trace', trace, '--router-block-size', '16');
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(/differs from --block-size 64/);
    const badPolicy = await kvgate('bench', 'replay', '--trace', trace, '--policy', 'kv,bogus');
    expect(badPolicy.code).not.toBe(0);
    expect(badPolicy.stderr).toMatch(/unknown policy "bogus"/);
  });
});
