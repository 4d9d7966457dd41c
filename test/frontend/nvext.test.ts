import { afterEach, describe, expect, it } from 'vitest';
import { ChatMlTemplate } from '../../src/frontend/chat-template.ts';
import { loadO200kTokenizer } from '../../src/tokens/tokenizer.ts';
import { chatBody, expectOpenAiError, type TestServer, testServer } from './helpers.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.app.close();
  server = undefined;
});

const BIG = '18446744073709551557'; // above 2^53: JSON.parse would round it

function post(payload: string | object) {
  return server!.app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: { 'content-type': 'application/json' },
  });
}

describe('nvext routing hints reach the backend exactly', () => {
  it('a pinned u64 worker id (JSON number, parsed losslessly) and rank 0', async () => {
    server = await testServer();
    const body = JSON.stringify(chatBody()).replace(
      /}$/,
      `,"nvext":{"backend_instance_id":${BIG},"dp_rank":0}}`,
    );
    const response = await post(body);
    expect(response.statusCode).toBe(200);
    expect(server.backend.requests[0].routing).toEqual({ backendInstanceId: BigInt(BIG), dpRank: 0 });
    // The echo carries the full 64 bits as a JSON number.
    expect(response.body).toContain(`"nvext":{"worker_id":${BIG},"dp_rank":0}`);
  });

  it('ids as decimal strings, disaggregated pins, and the top-level data_parallel_rank', async () => {
    server = await testServer();
    const response = await post(
      chatBody({
        data_parallel_rank: 0,
        nvext: { prefill_worker_id: BIG, decode_worker_id: '42', prefill_dp_rank: 3 },
      }),
    );
    expect(response.statusCode).toBe(200);
    expect(server.backend.requests[0].routing).toEqual({
      prefillWorkerId: BigInt(BIG),
      decodeWorkerId: 42n,
      dpRank: 0,
      prefillDpRank: 3,
    });
  });

  it("Dynamo's routing headers override the body", async () => {
    server = await testServer();
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ nvext: { backend_instance_id: 5, dp_rank: 3 } }),
      headers: {
        'x-worker-instance-id': BIG,
        'x-dp-rank': '0',
        'x-prefill-instance-id': '9',
        'x-prefill-dp-rank': '4294967295',
      },
    });
    expect(response.statusCode).toBe(200);
    expect(server.backend.requests[0].routing).toEqual({
      backendInstanceId: BigInt(BIG),
      decodeWorkerId: BigInt(BIG),
      prefillWorkerId: 9n,
      dpRank: 0,
    });
    for (const headers of [
      { 'x-dp-rank': '-1' },
      { 'x-dp-rank': '1.5' },
      { 'x-worker-instance-id': 'abc' },
    ]) {
      const bad = await server.app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: chatBody(),
        headers,
      });
      expect(bad.statusCode).toBe(400);
      expectOpenAiError(bad.json());
    }
  });

  it('router overrides and agent hints pass through', async () => {
    server = await testServer();
    await post(
      chatBody({ nvext: { router_config_override: { overlap_score_weight: 0 }, agent_hints: { osl: 128 } } }),
    );
    expect(server.backend.requests[0].routerOverrides).toEqual({ overlapScoreWeight: 0 });
    expect(server.backend.requests[0].agentHints).toEqual({ osl: 128 });
  });

  it('conflicting ranks or a malformed id → 400', async () => {
    server = await testServer();
    for (const body of [
      chatBody({ data_parallel_rank: 1, nvext: { dp_rank: 2 } }),
      chatBody({ nvext: { backend_instance_id: -1 } }),
      chatBody({ nvext: { backend_instance_id: '18446744073709551616' } }),
      chatBody({ nvext: { backend_instance_id: 1.5 } }),
      chatBody({ nvext: { backend_instance_id: 'abc' } }),
    ]) {
      const response = await post(body);
      expect(response.statusCode).toBe(400);
      expectOpenAiError(response.json());
    }
    expect(server.backend.generateCalls).toBe(0);
  });

  it('the response echoes prefill and decode sides for disaggregated requests (streamed)', async () => {
    server = await testServer({ disaggregated: { prefillWorkerId: 99n } });
    const response = await post(chatBody({ stream: true, nvext: { dp_rank: 2, prefill_dp_rank: 0 } }));
    const first = JSON.parse(response.body.split('\n\n')[0].slice('data: '.length));
    expect(first.nvext).toEqual({
      worker_id: 7,
      dp_rank: 2,
      prefill_worker_id: 99,
      prefill_dp_rank: 0,
      decode_worker_id: 7,
      decode_dp_rank: 2,
    });
  });
});

describe('query_instance_id', () => {
  it('streams the decision as Dynamo does, then [DONE], without generating', async () => {
    server = await testServer({ workerId: BigInt(BIG) });
    const response = await post(
      chatBody({ stream: true, nvext: { annotations: ['query_instance_id'], dp_rank: 0 } }),
    );
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/event-stream');
    expect(server.backend.generateCalls).toBe(0);
    expect(server.backend.routeCalls).toBe(1);
    const events = response.body.split('\n\n').filter((e) => e !== '');
    expect(events[0]).toBe(`event: worker_instance_id\n: "${BIG}"`);
    expect(events[1]).toBe('event: dp_rank\n: "0"');
    const tokenData = events.find((e) => e.startsWith('event: token_data\n'))!;
    const tokenizer = await loadO200kTokenizer();
    const expected = new ChatMlTemplate(tokenizer).apply([{ role: 'user', content: 'Hello' }]);
    expect(JSON.parse(JSON.parse(tokenData.split('\n: ')[1]))).toEqual(expected);
    expect(events.at(-1)).toBe('data: [DONE]');
  });

  it('answers a JSON body when not streamed; the annotation may carry a suffix', async () => {
    server = await testServer({ disaggregated: { prefillWorkerId: 5n } });
    const response = await post(chatBody({ nvext: { annotations: ['query_instance_id:req-1'] } }));
    expect(response.statusCode).toBe(200);
    expect(server.backend.generateCalls).toBe(0);
    const body = response.json();
    expect(body.choices).toEqual([]);
    expect(body.nvext).toMatchObject({
      worker_id: 7,
      dp_rank: 1,
      overlap_blocks: 3,
      prefill_worker_id: 5,
      prefill_dp_rank: 0,
      decode_worker_id: 7,
      decode_dp_rank: 1,
    });
    expect(body.nvext.token_ids.length).toBeGreaterThan(0);
  });

  it('a backend without a router answers 400, streamed or not', async () => {
    server = await testServer();
    Object.defineProperty(server.backend, 'route', { value: undefined });
    for (const stream of [false, true]) {
      const response = await post(chatBody({ stream, nvext: { annotations: ['query_instance_id'] } }));
      expect(response.statusCode).toBe(400);
      expect(expectOpenAiError(response.json()).code).toBe('unsupported');
    }
  });

  it("a rank outside the worker's range is a 400 for a query too", async () => {
    server = await testServer({ dataParallelSize: 2 });
    const response = await post(chatBody({ nvext: { annotations: ['query_instance_id'], dp_rank: 2 } }));
    expect(response.statusCode).toBe(400);
    expect(expectOpenAiError(response.json()).message).toContain('out of range');
  });
});
