import { request as httpRequest } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type BackendChunk, MapModelRegistry, type ModelBackend } from '../../src/frontend/backend.ts';
import { FrontendMetrics } from '../../src/frontend/metrics.ts';
import { createFrontendServer, listenFrontend } from '../../src/frontend/server.ts';
import { PUSH, type PushHandle, type PushSink, type PushSource } from '../../src/runtime/push.ts';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';
import { chatBody } from './helpers.ts';

/** How a scripted stream behaves after its chunks (or instead of them). */
interface Script {
  readonly chunks: readonly BackendChunk[];
  /** After the chunks: end() (default), fail(error), or nothing. */
  readonly after?: 'end' | 'fail' | 'hang';
  /** Deliver inside the [PUSH] call instead of on a later tick. */
  readonly synchronous?: boolean;
  /** [PUSH] throws this instead of starting. */
  readonly refuse?: Error;
}

/** A stream both pulled and pushed over the same script; records how it was consumed. */
class ScriptedStream implements PushSource<BackendChunk> {
  pushed = 0;
  cancelled = false;
  pulled = false;

  constructor(private readonly script: Script) {}

  [PUSH](sink: PushSink<BackendChunk>): PushHandle {
    if (this.script.refuse) throw this.script.refuse;
    const deliver = () => {
      for (const chunk of this.script.chunks) {
        if (this.cancelled) return;
        this.pushed++;
        sink.push(chunk);
      }
      if (this.cancelled) return;
      if (this.script.after === 'fail') sink.fail(new Error('engine exploded'));
      else if (this.script.after !== 'hang') sink.end();
    };
    if (this.script.synchronous) deliver();
    else setImmediate(deliver);
    return { cancel: () => (this.cancelled = true) };
  }

  async *[Symbol.asyncIterator](): AsyncIterator<BackendChunk> {
    this.pulled = true;
    yield* this.script.chunks;
    if (this.script.after === 'fail') throw new Error('engine exploded');
  }
}

class PushBackend implements ModelBackend {
  readonly model = 'push-model';
  readonly streams: ScriptedStream[] = [];
  script: Script = { chunks: [] };

  generate(): ScriptedStream {
    const stream = new ScriptedStream(this.script);
    this.streams.push(stream);
    return stream;
  }

  health() {
    return { ready: true, instances: [] };
  }
}

let tokenizer: Tokenizer;
let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function serve(script: Script, body: Record<string, unknown> = {}) {
  tokenizer ??= await loadO200kTokenizer();
  const backend = new PushBackend();
  backend.script = script;
  app = createFrontendServer({ registry: new MapModelRegistry([backend]), tokenizer });
  const response = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: chatBody({ model: 'push-model', max_tokens: 50, ...body }),
  });
  return { response, stream: backend.streams[0] };
}

function chunksOf(text: string, finishReason: BackendChunk['finishReason'] = 'stop'): BackendChunk[] {
  const ids = tokenizer.encode(text);
  return ids.map((id, i) => ({
    tokenIds: [id],
    ...(i === 0 ? { workerId: 7n, dpRank: 2 } : {}),
    ...(i === ids.length - 1
      ? { finishReason, usage: { promptTokens: 11, completionTokens: ids.length, cachedTokens: 3 } }
      : {}),
  }));
}

describe('a backend stream that is a PushSource', () => {
  it('is pushed, not pulled, and answers as the pulled stream would', async () => {
    tokenizer ??= await loadO200kTokenizer();
    const { response, stream } = await serve({ chunks: chunksOf('Paris is the capital. 🧑‍🚀') });
    expect(response.statusCode).toBe(200);
    expect(stream.pulled).toBe(false);
    const body = response.json();
    expect(body.choices[0]).toMatchObject({
      message: { content: 'Paris is the capital. 🧑‍🚀' },
      finish_reason: 'stop',
    });
    expect(body.usage).toMatchObject({ prompt_tokens: 11, prompt_tokens_details: { cached_tokens: 3 } });
    expect(body.nvext).toEqual({ worker_id: 7, dp_rank: 2 });
  });

  it('a stop string ends the choice and cancels the stream; nothing more is pushed', async () => {
    tokenizer ??= await loadO200kTokenizer();
    const chunks = chunksOf('The quick brown fox jumps over the lazy dog.');
    const { response, stream } = await serve({ chunks, after: 'hang' }, { stop: ['own fo'] });
    expect(response.json().choices[0]).toMatchObject({
      message: { content: 'The quick br' },
      finish_reason: 'stop',
    });
    expect(stream.cancelled).toBe(true);
    expect(stream.pushed).toBeLessThan(chunks.length);
  });

  it('a stop string met while the stream is starting cancels it once its handle is known', async () => {
    tokenizer ??= await loadO200kTokenizer();
    const chunks = chunksOf('The quick brown fox jumps over the lazy dog.');
    const { response, stream } = await serve(
      { chunks, synchronous: true, after: 'hang' },
      { stop: ['quick'] },
    );
    expect(response.json().choices[0]).toMatchObject({ message: { content: 'The ' }, finish_reason: 'stop' });
    expect(stream.cancelled).toBe(true);
  });

  it('failures become OpenAI errors: an error chunk (stream cancelled), fail(), an end without a finish, a refused start', async () => {
    tokenizer ??= await loadO200kTokenizer();
    const errorChunk: BackendChunk = { tokenIds: [], finishReason: 'error', error: 'rank on fire' };
    const failed = await serve({ chunks: [{ tokenIds: [1] }, errorChunk], after: 'hang' });
    expect(failed.response.statusCode).toBe(500);
    expect(failed.response.json().error).toMatchObject({ message: 'rank on fire', code: 'backend_error' });
    expect(failed.stream.cancelled).toBe(true);
    await app?.close();

    const thrown = await serve({ chunks: [{ tokenIds: [1] }], after: 'fail' });
    expect(thrown.response.statusCode).toBe(500);
    await app?.close();

    const cut = await serve({ chunks: [{ tokenIds: [1] }], after: 'end' });
    expect(cut.response.statusCode).toBe(500);
    expect(cut.response.json().error.code).toBe('backend_incomplete');
    await app?.close();

    const refused = await serve({ chunks: [], refuse: new Error('no route') });
    expect(refused.response.statusCode).toBe(500);
  });

  it('a client that leaves ends the request even when the stream never ends a cancelled choice', async () => {
    tokenizer ??= await loadO200kTokenizer();
    const backend = new PushBackend();
    // Two chunks, then silence: the stream neither ends nor fails, cancelled or not.
    backend.script = { chunks: chunksOf('Hello there', 'stop').slice(0, 1), after: 'hang' };
    const metrics = new FrontendMetrics();
    app = createFrontendServer({ registry: new MapModelRegistry([backend]), tokenizer, metrics });
    const { port } = await listenFrontend(app, { host: '127.0.0.1', port: 0 });
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
    });
    req.on('error', () => {});
    req.end(JSON.stringify(chatBody({ model: 'push-model', max_tokens: 50 })));
    await vi.waitFor(() => expect(backend.streams[0]?.pushed).toBe(1));
    expect(metrics.inflightRequests()).toEqual({ 'push-model': 1 });
    req.destroy();
    await vi.waitFor(() => expect(metrics.inflightRequests()).toEqual({ 'push-model': 0 }), {
      timeout: 3000,
    });
    expect(backend.streams[0].cancelled).toBe(true);
  });
});
