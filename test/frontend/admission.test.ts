import { afterEach, describe, expect, it } from 'vitest';
import { chatBody, expectOpenAiError, type TestServer, testServer } from './helpers.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.app.close();
  server = undefined;
});

describe('API keys', () => {
  it('401 with an OpenAI error without a key or with a wrong one; 200 with the right one', async () => {
    server = await testServer({}, { apiKeys: ['sk-right', 'sk-other'] });
    const { app } = server;
    const none = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: chatBody() });
    expect(none.statusCode).toBe(401);
    expect(expectOpenAiError(none.json()).code).toBe('missing_api_key');
    const wrong = await app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody(),
      headers: { authorization: 'Bearer sk-wrong' },
    });
    expect(wrong.statusCode).toBe(401);
    expect(expectOpenAiError(wrong.json()).code).toBe('invalid_api_key');
    const prefix = await app.inject({
      method: 'GET',
      url: '/v1/models',
      headers: { authorization: 'Bearer sk-righ' },
    });
    expect(prefix.statusCode).toBe(401);
    for (const key of ['sk-right', 'sk-other']) {
      const ok = await app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: chatBody(),
        headers: { authorization: `Bearer ${key}` },
      });
      expect(ok.statusCode).toBe(200);
    }
    const models = await app.inject({ method: 'GET', url: '/v1/models' });
    expect(models.statusCode).toBe(401);
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.statusCode).toBe(401);
  });

  it('/live and /health stay open', async () => {
    server = await testServer({}, { apiKeys: ['sk-right'] });
    const live = await server.app.inject({ method: 'GET', url: '/live' });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toEqual({ message: 'Service is live', status: 'live' });
    const health = await server.app.inject({ method: 'GET', url: '/health' });
    expect(health.statusCode).toBe(200);
    expect(health.json().status).toBe('healthy');
  });
});

describe('liveness, health, shutdown, busy', () => {
  it('/health lists the instances of each model, ids as full u64 numbers', async () => {
    server = await testServer({ workerId: 18446744073709551557n, dataParallelSize: 2 });
    const health = await server.app.inject({ method: 'GET', url: '/health' });
    expect(health.body).toContain('"instance_id":18446744073709551557');
    expect(health.json().models[0]).toMatchObject({ model: 'fake-model', ready: true });
    expect(health.json().models[0].instances[0]).toMatchObject({ role: 'aggregated', data_parallel_size: 2 });
  });

  it('/live answers 503 once shutdown begins, and generation is refused', async () => {
    server = await testServer();
    server.app.frontend.beginShutdown();
    const live = await server.app.inject({ method: 'GET', url: '/live' });
    expect(live.statusCode).toBe(503);
    const chat = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody(),
    });
    expect(chat.statusCode).toBe(503);
    expectOpenAiError(chat.json());
  });

  it('busy backend → 503 with an OpenAI error', async () => {
    server = await testServer({ busy: true });
    const chat = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody(),
    });
    expect(chat.statusCode).toBe(503);
    expect(expectOpenAiError(chat.json()).code).toBe('busy');
    expect(server.backend.generateCalls).toBe(0);
  });

  it('more requests in flight than maxInflight → 429', async () => {
    server = await testServer({ delayMs: 50 }, { maxInflight: 1 });
    const first = server.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: chatBody() });
    while (server.backend.generateCalls === 0) await new Promise((r) => setTimeout(r, 1));
    const second = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody(),
    });
    expect(second.statusCode).toBe(429);
    expect(expectOpenAiError(second.json()).type).toBe('rate_limit_error');
    expect((await first).statusCode).toBe(200);
  });
});

describe('/busy_threshold', () => {
  it('GET lists, POST with only the model reads, POST with values sets (null turns a check off)', async () => {
    server = await testServer();
    const { app } = server;
    const list = await app.inject({ method: 'GET', url: '/busy_threshold' });
    expect(list.json()).toEqual({
      thresholds: [
        {
          model: 'fake-model',
          active_decode_blocks_threshold: 0.85,
          active_prefill_tokens_threshold: null,
          active_prefill_tokens_threshold_frac: null,
        },
      ],
    });
    const read = await app.inject({
      method: 'POST',
      url: '/busy_threshold',
      payload: { model: 'fake-model' },
    });
    expect(read.json().active_decode_blocks_threshold).toBe(0.85);
    const set = await app.inject({
      method: 'POST',
      url: '/busy_threshold',
      payload: {
        model: 'fake-model',
        active_decode_blocks_threshold: null,
        active_prefill_tokens_threshold: 4096,
      },
    });
    expect(set.json()).toEqual({
      model: 'fake-model',
      active_decode_blocks_threshold: null,
      active_prefill_tokens_threshold: 4096,
      active_prefill_tokens_threshold_frac: null,
    });
    expect(server.backend.busyThresholds.get().activePrefillTokensThreshold).toBe(4096);
    const bad = await app.inject({
      method: 'POST',
      url: '/busy_threshold',
      payload: { model: 'fake-model', active_decode_blocks_threshold: 3 },
    });
    expect(bad.statusCode).toBe(400);
    expectOpenAiError(bad.json());
    const unknown = await app.inject({ method: 'POST', url: '/busy_threshold', payload: { model: 'nope' } });
    expect(unknown.statusCode).toBe(404);
  });
});

describe('metrics', () => {
  it('counts requests, tokens, TTFT and the KV hit rate on its own registry', async () => {
    server = await testServer({ cachedTokens: 4 });
    await server.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: chatBody() });
    await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: 'nope', messages: [] },
    });
    server.app.frontend.metrics.setWorkerLoad(
      { workerId: 18446744073709551557n, dpRank: 0 },
      { activeDecodeBlocks: 12, activePrefillTokens: 300 },
    );
    server.app.frontend.metrics.setWorkerLoad(
      { workerId: 18446744073709551557n, dpRank: 1 },
      { activeDecodeBlocks: 3 },
    );
    const text = (await server.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(
      /kvgate_frontend_requests_total\{model="fake-model",endpoint="chat_completions",request_type="unary",status="success",code="200"\} 1/,
    );
    expect(text).toMatch(
      /kvgate_frontend_requests_total\{model="unknown",endpoint="chat_completions",request_type="unary",status="error",code="400"\} 1/,
    );
    expect(text).toMatch(/kvgate_frontend_output_tokens_total\{model="fake-model"\} 3/);
    expect(text).toMatch(/kvgate_frontend_cached_tokens_total\{model="fake-model"\} 4/);
    expect(text).toMatch(/kvgate_frontend_time_to_first_token_seconds_count\{model="fake-model"\} 1/);
    expect(text).toMatch(/kvgate_frontend_kv_hit_rate_count\{model="fake-model"\} 1/);
    expect(text).toMatch(/kvgate_frontend_inflight_requests\{model="fake-model"\} 0/);
    expect(text).toMatch(/kvgate_frontend_routing_overhead_seconds_count\{model="fake-model"\} 1/);
    expect(text).toMatch(
      /kvgate_frontend_worker_active_decode_blocks\{model="",worker_id="18446744073709551557",dp_rank="0"\} 12/,
    );
    expect(text).toMatch(
      /kvgate_frontend_worker_active_prefill_tokens\{model="",worker_id="18446744073709551557",dp_rank="0"\} 300/,
    );
    server.app.frontend.metrics.removeWorker(18446744073709551557n);
    const after = (await server.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(after).not.toContain('worker_id="18446744073709551557"');
  });
});
