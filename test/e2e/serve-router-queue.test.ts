/**
 * The router queue through HTTP on `kvgate serve`'s pieces: with a queue threshold every rank
 * passes at once, requests beyond the ranks wait in the router (the queued-requests gauge shows
 * them) and all complete once earlier prefills are done.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedServer } from '../../src/cli/embedded-server.ts';
import { startTestServer } from '../helpers/embedded-server.ts';

const MODEL = 'queue-model';
let server: EmbeddedServer;

beforeAll(async () => {
  server = await startTestServer({
    model: MODEL,
    workers: 1,
    engine: { speedupRatio: 0.2 },
    // Busy = more than 0.001 × 2048 ≈ 2 prompt tokens waiting for prefill on the rank.
    routerConfig: { queueThreshold: 0.001 },
  });
});

afterAll(async () => {
  await server?.close();
});

function chat(i: number) {
  return fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: `Question ${i}: ${'why is the sky blue? '.repeat(40)}` }],
      max_tokens: 3,
    }),
  }).then(async (r) => ({
    status: r.status,
    body: (await r.json()) as { usage?: { completion_tokens: number } },
  }));
}

async function queuedGauge(): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const match = new RegExp(`kvgate_frontend_router_queued_requests\\{model="${MODEL}"\\} (\\d+)`).exec(text);
  return match ? Number(match[1]) : -1;
}

describe('router queue on kvgate serve', () => {
  it('parks requests beyond the busy ranks, shows them in /metrics, and completes every one', async () => {
    const answers = Array.from({ length: 6 }, (_, i) => chat(i));
    let most = 0;
    const deadline = Date.now() + 5_000;
    while (most === 0 && Date.now() < deadline) {
      most = Math.max(most, await queuedGauge());
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(most).toBeGreaterThan(0);
    const done = await Promise.all(answers);
    for (const answer of done) {
      expect(answer.status).toBe(200);
      expect(answer.body.usage?.completion_tokens).toBe(3);
    }
    expect(await queuedGauge()).toBe(0);
  });
});
