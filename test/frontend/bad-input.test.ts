import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatBody, expectOpenAiError, type TestServer, testServer } from './helpers.ts';

let server: TestServer;
beforeAll(async () => {
  // A small context keeps every accepted fuzzed request short.
  server = await testServer({ contextLength: 64, dataParallelSize: 4 });
});
afterAll(async () => {
  await server.app.close();
});

async function post(
  payload: string | object,
  url = '/v1/chat/completions',
  headers: Record<string, string> = {},
) {
  const response = await server.app.inject({
    method: 'POST',
    url,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: { 'content-type': 'application/json', ...headers },
  });
  return response;
}

describe('bad input gets a 4xx with an OpenAI error body', () => {
  it.each([
    ['invalid JSON', '{"model": "fake-model", "messages": [', 400, 'invalid_json'],
    ['an empty body', '', 400, 'invalid_json'],
    ['a JSON array', '[1,2,3]', 400, null],
    ['missing model', { messages: [{ role: 'user', content: 'x' }] }, 400, 'invalid_value'],
    ['missing messages', { model: 'fake-model' }, 400, 'invalid_value'],
    ['messages of the wrong type', { model: 'fake-model', messages: 'hello' }, 400, 'invalid_value'],
    ['a wrongly typed max_tokens', chatBody({ max_tokens: '5' }), 400, 'invalid_value'],
    ['a negative max_tokens', chatBody({ max_tokens: -5 }), 400, 'invalid_value'],
    ['a zero max_tokens', chatBody({ max_tokens: 0 }), 400, 'invalid_value'],
    ['an unknown role', chatBody({ messages: [{ role: 'wizard', content: 'x' }] }), 400, 'invalid_value'],
    [
      'an image part',
      chatBody({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }),
      400,
      'invalid_value',
    ],
    ['temperature out of range', chatBody({ temperature: 7 }), 400, 'invalid_value'],
    ['n too large', chatBody({ n: 100_000 }), 400, 'invalid_value'],
    [
      'too many prompts × n',
      { model: 'fake-model', prompt: Array(30).fill('x'), n: 10 },
      400,
      'too_many_choices',
    ],
    ['logprobs requested', chatBody({ logprobs: true }), 400, 'invalid_value'],
    [
      'tools given',
      chatBody({ tools: [{ type: 'function', function: { name: 'f' } }] }),
      400,
      'invalid_value',
    ],
    ['a JSON response format', chatBody({ response_format: { type: 'json_object' } }), 400, 'invalid_value'],
    ['an unknown model', chatBody({ model: 'no-such-model' }), 404, 'model_not_found'],
    ['a prompt beyond the context length', chatBody({ max_tokens: 1000 }), 400, 'context_length_exceeded'],
  ])('%s', async (_name, payload, status, code) => {
    const url =
      typeof payload === 'object' && 'prompt' in payload ? '/v1/completions' : '/v1/chat/completions';
    const response = await post(payload as string | object, url);
    expect(response.statusCode).toBe(status);
    const error = expectOpenAiError(response.json());
    if (code !== null) expect(error.code).toBe(code);
  });

  it('names the offending field', async () => {
    const response = await post(chatBody({ max_tokens: -1 }));
    expect(expectOpenAiError(response.json()).param).toBe('max_tokens');
  });

  it('an invalid dp_rank (negative, fractional, string, too large) → 400', async () => {
    for (const rank of [-1, 1.5, '2', 2 ** 32, true]) {
      for (const body of [chatBody({ data_parallel_rank: rank }), chatBody({ nvext: { dp_rank: rank } })]) {
        const response = await post(body);
        expect(response.statusCode).toBe(400);
        expectOpenAiError(response.json());
      }
    }
    expect(server.backend.generateCalls).toBe(0);
  });

  it("a rank outside the worker's range is the backend's 400, with its message", async () => {
    for (const stream of [false, true]) {
      const response = await post(chatBody({ nvext: { dp_rank: 9 }, stream }));
      expect(response.statusCode).toBe(400);
      const error = expectOpenAiError(response.json());
      expect(error.message).toContain('dp_rank 9 is out of range');
      expect(error.code).toBe('invalid_dp_rank');
    }
  });

  it('a 10 MB body → 413', async () => {
    const huge = JSON.stringify(
      chatBody({ messages: [{ role: 'user', content: 'x'.repeat(10 * 1024 * 1024) }] }),
    );
    const response = await post(huge);
    expect(response.statusCode).toBe(413);
    expect(expectOpenAiError(response.json()).type).toBe('invalid_request_error');
  });

  it('an unknown URL → 404 with an OpenAI error', async () => {
    const response = await server.app.inject({ method: 'GET', url: '/v1/nothing' });
    expect(response.statusCode).toBe(404);
    expectOpenAiError(response.json());
  });

  it('accepts a body sent as form-encoded (curl -d) when it is JSON', async () => {
    const response = await post(chatBody(), '/v1/chat/completions', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(response.statusCode).toBe(200);
  });
});

describe('fuzzing', () => {
  const validChat = chatBody({ stream: false, n: 2, stop: ['x'], nvext: { dp_rank: 0 } });
  const validCompletion = { model: 'fake-model', prompt: 'Hello', max_tokens: 3, stream: true };
  const mutation = fc.oneof(
    fc.jsonValue(),
    fc
      .record({ base: fc.constantFrom(validChat, validCompletion), key: fc.string(), value: fc.jsonValue() })
      .map(({ base, key, value }) => ({ ...base, [key]: value })),
    fc
      .record({
        base: fc.constantFrom(validChat, validCompletion),
        field: fc.constantFrom(
          'model',
          'messages',
          'prompt',
          'max_tokens',
          'n',
          'stop',
          'nvext',
          'stream',
          'seed',
          'temperature',
        ),
        value: fc.jsonValue(),
      })
      .map(({ base, field, value }) => ({ ...base, [field]: value })),
    fc
      .record({
        base: fc.constantFrom(validChat, validCompletion),
        field: fc.constantFrom('model', 'messages', 'prompt'),
      })
      .map(({ base, field }) => {
        const copy: Record<string, unknown> = { ...base };
        delete copy[field];
        return copy;
      }),
  );

  it('500 random and mutated bodies never produce a 5xx, and the server stays up', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        mutation,
        fc.constantFrom('/v1/chat/completions', '/v1/completions'),
        fc.boolean(),
        async (body, url, raw) => {
          const payload = raw
            ? JSON.stringify(body).slice(0, Math.max(1, JSON.stringify(body).length - 3))
            : JSON.stringify(body);
          const response = await post(payload, url);
          expect(response.statusCode).toBeLessThan(500);
          if (response.statusCode >= 400) expectOpenAiError(response.json());
          else accepted++;
        },
      ),
      { numRuns: 500 },
    );
    expect(accepted).toBeGreaterThan(0);
    const after = await post(chatBody());
    expect(after.statusCode).toBe(200);
  });
});
