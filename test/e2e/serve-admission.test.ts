/**
 * Admission and cluster changes through HTTP on `kvgate serve`'s pieces: busy thresholds (503 when
 * every (worker, rank) is over them, settable at run time), API keys, and a worker that leaves
 * (its dashboard rows and gauge series go, requests keep being served by the others).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedServer } from '../../src/cli/embedded-server.ts';
import { startTestServer } from '../helpers/embedded-server.ts';
import { type StreamResult, streamChat } from './sse-client.ts';

const MODEL = 'admission-model';
const KEY = 'sk-e2e-admission';
let server: EmbeddedServer;
const auth = { authorization: `Bearer ${KEY}` };

beforeAll(async () => {
  server = await startTestServer({ model: MODEL, workers: 2, apiKeys: [KEY] });
});

afterAll(async () => {
  await server?.close();
});

async function post(path: string, body: unknown, headers: Record<string, string> = auth) {
  const response = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as AnswerBody };
}

interface AnswerBody {
  readonly error?: { type: string; code: string | null };
  readonly model?: string;
  readonly active_decode_blocks_threshold?: number | null;
}

const chat = { model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 2 };

describe('admission on kvgate serve', () => {
  it('requires the API key', async () => {
    expect((await post('/v1/chat/completions', chat, {})).status).toBe(401);
    expect((await post('/v1/chat/completions', chat)).status).toBe(200);
  });

  it('answers 503 once every (worker, rank) is over the busy threshold, and serves again below it', async () => {
    // One long stream pinned on every (worker, rank): each rank has active decode blocks.
    const aborts: AbortController[] = [];
    const live: StreamResult[] = [];
    const pins = server.workers.flatMap((w) => [0, 1].map((rank) => ({ worker: w.instanceId, rank })));
    const streams = pins.map(({ worker, rank }, i) => {
      const controller = new AbortController();
      aborts.push(controller);
      return streamChat(
        server.url,
        {
          ...chat,
          // Several full KV blocks, so each pinned rank has active decode blocks.
          messages: [{ role: 'user', content: 'Tell me a long story about the sea. '.repeat(12) }],
          max_tokens: 3000,
          nvext: { backend_instance_id: `${worker}`, dp_rank: rank },
        },
        (r) => {
          live[i] = r;
        },
        { headers: auth, signal: controller.signal },
      ).catch(() => undefined);
    });
    try {
      const deadline = Date.now() + 10_000;
      while (live.filter((r) => r?.contentChunks > 0).length < pins.length) {
        if (Date.now() > deadline) throw new Error('the pinned streams did not start');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const set = await post('/busy_threshold', { model: MODEL, active_decode_blocks_threshold: 0 });
      expect(set.body).toMatchObject({ model: MODEL, active_decode_blocks_threshold: 0 });
      const busy = await post('/v1/chat/completions', chat);
      expect(busy.status).toBe(503);
      expect(busy.body.error).toMatchObject({ type: 'service_unavailable', code: 'busy' });
    } finally {
      const off = await post('/busy_threshold', { model: MODEL, active_decode_blocks_threshold: null });
      expect(off.body.active_decode_blocks_threshold).toBeNull();
      for (const controller of aborts) controller.abort();
    }
    expect((await post('/v1/chat/completions', chat)).status).toBe(200);
    await Promise.all(streams);
  });

  it('a worker that leaves drops out of the dashboard and the gauges; the other keeps serving', async () => {
    const [leaving, staying] = server.workers;
    const metricsOf = async () => (await fetch(`${server.url}/metrics`, { headers: auth })).text();
    expect(await metricsOf()).toContain(`worker_id="${leaving.instanceId}"`);
    await leaving.shutdown({ drainTimeoutMs: 1_000 });
    const deadline = Date.now() + 10_000;
    while ((await metricsOf()).includes(`worker_id="${leaving.instanceId}"`)) {
      if (Date.now() > deadline) throw new Error('the gauges still show the worker that left');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const metrics = await metricsOf();
    expect(metrics).toContain(`worker_id="${staying.instanceId}",dp_rank="1"`);
    const dashboard = await (await fetch(`${server.url}/dashboard/data`, { headers: auth })).text();
    expect(dashboard).not.toContain(`${leaving.instanceId}`);
    expect(dashboard).toContain(`"workerId":${staying.instanceId}`);
    for (let i = 0; i < 3; i++) {
      const answer = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify(chat),
      });
      expect(answer.status).toBe(200);
      expect(await answer.text()).toContain(`"worker_id":${staying.instanceId}`);
    }
  });
});
