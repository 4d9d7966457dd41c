/**
 * Through the OpenAI frontend over HTTP: nvext prefill pins on a disaggregated embedded server, and
 * Dynamo's `test_router_decisions` scenario on an aggregated one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedServer, startEmbeddedServer } from '../../src/cli/embedded-server.ts';
import { type DisaggEmbeddedServer, startDisaggEmbeddedServer } from '../../src/cluster/disagg/embedded.ts';
import { parseJsonLossless } from '../../src/frontend/json.ts';
import { BACKEND_COMPONENT } from '../../src/protocol/wire.ts';
import { BLOCK_SIZE, MODEL, prompt } from './helpers.ts';

interface Completion {
  id: string;
  choices: { text: string }[];
  nvext?: Record<string, unknown>;
  error?: { message: string; code: string | null };
}

async function complete(
  url: string,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Completion }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? `${v}` : v)),
  });
  const text = await res.text();
  return { status: res.status, body: parseJsonLossless(text) as Completion };
}

const asBig = (v: unknown) => (v === undefined ? undefined : BigInt(v as number | bigint));

describe('nvext prefill pins over HTTP (4 prefill + 4 decode workers, dp 4)', () => {
  let server: DisaggEmbeddedServer;

  beforeAll(async () => {
    server = await startDisaggEmbeddedServer({
      model: MODEL,
      prefillWorkers: 4,
      decodeWorkers: 4,
      engine: { blockSize: BLOCK_SIZE, dataParallelSize: 4, speedupRatio: 0, numGpuBlocks: 2048 },
      port: 0,
      drainTimeoutMs: 0,
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('progressive-prefix requests pinned to prefill_worker_id + dp_rank all prefill there, never on a decode worker', async () => {
    const pinned = server.workers.prefill[2];
    const decodeIds = new Set(server.workers.decode.map((w) => w.instanceId));
    const base = prompt(42, 16 * 12);
    for (let step = 1; step <= 8; step++) {
      const tokens = base.slice(0, 16 + step * 16);
      const { status, body } = await complete(server.url, {
        model: MODEL,
        prompt: tokens,
        max_tokens: 2,
        nvext: { prefill_worker_id: pinned.instanceId, dp_rank: 1 },
      });
      expect(status, JSON.stringify(body.error)).toBe(200);
      const nvext = body.nvext!;
      expect(asBig(nvext.prefill_worker_id)).toBe(pinned.instanceId);
      expect(Number(nvext.prefill_dp_rank)).toBe(1);
      const decodeWorker = asBig(nvext.decode_worker_id)!;
      expect(decodeIds.has(decodeWorker)).toBe(true);
      expect(decodeWorker).not.toBe(pinned.instanceId);
      const requestId = `${body.id}-0`;
      const prefillPlacement = server.workers.engineOf(pinned).engine.placement(requestId)!;
      expect(prefillPlacement.dpRank).toBe(1);
      const decode = server.workers.decode.find((w) => w.instanceId === decodeWorker)!;
      const decodePlacement = server.workers.engineOf(decode).engine.placement(requestId)!;
      expect(decodePlacement.prefillWorkerId).toBe(pinned.instanceId);
      expect(decodePlacement.prefillDpRank).toBe(1);
      expect(decodePlacement.dpRank).toBe(Number(nvext.decode_dp_rank));
    }
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toContain(
      `kvgate_frontend_disagg_prefill_rank_requests_total{model="${MODEL}",worker_id="${pinned.instanceId}",dp_rank="1"} 8`,
    );
    expect(metrics).toMatch(
      /kvgate_frontend_disagg_requests_total\{model="disagg-test",mode="disaggregated",reason=""\} 8/,
    );
  });

  it('streams name the prefill and decode (worker, rank) on the first chunk; query_instance_id answers both', async () => {
    const tokens = prompt(44, 100);
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: tokens, max_tokens: 3, stream: true }),
    });
    expect(res.status).toBe(200);
    const events = (await res.text())
      .split('\n')
      .filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]')
      .map((line) => parseJsonLossless(line.slice(6)) as Completion);
    const echo = events.find((e) => e.nvext !== undefined)!.nvext!;
    const prefillIds = server.workers.prefill.map((w) => w.instanceId);
    const decodeIds = server.workers.decode.map((w) => w.instanceId);
    expect(prefillIds).toContain(asBig(echo.prefill_worker_id));
    expect(decodeIds).toContain(asBig(echo.decode_worker_id));
    expect(Number(echo.prefill_dp_rank)).toBeGreaterThanOrEqual(0);
    expect(Number(echo.decode_dp_rank)).toBeGreaterThanOrEqual(0);

    const query = await complete(server.url, {
      model: MODEL,
      prompt: tokens,
      max_tokens: 3,
      nvext: { annotations: ['query_instance_id'] },
    });
    expect(query.status).toBe(200);
    const decision = query.body.nvext!;
    expect(prefillIds).toContain(asBig(decision.prefill_worker_id));
    expect(decodeIds).toContain(asBig(decision.decode_worker_id));
    expect(Number.isInteger(Number(decision.prefill_dp_rank))).toBe(true);
  });

  it('a decode worker pinned as prefill worker, and an unknown one, are clear 4xx errors', async () => {
    const tokens = prompt(43, 64);
    const wrong = await complete(server.url, {
      model: MODEL,
      prompt: tokens,
      max_tokens: 2,
      nvext: { prefill_worker_id: server.workers.decode[0].instanceId },
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error?.code).toBe('disagg_wrong_role');
    const unknown = await complete(server.url, {
      model: MODEL,
      prompt: tokens,
      max_tokens: 2,
      nvext: { prefill_worker_id: 12345 },
    });
    expect(unknown.status).toBe(404);
    const badRank = await complete(server.url, {
      model: MODEL,
      prompt: tokens,
      max_tokens: 2,
      nvext: { prefill_worker_id: server.workers.prefill[0].instanceId, prefill_dp_rank: 4 },
    });
    expect(badRank.status).toBe(400);
  });
});

describe("Dynamo's router decisions scenario over HTTP (aggregated, 2 workers x dp 4)", () => {
  let server: EmbeddedServer;

  beforeAll(async () => {
    server = await startEmbeddedServer({
      model: MODEL,
      workers: 2,
      engine: {
        dataParallelSize: 4,
        blockSize: BLOCK_SIZE,
        numGpuBlocks: 1024,
        maxNumSeqs: 64,
        maxNumBatchedTokens: 4096,
        speedupRatio: 0,
      },
      port: 0,
      drainTimeoutMs: 0,
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('[A,C,D,F] goes to a/dp0 (longer prefix), [A,C,G] to b/dp1 (smaller tree); 5 and 4 stored events', async () => {
    const [a, b] = server.workers.map((w) => w.instanceId);
    const blocks = Object.fromEntries(
      ['A', 'B', 'C', 'D', 'E', 'F', 'G'].map((name, i) => [name, prompt(9000 + i, BLOCK_SIZE)]),
    ) as Record<string, number[]>;
    const tokens = (names: string) => [...names].flatMap((n) => blocks[n]);
    const router = server.frontend.watcher.routerFor(MODEL, BACKEND_COMPONENT)!;
    const stored = (workerId: bigint, dpRank: number) =>
      router
        .dump()
        .filter((e) => e.workerId === workerId && e.event.dpRank === dpRank && e.event.data.kind === 'stored')
        .length;
    const waitStored = async (workerId: bigint, dpRank: number, count: number) => {
      const deadline = Date.now() + 5_000;
      while (stored(workerId, dpRank) < count) {
        if (Date.now() > deadline)
          throw new Error(
            `router holds ${stored(workerId, dpRank)} blocks of (${workerId}, ${dpRank}), want ${count}`,
          );
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const run = async (names: string, nvext?: Record<string, unknown>) => {
      const { status, body } = await complete(server.url, {
        model: MODEL,
        prompt: tokens(names),
        max_tokens: 2,
        ...(nvext ? { nvext } : {}),
      });
      expect(status, JSON.stringify(body.error)).toBe(200);
      return { workerId: asBig(body.nvext!.worker_id)!, dpRank: Number(body.nvext!.dp_rank) };
    };

    expect(await run('AB', { backend_instance_id: a, dp_rank: 0 })).toEqual({ workerId: a, dpRank: 0 });
    await waitStored(a, 0, 2);
    expect(await run('ACD', { backend_instance_id: a, dp_rank: 0 })).toEqual({ workerId: a, dpRank: 0 });
    await waitStored(a, 0, 4);
    expect(await run('ACE', { backend_instance_id: b, dp_rank: 1 })).toEqual({ workerId: b, dpRank: 1 });
    await waitStored(b, 1, 3);

    expect(await run('ACDF')).toEqual({ workerId: a, dpRank: 0 });
    await waitStored(a, 0, 5);
    expect(await run('ACG')).toEqual({ workerId: b, dpRank: 1 });
    await waitStored(b, 1, 4);

    expect(stored(a, 0)).toBe(5);
    expect(stored(b, 1)).toBe(4);
    for (const [worker, rank] of [
      [a, 1],
      [a, 2],
      [a, 3],
      [b, 0],
      [b, 2],
      [b, 3],
    ] as const)
      expect(stored(worker, rank)).toBe(0);
  });
});
