/**
 * `kvgate serve` as a user runs it: the README's curl commands, the dashboard in headless
 * Chromium, clean shutdown on SIGTERM, and usage errors (exit code 2).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.ts';
import { freePort } from '../support/servers.ts';
import { KvgateProcess, runKvgate } from './cli-process.ts';

const exec = promisify(execFile);
const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
const DOCUMENTED = '127.0.0.1:8000';

let serve: KvgateProcess;
let url: string;
let port: number;

beforeAll(async () => {
  port = await freePort();
  serve = new KvgateProcess(['serve', '--port', String(port)]);
  url = await serve.url(30_000);
});

afterAll(async () => {
  serve?.kill('SIGKILL');
});

/** The code block right after `heading` in README.md, one command per line (comments dropped). */
function readmeCommands(heading: string, occurrence = 0): string[] {
  const section = README.slice(README.indexOf(heading));
  const blocks = [...section.matchAll(/```\n([\s\S]*?)```/g)];
  return blocks[occurrence][1].split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'));
}

async function sh(command: string): Promise<string> {
  const localized = command.replaceAll(DOCUMENTED, `127.0.0.1:${port}`);
  expect(localized).not.toBe(command); // the README names the documented address
  const { stdout } = await exec('bash', ['-c', localized], { timeout: 20_000 });
  return stdout;
}

async function instances(): Promise<{ workerId: string; dpSize: number }[]> {
  const text = await (await fetch(`${url}/health`)).text();
  const health = JSON.parse(text.replace(/"instance_id":(\d+)/g, '"instance_id":"$1"')) as {
    instances: { instance_id: string; data_parallel_size: number }[];
  };
  return health.instances.map((i) => ({ workerId: i.instance_id, dpSize: i.data_parallel_size }));
}

describe('kvgate serve, spawned', () => {
  it('prints its URL on the documented default host', () => {
    expect(url).toBe(`http://127.0.0.1:${port}`);
  });

  it("the README's curl commands work as written (chat, streamed chat)", async () => {
    expect(README).toContain('npm ci && npm start\n./scripts/test');
    const [unary, streamed] = readmeCommands('## Use it');
    expect(unary).toMatch(/^curl /);
    const answer = JSON.parse(await sh(unary)) as {
      object: string;
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
    };
    expect(answer.object).toBe('chat.completion');
    expect(answer.usage.completion_tokens).toBe(16);
    expect(answer.choices[0].message.content.length).toBeGreaterThan(0);

    const events = (await sh(streamed)).split('\n\n').filter((e) => e.trim() !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, '')));
    expect(chunks[0].object).toBe('chat.completion.chunk');
    expect(chunks.at(-1).choices[0].finish_reason).toBe('length');
  });

  it("the README's nvext pin and query commands work (WORKER_ID from /health)", async () => {
    const [pin, query] = readmeCommands("Dynamo's `nvext` extension");
    const [first] = await instances();
    const pinned = await sh(pin.replace('WORKER_ID', first.workerId));
    expect(pinned).toContain(`"nvext":{"worker_id":${first.workerId},"dp_rank":2}`);
    const decision = await sh(query);
    expect(decision).toMatch(/"nvext":\{"worker_id":\d+,"dp_rank":[0-3],"overlap_blocks":\d+/);
    expect(JSON.parse(decision).choices).toEqual([]);
  });

  describe('dashboard in headless Chromium', () => {
    let browser: Browser;
    beforeAll(async () => {
      browser = await launchChromium();
    });
    afterAll(async () => {
      await browser?.close();
    });

    it('shows every worker and every rank', async () => {
      const expected = (await instances()).flatMap((w) =>
        Array.from({ length: w.dpSize }, (_, rank) => `${w.workerId}/${rank}`),
      );
      expect(expected).toHaveLength(8); // the defaults: 2 workers x 4 ranks
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${url}/dashboard`);
      await page.waitForSelector(`#rows tr:nth-child(${expected.length})`);
      const shown = await page.$$eval('#rows tr', (rows) =>
        rows.map((tr) => `${tr.getAttribute('data-worker')}/${tr.getAttribute('data-rank')}`),
      );
      expect(shown.sort()).toEqual(expected.sort());
      const firstRow = await page.$$eval('#rows tr:first-child td', (tds) => tds.map((td) => td.textContent));
      expect(firstRow[1]).toBe('kvgate-mock');
      expect(firstRow[2]).toBe('aggregated');
      expect(errors).toEqual([]);
      await page.close();
    });
  });

  it('SIGTERM shuts it down cleanly (exit code 0)', async () => {
    const result = await serve.stop();
    expect(result).toEqual({ code: 0, signal: null });
    expect(serve.stderr).toContain('SIGTERM: shutting down');
  });
});

describe('kvgate serve usage errors exit with code 2', () => {
  it('a bad flag, a bad environment value, a conflicting router block size', async () => {
    const [flag, env, conflict] = await Promise.all([
      runKvgate(['serve', '--dp-size', '0']),
      runKvgate(['serve'], { KVGATE_SPEEDUP_RATIO: 'fast' }),
      runKvgate(['serve', '--block-size', '32', '--router-block-size', '16']),
    ]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("option '--dp-size <n>' argument '0' is invalid");
    expect(env.code).toBe(2);
    expect(env.stderr).toContain("from env 'KVGATE_SPEEDUP_RATIO' is invalid");
    expect(conflict.code).toBe(2);
    expect(conflict.stderr).toContain("--router-block-size 16 differs from the workers' --block-size 32");
  });
});
