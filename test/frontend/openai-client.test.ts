import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MapModelRegistry } from '../../src/frontend/backend.ts';
import { ChatMlTemplate } from '../../src/frontend/chat-template.ts';
import { createFrontendServer, listenFrontend } from '../../src/frontend/server.ts';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';
import { FakeBackend } from './fake-backend.ts';

let app: FastifyInstance;
let url: string;
let client: OpenAI;
let tokenizer: Tokenizer;
let backend: FakeBackend;
const REPLY = 'The quick brown fox jumps over the lazy dog.';

beforeAll(async () => {
  tokenizer = await loadO200kTokenizer();
  backend = new FakeBackend({ tokenizer, reply: REPLY, cachedTokens: 4 });
  app = createFrontendServer({ registry: new MapModelRegistry([backend]), tokenizer });
  ({ url } = await listenFrontend(app, { host: '127.0.0.1', port: 0 }));
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await app.close();
});

const messages = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Say something about foxes.' },
];

function templateTokens(): number[] {
  return new ChatMlTemplate(tokenizer).apply(messages);
}

describe('OpenAI SDK v6 against the frontend', () => {
  it('chat completion, not streamed: text, finish reason and usage', async () => {
    const replyTokens = tokenizer.encode(REPLY).length;
    const result = await client.chat.completions.create({
      model: 'fake-model',
      messages,
      max_tokens: replyTokens,
    });
    expect(result.object).toBe('chat.completion');
    expect(result.model).toBe('fake-model');
    expect(result.choices).toHaveLength(1);
    expect(result.choices[0].message.role).toBe('assistant');
    expect(result.choices[0].message.content).toBe(REPLY);
    expect(result.choices[0].finish_reason).toBe('length');
    const promptTokens = templateTokens().length;
    expect(result.usage).toEqual({
      prompt_tokens: promptTokens,
      completion_tokens: replyTokens,
      total_tokens: promptTokens + replyTokens,
      prompt_tokens_details: { cached_tokens: 4 },
    });
    const last = backend.requests.at(-1)!;
    expect(last.tokenIds).toEqual(templateTokens());
  });

  it('chat completion, streamed: deltas join to the reply, usage chunk at the end', async () => {
    const stream = await client.chat.completions.create({
      model: 'fake-model',
      messages,
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let role: string | undefined;
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      for (const choice of chunk.choices) {
        role ??= choice.delta.role;
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(role).toBe('assistant');
    expect(text).toBe(tokenizer.decode(tokenizer.encode(REPLY).slice(0, 5)));
    expect(finish).toBe('length');
    expect(usage?.prompt_tokens).toBe(templateTokens().length);
    expect(usage?.completion_tokens).toBe(5);
    expect(usage?.prompt_tokens_details?.cached_tokens).toBe(4);
  });

  it('completion (legacy endpoint), streamed and not', async () => {
    const prompt = 'Once upon a time';
    const result = await client.completions.create({ model: 'fake-model', prompt, max_tokens: 3 });
    expect(result.object).toBe('text_completion');
    expect(result.choices[0].text).toBe(tokenizer.decode(tokenizer.encode(REPLY).slice(0, 3)));
    expect(result.usage?.prompt_tokens).toBe(tokenizer.encode(prompt).length);
    const stream = await client.completions.create({
      model: 'fake-model',
      prompt,
      max_tokens: 3,
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(result.choices[0].text);
  });

  it('n > 1 runs n generations with distinct seeds', async () => {
    const before = backend.requests.length;
    const result = await client.chat.completions.create({
      model: 'fake-model',
      messages,
      max_tokens: 2,
      n: 3,
      seed: 10,
    });
    expect(result.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const sent = backend.requests.slice(before);
    expect(sent.map((r) => r.sampling.seed)).toEqual([10, 11, 12]);
    expect(result.usage?.completion_tokens).toBe(6);
    expect(result.usage?.prompt_tokens).toBe(templateTokens().length);
  });

  it('lists models', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual(['fake-model']);
    expect(page.data[0].object).toBe('model');
  });

  it('raw SSE: every event is `data: {json}` and the stream ends with [DONE]', async () => {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake-model', messages, max_tokens: 4, stream: true }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const raw = await response.text();
    expect(raw.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = raw.split('\n\n').filter((e) => e !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      return JSON.parse(e.slice(6));
    });
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: expect.any(String) });
    expect(chunks.at(-1).choices[0]).toEqual({
      index: 0,
      delta: {},
      logprobs: null,
      finish_reason: 'length',
    });
    expect(chunks[0].nvext).toEqual({ worker_id: 7, dp_rank: 1 });
  });
});
