/**
 * The adapters' HTTP side: server-info variants, SSE framing, error mapping (refused vs
 * unreachable), cancellation reaching the engine, and the small parsing helpers.
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  kvEventsFromConfig,
  probeSglang,
  roomForRank,
  SglangEngineAdapter,
} from '../../src/engine/adapters/sglang-adapter.ts';
import { sseData } from '../../src/engine/adapters/sse-lines.ts';
import { metricLabels, probeVllm, VllmEngineAdapter } from '../../src/engine/adapters/vllm-adapter.ts';
import { offsetEndpoint } from '../../src/engine/adapters/zmq-kv-subscriber.ts';
import { FakeEngineServer } from '../../src/engine/fakes/fake-engine-server.ts';
import { workerErrorCode } from '../../src/protocol/wire.ts';
import { collect, freePorts, waitUntil } from './helpers.ts';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** An HTTP server on a free loopback port, closed after the test; resolves with its URL. */
async function serveHttp(handler: RequestListener): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A canned HTTP server: path → [status, body]. */
function canned(routes: Record<string, [number, string]>): Promise<string> {
  return serveHttp((req, res) => {
    const route = routes[req.url ?? ''];
    if (route === undefined) return void res.writeHead(404).end('{"detail":"Not Found"}');
    res.writeHead(route[0], { 'content-type': 'application/json' }).end(route[1]);
  });
}

async function* bytes(parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p);
}

describe('probing', () => {
  it('falls back to /get_server_info and reads scheduler info from internal_states', async () => {
    const url = await canned({
      '/get_server_info': [
        200,
        JSON.stringify({
          dp_size: 2,
          page_size: 64,
          max_running_requests: null,
          chunked_prefill_size: -1,
          max_prefill_tokens: 4096,
          disaggregation_mode: 'prefill',
          disaggregation_bootstrap_port: 9001,
          kv_events_config: '{"publisher":"zmq","endpoint":"tcp://*:6000","topic":"kv"}',
          internal_states: [{ max_total_num_tokens: 1000, max_running_requests: 48 }],
        }),
      ],
    });
    const info = await probeSglang(url);
    expect(info.description).toEqual({
      role: 'prefill',
      dataParallelSize: 2,
      kvBlockSize: 64,
      totalKvBlocks: 16, // ceil(1000 / 64)
      maxNumSeqs: 48,
      maxNumBatchedTokens: 4096,
    });
    expect(info.bootstrap).toEqual({ host: '127.0.0.1', port: 9001 });
    expect(info.kvEvents).toEqual({ endpoint: 'tcp://127.0.0.1:6000', topic: 'kv' });
  });

  it('refuses a server without max_total_num_tokens or with an unknown mode, and an unreachable one', async () => {
    const missing = await canned({ '/server_info': [200, JSON.stringify({ dp_size: 1, page_size: 1 })] });
    await expect(probeSglang(missing)).rejects.toMatchObject({ code: 'ENGINE_PROBE_FAILED' });
    const mode = await canned({
      '/server_info': [200, JSON.stringify({ max_total_num_tokens: 10, disaggregation_mode: 'encode' })],
    });
    await expect(probeSglang(mode)).rejects.toThrow(/disaggregation_mode/);
    const port = await freePorts(1);
    await expect(probeSglang(`http://127.0.0.1:${port}`)).rejects.toMatchObject({
      code: 'ENGINE_PROBE_FAILED',
    });
  });

  it('vLLM: block size and blocks from vllm:cache_config_info, or the flags', async () => {
    const url = await canned({
      '/v1/models': [200, JSON.stringify({ data: [{ id: 'm' }] })],
      '/metrics': [
        200,
        '# HELP x\nvllm:cache_config_info{block_size="32",num_gpu_blocks="900",x="a\\"b"} 1.0\n',
      ],
    });
    expect((await probeVllm(url, { dataParallelSize: 4 })).description).toMatchObject({
      kvBlockSize: 32,
      totalKvBlocks: 900,
      dataParallelSize: 4,
    });
    expect((await probeVllm(url, { blockSize: 16 })).description.kvBlockSize).toBe(16);
    const bare = await canned({ '/v1/models': [200, JSON.stringify({ data: [{ id: 'm' }] })] });
    await expect(probeVllm(bare)).rejects.toThrow(/--block-size/);
  });

  it('helpers: kv_events_config, per-rank endpoints, rooms on a rank, metric labels', () => {
    expect(kvEventsFromConfig('{"publisher":"null"}', 'h')).toBeUndefined();
    expect(kvEventsFromConfig('not json', 'h')).toBeUndefined();
    expect(
      kvEventsFromConfig(
        '{"publisher":"zmq","endpoint":"tcp://10.0.0.2:7000","replay_endpoint":"tcp://0.0.0.0:7100"}',
        'h',
      ),
    ).toEqual({
      endpoint: 'tcp://10.0.0.2:7000',
      replayEndpoint: 'tcp://h:7100',
    });
    expect(offsetEndpoint('tcp://h:5557', 3)).toBe('tcp://h:5560');
    expect(() => offsetEndpoint('ipc:///tmp/x', 1)).toThrow(TypeError);
    expect(() => offsetEndpoint('tcp://h:65535', 1)).toThrow(RangeError);
    for (const [rank, size] of [
      [0, 1],
      [0, 4],
      [3, 4],
      [6, 7],
    ]) {
      const room = roomForRank(rank, size);
      expect(Number.isSafeInteger(room) && room % size).toBe(rank);
    }
    expect(roomForRank(2, 3, () => 0.999999999999)).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
    expect(metricLabels('a{b="1"} 1\nvllm:x{k="v"} 2', 'vllm:x')).toEqual({ k: 'v' });
  });
});

describe('SSE framing', () => {
  it('joins events split across reads, multi-line data, CRLF; skips comments', async () => {
    const events = await collect(
      sseData(
        bytes([
          ': hi\r\n',
          'data: {"a"',
          ':1}\r\n\r\ndata: x\ndata: y\n',
          '\n',
          'event: e\ndata: [DONE]\n\n',
          'data: tail',
        ]),
      ),
    );
    expect(events).toEqual(['{"a":1}', 'x\ny', '[DONE]', 'tail']);
  });
});

describe('requests', () => {
  async function sglangFake(dp = 2) {
    const fake = await FakeEngineServer.start({
      api: 'sglang',
      dataParallelSize: dp,
      engine: { blockSize: 4, numGpuBlocks: 4096, speedupRatio: 1 },
    });
    cleanup.push(() => fake.close());
    const adapter = SglangEngineAdapter.factory(fake.url, await probeSglang(fake.url))({ workerId: 1n });
    cleanup.push(() => adapter.close());
    return { fake, adapter };
  }

  it('a caller that cancels aborts the engine request', async () => {
    const { fake, adapter } = await sglangFake();
    const controller = new AbortController();
    const stream = adapter.generate(
      {
        requestId: 'long',
        tokenIds: [1, 2, 3, 4, 5],
        sampling: { maxTokens: 3000, ignoreEos: true },
        dpRank: 1,
      },
      controller.signal,
    );
    let tokens = 0;
    await expect(
      (async () => {
        for await (const chunk of stream) {
          tokens += chunk.tokenIds.length;
          if (tokens >= 2) controller.abort();
        }
      })(),
    ).rejects.toThrow();
    await waitUntil(
      () => fake.engine.placement('long')?.finishReason === 'cancelled',
      3000,
      'engine-side cancel',
    );
    expect(adapter.rankLoads()[1].numRunning).toBe(0);
  });

  it('rank 0 is sent as 0; a rank the engine refuses is ENGINE_REFUSED; an unreachable engine is WORKER_UNAVAILABLE', async () => {
    const { fake, adapter } = await sglangFake();
    await collect(
      adapter.generate(
        { requestId: 'zero', tokenIds: [1, 2, 3], sampling: { maxTokens: 1 }, dpRank: 0 },
        new AbortController().signal,
      ),
    );
    expect(fake.requests[0]).toMatchObject({ rid: 'zero', dataParallelRank: 0, routedDpRank: 0, rank: 0 });
    expect(() =>
      adapter.generate(
        { requestId: 'r', tokenIds: [1], sampling: { maxTokens: 1 }, dpRank: 2 },
        new AbortController().signal,
      ),
    ).toThrow(expect.objectContaining({ code: 'ENGINE_RANK_OUT_OF_RANGE' }));
    // Bypass the adapter's own check: a 4-rank view of this 2-rank server.
    const info = await probeSglang(fake.url);
    const wide = SglangEngineAdapter.factory(fake.url, {
      ...info,
      description: { ...info.description, dataParallelSize: 4 },
    })({ workerId: 2n });
    cleanup.push(() => wide.close());
    const refused = await collect(
      wide.generate(
        { requestId: 'r3', tokenIds: [1], sampling: { maxTokens: 1 }, dpRank: 3 },
        new AbortController().signal,
      ),
    ).catch((e: Error) => e);
    expect(workerErrorCode((refused as Error).message)).toBe('ENGINE_REFUSED');
    await fake.close();
    const gone = await collect(
      adapter.generate(
        { requestId: 'g', tokenIds: [1], sampling: { maxTokens: 1 } },
        new AbortController().signal,
      ),
    ).catch((e: Error) => e);
    expect(workerErrorCode((gone as Error).message)).toBe('WORKER_UNAVAILABLE');
  });

  it('sampling options reach SGLang and vLLM under their own names (empty stop lists left out)', async () => {
    const bodies: Record<string, unknown>[] = [];
    const url = await serveHttp((req, res) => {
      let text = '';
      req.on('data', (chunk: Buffer) => {
        text += chunk.toString();
      });
      req.on('end', () => {
        bodies.push(JSON.parse(text) as Record<string, unknown>);
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"captured"}');
      });
    });
    const description = {
      role: 'aggregated',
      dataParallelSize: 1,
      kvBlockSize: 16,
      totalKvBlocks: 64,
      maxNumSeqs: 8,
      maxNumBatchedTokens: 256,
    } as const;
    const sglang = SglangEngineAdapter.factory(url, { description })({ workerId: 1n });
    const vllm = VllmEngineAdapter.factory(url, { description, servedModel: 'm' })({ workerId: 2n });
    cleanup.push(
      () => sglang.close(),
      () => vllm.close(),
    );
    const full = { maxTokens: 5, temperature: 0.5, ignoreEos: true, stopTokenIds: [7, 8], seed: 9 };
    const bare = { maxTokens: 3, stopTokenIds: [] };
    for (const adapter of [sglang, vllm])
      for (const sampling of [full, bare])
        await expect(
          collect(
            adapter.generate({ requestId: 'r', tokenIds: [1, 2, 3], sampling }, new AbortController().signal),
          ),
        ).rejects.toThrow(/captured/);
    const [sglangFull, sglangBare, vllmFull, vllmBare] = bodies;
    expect(sglangFull.sampling_params).toEqual({
      max_new_tokens: 5,
      temperature: 0.5,
      ignore_eos: true,
      stop_token_ids: [7, 8],
      sampling_seed: 9,
    });
    expect(sglangBare.sampling_params).toEqual({ max_new_tokens: 3 });
    expect(vllmFull).toMatchObject({
      max_tokens: 5,
      temperature: 0.5,
      ignore_eos: true,
      stop_token_ids: [7, 8],
      seed: 9,
    });
    expect(vllmBare).toMatchObject({ max_tokens: 3 });
    for (const key of ['temperature', 'ignore_eos', 'stop_token_ids', 'seed'])
      expect(vllmBare).not.toHaveProperty(key);
  });

  it('vLLM: a server that sends no token_ids is a clear error, never a silent fallback', async () => {
    const url = await canned({
      '/v1/completions': [
        200,
        'data: {"choices":[{"index":0,"text":"hi","finish_reason":null}]}\n\ndata: [DONE]\n\n',
      ],
    });
    const adapter = new VllmEngineAdapter({
      workerId: 3n,
      url,
      info: {
        servedModel: 'm',
        description: {
          role: 'aggregated',
          dataParallelSize: 1,
          kvBlockSize: 16,
          totalKvBlocks: 10,
          maxNumSeqs: 1,
          maxNumBatchedTokens: 1,
        },
      },
    });
    cleanup.push(() => adapter.close());
    await expect(
      collect(
        adapter.generate(
          { requestId: 'v', tokenIds: [1], sampling: { maxTokens: 1 } },
          new AbortController().signal,
        ),
      ),
    ).rejects.toThrow(/return_token_ids/);
  });
});
