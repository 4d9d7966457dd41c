import { describe, expect, it } from 'vitest';
import { DataParallelEngine } from '../../src/engine/data-parallel-engine.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { InProcessKvTransfer } from '../../src/engine/transfer.ts';
import type { KvCacheEvent } from '../../src/kv/events.ts';
import type { BootstrapInfo, GenerateChunk } from '../../src/protocol/generate.ts';
import { VirtualClock } from '../../src/util/virtual-clock.ts';
import { drain, harness, range } from './helpers.ts';

const PREFILL_WORKER = 7n;
const prompt = range(3000, 300);

function setup(bootstrapTimeoutMs = 30_000) {
  const clock = new VirtualClock();
  const transfer = new InProcessKvTransfer();
  const prefill = new DataParallelEngine({
    clock,
    mode: 'prefill',
    dataParallelSize: 4,
    workerId: PREFILL_WORKER,
    bootstrapHost: '10.0.0.7',
    bootstrapPort: 8998,
    bootstrapTimeoutMs,
    transfer,
  });
  const decode = new DataParallelEngine({
    clock,
    mode: 'decode',
    dataParallelSize: 2,
    workerId: 9n,
    transfer,
  });
  const decodeEvents: KvCacheEvent[] = [];
  decode.onKvEvent((e) => decodeEvents.push(e));
  return { clock, transfer, prefill, decode, decodeEvents };
}

async function prefillOn(
  env: ReturnType<typeof setup>,
  dpRank: number,
  settleMs = 5000,
): Promise<{ bootstrap: BootstrapInfo; chunks: GenerateChunk[] }> {
  const stream = env.prefill.generate({
    requestId: 'p',
    tokenIds: prompt,
    sampling: { maxTokens: 50, seed: 1 },
    dpRank,
  });
  await env.clock.settle({ until: env.clock.now() + settleMs });
  const chunks = await drain(stream);
  return { bootstrap: chunks[0].bootstrap!, chunks };
}

describe('disaggregated prefill and decode', () => {
  it('prefill on rank 3, decode pulling from rank 3: right tokens, KV handed over', async () => {
    const env = setup();
    const { bootstrap, chunks } = await prefillOn(env, 3);
    expect(bootstrap).toMatchObject({
      host: '10.0.0.7',
      port: 8998,
      prefillWorkerId: PREFILL_WORKER,
      prefillDpRank: 3,
    });
    expect(Number.isSafeInteger(bootstrap.room)).toBe(true);
    expect(chunks[0].dpRank).toBe(3);
    // Prefill generates exactly one token whatever max_tokens said.
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(1);
    expect(chunks.at(-1)?.finishReason).toBe('length');
    expect(env.prefill.placement('p')!.dpRank).toBe(3);
    // The prompt's KV stays referenced on rank 3 until claimed.
    expect(env.prefill.openRooms).toBe(1);
    const held = env.prefill.heldBlocks(3);
    expect(held.length).toBe(4);
    for (const b of held) expect(env.prefill.blockRefs(3, b.blockHash)).toBe(1);

    const stream = env.decode.generate({
      requestId: 'd',
      tokenIds: prompt,
      sampling: { maxTokens: 50, seed: 1 },
      dpRank: 1,
      bootstrap,
    });
    await env.clock.settle({ until: env.clock.now() + 5000 });
    const decoded = await drain(stream);
    const tokens = decoded.flatMap((c) => c.tokenIds);

    // The same request aggregated on one engine gives the same tokens.
    const agg = harness();
    const aggStream = agg.engine.generate({
      requestId: 'a',
      tokenIds: prompt,
      sampling: { maxTokens: 50, seed: 1 },
    });
    agg.clock.runUntilIdle();
    expect(tokens).toEqual((await drain(aggStream)).flatMap((c) => c.tokenIds));
    expect(tokens[0]).toBe(chunks.flatMap((c) => c.tokenIds)[0]);

    const placement = env.decode.placement('d')!;
    expect(placement).toMatchObject({ dpRank: 1, prefillDpRank: 3, prefillWorkerId: PREFILL_WORKER });
    expect(decoded[0].dpRank).toBe(1);
    // No prefill time on the decode side: the first token comes after one decode step.
    expect(placement.firstTokenAt - placement.arrivedAt).toBeLessThan(10);
    expect(env.decodeEvents).toHaveLength(0);
    // Claimed: the room is gone and the prefill rank's blocks are now only cached.
    expect(env.prefill.openRooms).toBe(0);
    for (const b of env.prefill.heldBlocks(3)) expect(env.prefill.blockRefs(3, b.blockHash)).toBe(0);
  });

  it('a decode naming the wrong prefill rank fails clearly and leaves the room for the right one', async () => {
    const env = setup();
    const { bootstrap } = await prefillOn(env, 3);
    const wrong = env.decode.generate({
      requestId: 'd-wrong',
      tokenIds: prompt,
      sampling: { maxTokens: 5, seed: 1 },
      bootstrap: { ...bootstrap, prefillDpRank: 2 },
    });
    await env.clock.settle({ until: env.clock.now() + 5000 });
    const error = await drain(wrong).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe('ENGINE_BOOTSTRAP_WRONG_RANK');
    expect((error as EngineError).message).toBe(
      `bootstrap room ${bootstrap.room} is on rank 3 of prefill worker 7, not rank 2`,
    );
    expect(env.decode.placement('d-wrong')!.finishReason).toBe('error');
    expect(env.decode.load(0) + env.decode.load(1)).toBe(0);
    expect(env.prefill.openRooms).toBe(1);

    const right = env.decode.generate({
      requestId: 'd',
      tokenIds: prompt,
      sampling: { maxTokens: 5, seed: 1 },
      bootstrap,
    });
    await env.clock.settle({ until: env.clock.now() + 5000 });
    expect((await drain(right)).at(-1)?.finishReason).toBe('length');
  });

  it('unknown rooms, unknown workers and other prompts fail with their own codes', async () => {
    const env = setup();
    const { bootstrap } = await prefillOn(env, 0);
    const failWith = async (requestId: string, info: BootstrapInfo, tokens = prompt) => {
      const stream = env.decode.generate({
        requestId,
        tokenIds: tokens,
        sampling: { maxTokens: 2 },
        bootstrap: info,
      });
      await env.clock.settle({ until: env.clock.now() + 5000 });
      return drain(stream).then(
        () => 'ok',
        (e: EngineError) => e.code,
      );
    };
    expect(await failWith('x1', { ...bootstrap, room: bootstrap.room + 1 })).toBe(
      'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
    );
    expect(await failWith('x2', { ...bootstrap, prefillWorkerId: 99n })).toBe(
      'ENGINE_BOOTSTRAP_UNKNOWN_WORKER',
    );
    expect(await failWith('x3', bootstrap, range(1, 300))).toBe('ENGINE_BOOTSTRAP_PROMPT_MISMATCH');
    // The mismatching claim consumed the room: it is gone now.
    expect(await failWith('x4', bootstrap)).toBe('ENGINE_BOOTSTRAP_ROOM_NOT_FOUND');
  });

  it('an unclaimed room is freed after its timeout', async () => {
    const env = setup(1000);
    const { bootstrap } = await prefillOn(env, 2, 100);
    const finishedAt = env.prefill.placement('p')!.finishedAt;
    expect(env.prefill.openRooms).toBe(1);
    env.clock.runUntil(finishedAt + 999);
    expect(env.prefill.openRooms).toBe(1);
    expect(env.prefill.rankMetrics(2).activeBlocks).toBeGreaterThan(0);
    env.clock.runUntil(finishedAt + 1000);
    expect(env.prefill.openRooms).toBe(0);
    expect(env.prefill.rankMetrics(2).activeBlocks).toBe(0);
    const late = env.decode.generate({
      requestId: 'late',
      tokenIds: prompt,
      sampling: { maxTokens: 2 },
      bootstrap,
    });
    await env.clock.settle({ until: env.clock.now() + 5000 });
    await expect(drain(late)).rejects.toMatchObject({ code: 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND' });
  });

  it('a decode that arrives before the prefill finished waits for the KV', async () => {
    const env = setup();
    const stream = env.prefill.generate({
      requestId: 'p',
      tokenIds: prompt,
      sampling: { maxTokens: 1, seed: 3 },
      dpRank: 1,
    });
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    const bootstrap = first.value.bootstrap as BootstrapInfo;
    expect(first.value.tokenIds).toEqual([]);
    const decode = env.decode.generate({
      requestId: 'd',
      tokenIds: prompt,
      sampling: { maxTokens: 3, seed: 3 },
      bootstrap,
    });
    await env.clock.settle({ until: env.clock.now() + 5000 });
    const chunks = await drain(decode);
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(3);
    expect(env.decode.placement('d')!.arrivedAt).toBe(0);
    expect(env.decode.placement('d')!.firstTokenAt).toBeGreaterThan(env.prefill.placement('p')!.finishedAt);
  });

  it('cancelling a prefill abandons its room; waiting decodes fail', async () => {
    const env = setup();
    const controller = new AbortController();
    const stream = env.prefill.generate(
      { requestId: 'p', tokenIds: prompt, sampling: { maxTokens: 1 }, dpRank: 0 },
      controller.signal,
    );
    const first = await stream[Symbol.asyncIterator]().next();
    const decode = env.decode.generate({
      requestId: 'd',
      tokenIds: prompt,
      sampling: { maxTokens: 3 },
      bootstrap: first.value.bootstrap,
    });
    controller.abort();
    await env.clock.settle({ until: env.clock.now() + 5000 });
    await expect(drain(decode)).rejects.toMatchObject({ code: 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND' });
    expect(env.prefill.openRooms).toBe(0);
    expect(env.prefill.rankMetrics(0).activeBlocks).toBe(0);
  });
});
