import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/engine/errors.ts';
import type { RequestResult } from '../../src/engine/sequence.ts';
import { ChunkStream, FINAL_CHUNK_MAX_TOKENS } from '../../src/engine/stream.ts';
import type { GenerateChunk, OutputKind } from '../../src/protocol/generate.ts';
import { PUSH } from '../../src/runtime/push.ts';
import { drain, harness, range } from './helpers.ts';

/** Pushes one request's output into a list; resolves once the stream ends. */
function pushed(outputKind: OutputKind | undefined, maxTokens: number, stopTokenIds?: number[]) {
  const { clock, engine } = harness({ dataParallelSize: 4 });
  const chunks: GenerateChunk[] = [];
  const stream = engine.generate({
    requestId: 'req',
    tokenIds: range(0, 100),
    sampling: { maxTokens, ...(outputKind ? { outputKind } : {}), ...(stopTokenIds ? { stopTokenIds } : {}) },
    dpRank: 2,
  });
  let ended = false;
  stream[PUSH]({
    push: (chunk) => chunks.push(chunk),
    end: () => {
      ended = true;
    },
    fail: (error) => {
      throw error;
    },
  });
  clock.runUntilIdle();
  expect(ended).toBe(true);
  return chunks;
}

const tokensOf = (chunks: readonly GenerateChunk[]) => chunks.flatMap((c) => [...c.tokenIds]);

const result = (reason: RequestResult['reason'], error?: EngineError): RequestResult => ({
  reason,
  usage: { promptTokens: 3, completionTokens: 3, cachedTokens: 0 },
  dpRank: 0,
  timing: { arrivedAt: 0, firstTokenAt: 0, finishedAt: 0 },
  ...(error ? { error } : {}),
});

describe("sampling.outputKind 'final'", () => {
  it('pushes the first token at once and the rest in one chunk with the finish reason and usage', () => {
    const chunks = pushed('final', 8);
    expect(chunks).toHaveLength(2);
    expect(chunks[0]).toEqual({ tokenIds: [expect.any(Number)], dpRank: 2 });
    expect(chunks[1].tokenIds).toHaveLength(7);
    expect(chunks[1].finishReason).toBe('length');
    expect(chunks[1].usage).toEqual({ promptTokens: 100, completionTokens: 8, cachedTokens: 0 });
    // The same tokens as a request that gets every token at once.
    const deltas = pushed(undefined, 8);
    expect(deltas).toHaveLength(8);
    expect(tokensOf(chunks)).toEqual(tokensOf(deltas));
  });

  it('a stop token ends the held chunk with reason stop', () => {
    const all = tokensOf(pushed(undefined, 8));
    const chunks = pushed('final', 8, [all[4]]);
    expect(chunks).toHaveLength(2);
    expect(tokensOf(chunks)).toEqual(all.slice(0, 5));
    expect(chunks[1].finishReason).toBe('stop');
  });

  it('a single-token request is one chunk', () => {
    const chunks = pushed('final', 1);
    expect(chunks).toHaveLength(1);
    expect(chunks[0].tokenIds).toHaveLength(1);
    expect(chunks[0].finishReason).toBe('length');
  });

  it('pulled by an eager reader: still the first token, then the rest with the finish', async () => {
    const { clock, engine } = harness();
    const stream = engine.generate({
      requestId: 'pulled',
      tokenIds: range(0, 100),
      sampling: { maxTokens: 6, outputKind: 'final' },
    });
    const drained = drain(stream);
    await clock.settle();
    const chunks = await drained;
    expect(chunks.map((c) => c.tokenIds.length)).toEqual([1, 5]);
    expect(chunks[1].finishReason).toBe('length');
  });

  it('held tokens reach a reader before a failure', async () => {
    const stream = new ChunkStream(() => {}, 'final');
    stream.onStart(0, undefined);
    const reader = stream[Symbol.asyncIterator]();
    stream.onToken(7);
    expect((await reader.next()).value).toEqual({ tokenIds: [7], dpRank: 0 });
    stream.onToken(8);
    stream.onToken(9);
    stream.onFinish(result('error', new EngineError('ENGINE_BOOTSTRAP_EXPIRED', 'lost')));
    expect((await reader.next()).value).toEqual({ tokenIds: [8, 9] });
    await expect(reader.next()).rejects.toThrow('lost');
  });

  it(`a held chunk goes once it has ${FINAL_CHUNK_MAX_TOKENS} tokens (pushed and pulled)`, async () => {
    const maxTokens = 2 * FINAL_CHUNK_MAX_TOKENS + 100;
    const sizes = [1, FINAL_CHUNK_MAX_TOKENS, FINAL_CHUNK_MAX_TOKENS, 99];
    const chunks = pushed('final', maxTokens);
    expect(chunks.map((c) => c.tokenIds.length)).toEqual(sizes);
    expect(chunks.at(-1)?.finishReason).toBe('length');
    expect(tokensOf(chunks)).toEqual(tokensOf(pushed(undefined, maxTokens)));
    const { clock, engine } = harness();
    const drained = drain(
      engine.generate({
        requestId: 'long',
        tokenIds: range(0, 100),
        sampling: { maxTokens, outputKind: 'final' },
      }),
    );
    await clock.settle();
    expect((await drained).map((c) => c.tokenIds.length)).toEqual(sizes);
  });

  it('a consumer that switches from pulling to pushing keeps the held tokens', async () => {
    const stream = new ChunkStream(() => {}, 'final');
    stream.onStart(1, undefined);
    const reader = stream[Symbol.asyncIterator]();
    stream.onToken(7);
    expect((await reader.next()).value).toEqual({ tokenIds: [7], dpRank: 1 });
    stream.onToken(8);
    stream.onToken(9);
    const chunks: GenerateChunk[] = [];
    stream[PUSH]({ push: (chunk) => chunks.push(chunk), end: () => {}, fail: () => {} });
    expect(chunks).toEqual([]);
    stream.onToken(10, true);
    stream.onFinish(result('length'));
    expect(chunks.map((c) => [...c.tokenIds])).toEqual([[8, 9, 10]]);
    expect(chunks[0].finishReason).toBe('length');
  });

  it('switching to pushing while a full held chunk waits in the queue keeps both', async () => {
    const stream = new ChunkStream(() => {}, 'final');
    const reader = stream[Symbol.asyncIterator]();
    stream.onToken(0);
    await reader.next();
    for (let token = 1; token <= FINAL_CHUNK_MAX_TOKENS + 2; token++) stream.onToken(token);
    const chunks: GenerateChunk[] = [];
    stream[PUSH]({ push: (chunk) => chunks.push(chunk), end: () => {}, fail: () => {} });
    stream.onFinish(result('length'));
    expect(chunks.map((c) => c.tokenIds.length)).toEqual([FINAL_CHUNK_MAX_TOKENS, 2]);
    expect(tokensOf(chunks)).toEqual(range(1, FINAL_CHUNK_MAX_TOKENS + 2));
  });
});
