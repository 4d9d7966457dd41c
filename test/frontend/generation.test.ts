import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { HfBpeTokenizer } from '../../src/tokens/hf-tokenizer.ts';
import { loadO200kTokenizer } from '../../src/tokens/tokenizer.ts';
import { chatBody, type TestServer, testServer } from './helpers.ts';

const TINY = fileURLToPath(new URL('../fixtures/tiny-bpe/tokenizer.json', import.meta.url));

let server: TestServer | undefined;
afterEach(async () => {
  await server?.app.close();
  server = undefined;
});

function sse(body: string): Record<string, unknown>[] {
  const events = body.split('\n\n').filter((e) => e !== '');
  expect(events.at(-1)).toBe('data: [DONE]');
  return events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)));
}

function streamedText(body: string): { text: string; finish: unknown[] } {
  let text = '';
  const finish: unknown[] = [];
  for (const chunk of sse(body)) {
    for (const choice of chunk.choices as {
      delta?: { content?: string };
      text?: string;
      finish_reason: unknown;
    }[]) {
      text += choice.delta?.content ?? choice.text ?? '';
      if (choice.finish_reason) finish.push(choice.finish_reason);
    }
  }
  return { text, finish };
}

describe('generation over HTTP', () => {
  it('a stop string split across tokens ends the choice, is cut off, and cancels the backend', async () => {
    server = await testServer({ reply: 'The quick brown fox jumps over the lazy dog.' });
    const unary = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ max_tokens: 50, stop: ['own fo'] }),
    });
    expect(unary.json().choices[0]).toMatchObject({
      message: { content: 'The quick br' },
      finish_reason: 'stop',
    });
    expect(server.backend.signals[0].aborted).toBe(true);
    expect(unary.json().usage.completion_tokens).toBeLessThan(10);
    const streamed = await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: 'fake-model', prompt: 'x', max_tokens: 50, stop: 'own fo', stream: true },
    });
    expect(streamedText(streamed.body)).toEqual({ text: 'The quick br', finish: ['stop'] });
  });

  it('streams multi-byte text token by token without broken characters', async () => {
    const reply = 'Grüße 🧑‍🚀 日本語';
    server = await testServer({ reply });
    const tokens = (await loadO200kTokenizer()).encode(reply).length;
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ max_tokens: tokens, stream: true }),
    });
    const chunks = sse(response.body);
    for (const chunk of chunks) expect(JSON.stringify(chunk)).not.toContain('\uFFFD');
    expect(streamedText(response.body).text).toBe(reply);
  });

  it('stop token ids, ignore_eos, temperature and seed reach the backend', async () => {
    const tokenizer = await loadO200kTokenizer();
    const [a, b, c] = tokenizer.encode('alpha beta gamma');
    server = await testServer({ replyTokens: [a, b, c] });
    const stopped = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ max_tokens: 10, stop_token_ids: [c], temperature: 0.5, seed: 3 }),
    });
    expect(stopped.json().choices[0]).toMatchObject({
      message: { content: 'alpha beta gamma' },
      finish_reason: 'stop',
    });
    const sampling = server.backend.requests[0].sampling;
    expect(sampling).toMatchObject({ maxTokens: 10, temperature: 0.5, seed: 3 });
    expect(sampling.stopTokenIds).toEqual(expect.arrayContaining([c, 199999, 200004]));
    await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ ignore_eos: true }),
    });
    expect(server.backend.requests[1].sampling.ignoreEos).toBe(true);
    expect(server.backend.requests[1].sampling.stopTokenIds).toBeUndefined();
  });

  it("a response that is not streamed and has no stop strings asks for output kind 'final'", async () => {
    server = await testServer();
    const kinds: (string | undefined)[] = [];
    for (const [url, payload] of [
      ['/v1/chat/completions', chatBody({ max_tokens: 4 })],
      ['/v1/chat/completions', chatBody({ max_tokens: 4, stream: true })],
      ['/v1/chat/completions', chatBody({ max_tokens: 4, stop: ['zzz'] })],
      ['/v1/completions', { model: 'fake-model', prompt: 'hi', max_tokens: 4 }],
      ['/v1/completions', { model: 'fake-model', prompt: 'hi', max_tokens: 4, stop: 'zzz' }],
    ] as const) {
      const response = await server.app.inject({ method: 'POST', url, payload });
      expect(response.statusCode).toBe(200);
      kinds.push(server.backend.requests.at(-1)?.sampling.outputKind);
    }
    // Streams and stop strings need every token as it comes.
    expect(kinds).toEqual(['final', undefined, undefined, 'final', undefined]);
  });

  it('max_completion_tokens wins over max_tokens', async () => {
    server = await testServer();
    await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ max_tokens: 9, max_completion_tokens: 2 }),
    });
    expect(server.backend.requests[0].sampling.maxTokens).toBe(2);
  });

  it('several prompts × n choices: indexes prompt*n + i, usage counts each prompt once', async () => {
    server = await testServer({ cachedTokens: 1 });
    const tokenizer = await loadO200kTokenizer();
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: 'fake-model', prompt: ['one two', 'three'], n: 2, max_tokens: 2 },
    });
    const body = response.json();
    expect(body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1, 2, 3]);
    const promptTokens = tokenizer.encode('one two').length + tokenizer.encode('three').length;
    expect(body.usage).toEqual({
      prompt_tokens: promptTokens,
      completion_tokens: 8,
      total_tokens: promptTokens + 8,
      prompt_tokens_details: { cached_tokens: 2 },
    });
    expect(server.backend.requests.map((r) => r.tokenIds.length)).toEqual([
      tokenizer.encode('one two').length,
      tokenizer.encode('one two').length,
      tokenizer.encode('three').length,
      tokenizer.encode('three').length,
    ]);
  });

  it("text prompts get the model tokenizer's BOS; chat prompts follow the template; token prompts stay as given", async () => {
    const json = JSON.parse(await readFile(TINY, 'utf8'));
    const tokenizer = new HfBpeTokenizer(json, { bosToken: '<|endoftext|>' });
    server = await testServer({ tokenizer, model: 'tiny' });
    Object.defineProperty(server.backend, 'tokenizer', { value: tokenizer });
    await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: 'tiny', prompt: 'hello world' },
    });
    expect(server.backend.requests[0].tokenIds).toEqual([300, 261, 265]);
    await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ model: 'tiny' }),
    });
    expect(server.backend.requests[1].tokenIds[0]).toBe(301); // <|im_start|>
    await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: 'tiny', prompt: [261] },
    });
    expect(server.backend.requests[2].tokenIds).toEqual([261]);
  });

  it('token-id prompts are passed through as they are', async () => {
    server = await testServer();
    await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: 'fake-model', prompt: [1, 2, 3] },
    });
    expect(server.backend.requests[0].tokenIds).toEqual([1, 2, 3]);
    expect(server.backend.requests[0].sampling.maxTokens).toBe(16);
    const bad = await server.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: 'fake-model', prompt: [1e9] },
    });
    expect(bad.statusCode).toBe(400);
  });

  it('streamed n > 1: every choice gets its role chunk, its deltas and its own finish chunk', async () => {
    server = await testServer({ delayMs: 1 });
    const response = await server.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: chatBody({ n: 3, max_tokens: 4, stream: true, stream_options: { include_usage: true } }),
    });
    const chunks = sse(response.body);
    for (let i = 0; i < 3; i++) {
      const mine = chunks.flatMap((c) =>
        (c.choices as { index: number; delta: { role?: string }; finish_reason: string | null }[]).filter(
          (x) => x.index === i,
        ),
      );
      expect(mine[0].delta.role).toBe('assistant');
      expect(mine.filter((x) => x.finish_reason === 'length')).toHaveLength(1);
      expect(mine.at(-1)!.finish_reason).toBe('length');
    }
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect((last.usage as { completion_tokens: number }).completion_tokens).toBe(12);
    for (const chunk of chunks.slice(0, -1)) expect(chunk.usage).toBeNull();
  });
});
