/** `kvgate serve --prefill-workers N --decode-workers M` as a user runs it. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJsonLossless } from '../../src/frontend/json.ts';
import { KvgateProcess } from '../e2e/cli-process.ts';
import { freePort } from '../support/servers.ts';

let serve: KvgateProcess;
let url: string;

beforeAll(async () => {
  serve = new KvgateProcess([
    'serve',
    '--port',
    String(await freePort()),
    '--prefill-workers',
    '1',
    '--decode-workers',
    '2',
    '--dp-size',
    '2',
    '--speedup-ratio',
    '0',
  ]);
  url = await serve.url(30_000);
}, 40_000);

afterAll(async () => {
  await serve?.stop();
});

describe('kvgate serve --prefill-workers 1 --decode-workers 2', () => {
  it('announces the layout and answers disaggregated, naming both sides', async () => {
    expect(serve.stdout).toMatch(/1 prefill \+ 2 decode workers x 2 ranks/);
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'kvgate-mock', prompt: 'a prompt for the prefill pool', max_tokens: 3 }),
    });
    expect(res.status).toBe(200);
    const body = parseJsonLossless(await res.text()) as { nvext: Record<string, unknown> };
    expect(body.nvext.prefill_worker_id).toBeDefined();
    expect(body.nvext.decode_worker_id).toBe(body.nvext.worker_id);
    expect(body.nvext.prefill_worker_id).not.toBe(body.nvext.decode_worker_id);
    expect([0, 1]).toContain(Number(body.nvext.prefill_dp_rank));
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(
      /kvgate_frontend_disagg_requests_total\{model="kvgate-mock",mode="disaggregated",reason=""\} 1/,
    );
  });
});
