/**
 * The distributed deployment end to end, every piece a real process: nats-server (JetStream),
 * etcd, two `kvgate worker` processes (4 data-parallel ranks each) and `kvgate frontend`
 * processes discovering them. Load spreads over workers and ranks; a worker killed with SIGKILL
 * mid-stream has its streams migrated (every one completes with the right token count), and with
 * `--migration-limit 0` the streams end with a clear error event instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvgateCluster } from '../helpers/kvgate-cluster.ts';
import type { KvgateProcess } from './cli-process.ts';
import { type StreamResult, streamChat } from './sse-client.ts';

const MODEL = 'dist-model';

let cluster: KvgateCluster;
const workers: { proc: KvgateProcess; id: bigint }[] = [];
let url: string;
let urlNoMigration: string;

const startWorker = (seed: number) =>
  cluster.startWorker([
    '--model',
    MODEL,
    '--dp-size',
    '4',
    '--speedup-ratio',
    '1',
    '--seed',
    String(seed),
    '--lease-ttl',
    '2',
  ]);

/** Instance ids the frontend's /health lists. */
async function healthInstances(base: string): Promise<bigint[]> {
  const text = await (await fetch(`${base}/health`)).text();
  const top = text.slice(text.lastIndexOf('"instances"'));
  return [...top.matchAll(/"instance_id":(\d+)/g)].map((m) => BigInt(m[1]));
}

async function waitUntil(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  cluster = await KvgateCluster.start('e2edist');
  const started = await Promise.all([
    startWorker(1),
    startWorker(2),
    cluster.startFrontend(),
    cluster.startFrontend(['--migration-limit', '0']),
  ]);
  workers.push(started[0], started[1]);
  ({ url } = started[2]);
  ({ url: urlNoMigration } = started[3]);
  for (const base of [url, urlNoMigration])
    await waitUntil('both workers in discovery', async () => (await healthInstances(base)).length === 2);
}, 90_000);

afterAll(async () => {
  await cluster?.dispose();
});

const chat = (content: string, maxTokens: number) => ({
  model: MODEL,
  messages: [{ role: 'user', content }],
  max_tokens: maxTokens,
});

describe('kvgate frontend + 2 kvgate workers over NATS and etcd', () => {
  it('100 concurrent chat requests all succeed, spread over both workers and several ranks each', async () => {
    const answers = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const response = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(chat(`Request number ${i}: tell me about topic ${i * 7919}.`, 8)),
        });
        const text = await response.text();
        return { status: response.status, text };
      }),
    );
    const ranksByWorker = new Map<bigint, Set<number>>();
    for (const { status, text } of answers) {
      expect(status, text).toBe(200);
      const body = JSON.parse(text) as { usage: { completion_tokens: number }; nvext: { dp_rank: number } };
      expect(body.usage.completion_tokens).toBe(8);
      const workerId = BigInt(/"worker_id":(\d+)/.exec(text)![1]);
      const ranks = ranksByWorker.get(workerId) ?? new Set<number>();
      ranks.add(body.nvext.dp_rank);
      ranksByWorker.set(workerId, ranks);
    }
    expect([...ranksByWorker.keys()].sort()).toEqual(workers.map((w) => w.id).sort());
    for (const ranks of ranksByWorker.values()) expect(ranks.size).toBeGreaterThanOrEqual(2);
  });

  it('bad input end to end: a rank outside the worker range is a 400, an unknown model a 404', async () => {
    const ask = async (body: Record<string, unknown>) => {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as { error: Record<string, unknown> } };
    };
    const rank = await ask({
      ...chat('Hi', 2),
      nvext: { backend_instance_id: `${workers[0].id}`, dp_rank: 4 },
    });
    expect(rank.status).toBe(400);
    expect(rank.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_dp_rank' });
    const model = await ask({ ...chat('Hi', 2), model: 'not-served' });
    expect(model.status).toBe(404);
    expect(model.body.error).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it('kill -9 of a worker during 20 streams: every stream migrates and completes with the right token count', async () => {
    const MAX = 120;
    const live: StreamResult[] = [];
    const streams = Array.from({ length: 20 }, (_, i) =>
      streamChat(url, chat(`Stream ${i} about subject ${i * 104729}.`, MAX), (r) => {
        live[i] = r;
      }),
    );
    await waitUntil(
      'every stream to be under way',
      () => live.filter((r) => r !== undefined && r.contentChunks >= 3).length === 20,
    );
    // Kill the worker that serves the most streams right now.
    const count = (id: bigint) => live.filter((r) => r.workerId === id).length;
    const victim = count(workers[0].id) >= count(workers[1].id) ? workers[0] : workers[1];
    const survivor = victim === workers[0] ? workers[1] : workers[0];
    expect(count(victim.id)).toBeGreaterThan(0);
    const unfinished = live.filter((r) => r.workerId === victim.id && r.finishReason === undefined).length;
    victim.proc.kill('SIGKILL');

    const results = await Promise.all(streams);
    for (const r of results) {
      expect(r.error, JSON.stringify(r.error)).toBeUndefined();
      expect(r.done).toBe(true);
      expect(r.finishReason).toBe('length');
      expect(r.completionTokens).toBe(MAX);
    }
    // The killed worker's streams were cut mid-way and finished on the other worker.
    expect(unfinished).toBeGreaterThan(0);
    await waitUntil('the killed worker to leave discovery', async () => {
      const ids = await healthInstances(urlNoMigration);
      return ids.length === 1 && ids[0] === survivor.id;
    });
  });

  it('with --migration-limit 0 a killed worker ends its streams with a clear error event, never a hang', async () => {
    const survivor = workers.find((w) => w.proc.running)!;
    const live: StreamResult[] = [];
    const streams = Array.from({ length: 5 }, (_, i) =>
      streamChat(urlNoMigration, chat(`Doomed stream ${i}.`, 2000), (r) => {
        live[i] = r;
      }),
    );
    await waitUntil(
      'every stream to be under way',
      () => live.filter((r) => r !== undefined && r.contentChunks >= 2).length === 5,
    );
    expect(live.every((r) => r.workerId === survivor.id)).toBe(true);
    const killedAt = Date.now();
    survivor.proc.kill('SIGKILL');
    const results = await Promise.all(streams);
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(r.finishReason).toBeUndefined();
      expect(r.error?.code).toBe('worker_lost');
      expect(r.error?.message).toMatch(/lost/);
      expect(r.error?.message).toMatch(/migration is off/);
      expect(r.done).toBe(true);
    }
  });
});
