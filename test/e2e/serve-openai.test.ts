/**
 * `kvgate serve`'s pieces in-process (real Workers with mock engines, the local runtime, the
 * router and the HTTP frontend) driven by the official OpenAI SDK v6 and plain HTTP.
 */
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedServer, startEmbeddedServer } from '../../src/cli/embedded-server.ts';
import { type FrontendFlags, tokenizerFrom } from '../../src/cli/frontend-flags.ts';
import { ChatMlTemplate } from '../../src/frontend/chat-template.ts';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';

const MODEL = 'e2e-model';
let server: EmbeddedServer;
let client: OpenAI;
let tokenizer: Tokenizer;

beforeAll(async () => {
  tokenizer = await loadO200kTokenizer();
  server = await startEmbeddedServer({
    model: MODEL,
    workers: 2,
    engine: {
      dataParallelSize: 4,
      blockSize: 16,
      numGpuBlocks: 4096,
      maxNumSeqs: 64,
      maxNumBatchedTokens: 4096,
      speedupRatio: 0,
    },
    tokenizer,
    port: 0,
    migrationLimit: 3,
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await server?.close();
});

type Nvext = { worker_id: number | bigint; dp_rank: number };

/** The fields these tests read from a raw JSON answer. */
interface RawAnswer {
  readonly choices: unknown[];
  readonly usage: {
    prompt_tokens: number;
    completion_tokens: number;
    prompt_tokens_details: { cached_tokens: number };
  };
  readonly nvext: { dp_rank: number; token_ids: number[] };
  readonly error: { message: string; type: string; param: string | null; code: string | null };
}

/** The routing echo of a response; worker ids are u64, so read them from the raw text. */
async function chatRaw(
  body: Record<string, unknown>,
): Promise<{ status: number; json: RawAnswer; text: string }> {
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, ...body }, (_k, v) => (typeof v === 'bigint' ? `${v}` : v)),
  });
  const text = await response.text();
  return { status: response.status, json: JSON.parse(text) as RawAnswer, text };
}

function workerIdOf(text: string): bigint {
  const match = /"worker_id":(\d+)/.exec(text);
  if (!match) throw new Error(`no nvext.worker_id in ${text}`);
  return BigInt(match[1]);
}

describe('kvgate serve (embedded) with the OpenAI SDK', () => {
  const messages = [
    { role: 'system' as const, content: 'You are terse.' },
    { role: 'user' as const, content: 'Name three rivers.' },
  ];

  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    expect(models.data[0].object).toBe('model');
  });

  it('chat, not streamed: the exact prompt and completion token counts', async () => {
    const promptTokens = new ChatMlTemplate(tokenizer).apply(messages).length;
    const result = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12 });
    expect(result.object).toBe('chat.completion');
    expect(result.choices[0].finish_reason).toBe('length');
    expect(result.choices[0].message.role).toBe('assistant');
    expect(result.choices[0].message.content?.length).toBeGreaterThan(0);
    expect(result.usage).toMatchObject({
      prompt_tokens: promptTokens,
      completion_tokens: 12,
      total_tokens: promptTokens + 12,
    });
    const nvext = (result as unknown as { nvext: Nvext }).nvext;
    expect(nvext.dp_rank).toBeGreaterThanOrEqual(0);
    expect(nvext.dp_rank).toBeLessThan(4);
    expect(typeof nvext.worker_id).toBe('number'); // exact u64 ids: see the raw-HTTP tests below
  });

  it('chat, streamed: chunks add up to the completion, usage chunk, [DONE]', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 20,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    expect(chunks).toBeGreaterThan(2);
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(20);
    expect(usage?.prompt_tokens).toBe(new ChatMlTemplate(tokenizer).apply(messages).length);
    expect(tokenizer.encode(text).length).toBeGreaterThan(0);
  });

  it('the raw stream ends with data: [DONE]', async () => {
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages, max_tokens: 5, stream: true }),
    });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const events = (await response.text()).split('\n\n').filter((e) => e.trim() !== '');
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(events.length).toBeGreaterThanOrEqual(3);
  });

  it('completions: text prompt, usage', async () => {
    const prompt = 'Once upon a time';
    const result = await client.completions.create({ model: MODEL, prompt, max_tokens: 7 });
    expect(result.object).toBe('text_completion');
    expect(result.choices[0].finish_reason).toBe('length');
    expect(result.usage).toMatchObject({
      prompt_tokens: tokenizer.encode(prompt).length,
      completion_tokens: 7,
    });
  });

  it('prefix reuse: the same 2k-token system prompt lands on the same (worker, rank) and is cached', async () => {
    const words = Array.from({ length: 1400 }, (_, i) => `policy${i}`).join(' ');
    expect(tokenizer.encode(words).length).toBeGreaterThanOrEqual(2000);
    const system = { role: 'system', content: words };
    const first = await chatRaw({
      messages: [system, { role: 'user', content: 'First question?' }],
      max_tokens: 4,
    });
    expect(first.status).toBe(200);
    expect(first.json.usage.prompt_tokens).toBeGreaterThanOrEqual(2000);
    const second = await chatRaw({
      messages: [system, { role: 'user', content: 'A different second question?' }],
      max_tokens: 4,
    });
    expect(second.status).toBe(200);
    expect(workerIdOf(second.text)).toBe(workerIdOf(first.text));
    expect(second.json.nvext.dp_rank).toBe(first.json.nvext.dp_rank);
    const cached = second.json.usage.prompt_tokens_details.cached_tokens;
    expect(cached).toBeGreaterThanOrEqual(1984);
    expect(cached).toBeLessThan(second.json.usage.prompt_tokens);
  });

  it('nvext pins a worker and rank; query_instance_id answers without generating', async () => {
    const target = server.workers[1].instanceId;
    const pinned = await chatRaw({
      messages,
      max_tokens: 3,
      nvext: { backend_instance_id: target, dp_rank: 3 },
    });
    expect(pinned.status).toBe(200);
    expect(workerIdOf(pinned.text)).toBe(target);
    expect(pinned.json.nvext.dp_rank).toBe(3);

    const query = await chatRaw({ messages, nvext: { annotations: ['query_instance_id'] } });
    expect(query.status).toBe(200);
    expect(query.json.choices).toEqual([]);
    expect(server.workers.map((w) => w.instanceId)).toContain(workerIdOf(query.text));
    expect(query.json.nvext.token_ids.length).toBe(new ChatMlTemplate(tokenizer).apply(messages).length);
  });

  it('a dp_rank outside the worker range is a 400 OpenAI error; so is one no worker has', async () => {
    const pinned = await chatRaw({
      messages,
      max_tokens: 3,
      nvext: { backend_instance_id: server.workers[0].instanceId, dp_rank: 4 },
    });
    expect(pinned.status).toBe(400);
    expect(pinned.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_dp_rank' });
    expect(pinned.json.error.message).toContain('4');

    const anyWorker = await chatRaw({ messages, max_tokens: 3, data_parallel_rank: 9 });
    expect(anyWorker.status).toBe(400);
    expect(anyWorker.json.error.code).toBe('invalid_dp_rank');

    await expect(
      client.chat.completions.create({
        model: MODEL,
        messages,
        max_tokens: 3,
        stream: true,
        // @ts-expect-error nvext is kvgate's (Dynamo's) extension
        nvext: { dp_rank: 17 },
      }),
    ).rejects.toMatchObject({ status: 400 });
  });

  it('an unknown model is a 404 model_not_found', async () => {
    const response = await chatRaw({ model: 'no-such-model', messages });
    expect(response.status).toBe(404);
    expect(response.json.error).toMatchObject({
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    });
    await expect(client.chat.completions.create({ model: 'no-such-model', messages })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
  });

  it('an unknown pinned worker is a 404 worker_not_found', async () => {
    const response = await chatRaw({ messages, max_tokens: 2, nvext: { backend_instance_id: 12345 } });
    expect(response.status).toBe(404);
    expect(response.json.error.code).toBe('worker_not_found');
  });

  it('/health lists both workers; /metrics has a gauge series per (worker, rank)', async () => {
    const health = await (await fetch(`${server.url}/health`)).text();
    for (const worker of server.workers) expect(health).toContain(`"instance_id":${worker.instanceId}`);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    for (const worker of server.workers)
      for (let rank = 0; rank < 4; rank++)
        expect(metrics).toContain(
          `kvgate_frontend_worker_kv_hit_rate{model="${MODEL}",worker_id="${worker.instanceId}",dp_rank="${rank}"}`,
        );
  });
});

describe('kvgate serve --tokenizer path/to/tokenizer.json', () => {
  it('tokenizes prompts with the given Hugging Face tokenizer', async () => {
    const path = join(import.meta.dirname, '..', 'fixtures', 'tiny-bpe', 'tokenizer.json');
    const hf = await tokenizerFrom({ tokenizer: path } as FrontendFlags);
    const tiny = await startEmbeddedServer({
      model: 'tiny',
      workers: 1,
      engine: {
        dataParallelSize: 1,
        blockSize: 4,
        numGpuBlocks: 256,
        maxNumSeqs: 8,
        maxNumBatchedTokens: 256,
        speedupRatio: 0,
      },
      tokenizer: hf,
      port: 0,
    });
    try {
      const prompt = 'kvgate tokenizes prompts with the model tokenizer';
      const post = async (body: Record<string, unknown>) => {
        const response = await fetch(`${tiny.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'tiny', prompt, ...body }),
        });
        expect(response.status).toBe(200);
        return (await response.json()) as {
          usage: { prompt_tokens: number; completion_tokens: number };
          nvext: { token_ids: number[] };
        };
      };
      const expected = [...(hf.bosTokenId === undefined ? [] : [hf.bosTokenId]), ...hf.encode(prompt)];
      expect(expected).not.toEqual(tokenizer.encode(prompt));
      const query = await post({ nvext: { annotations: ['query_instance_id'] } });
      expect(query.nvext.token_ids).toEqual(expected);
      const answer = await post({ max_tokens: 3 });
      expect(answer.usage).toMatchObject({ prompt_tokens: expected.length, completion_tokens: 3 });
    } finally {
      await tiny.close();
    }
  });
});
