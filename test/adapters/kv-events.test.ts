/**
 * KV events from the engines' ZMQ publishers (real sockets on loopback): both msgpack layouts,
 * i64/u64 hashes, Dynamo's conversion rules, gap recovery through the replay socket or a logged
 * reset, and malformed frames and payloads counted and dropped while the adapter keeps working.
 */
import { encode } from '@msgpack/msgpack';
import { afterEach, describe, expect, it } from 'vitest';
import {
  convertRawEvent,
  decodeEventBatch,
  type RawKvEvent,
} from '../../src/engine/adapters/kv-event-batch.ts';
import { probeSglang, SglangEngineAdapter } from '../../src/engine/adapters/sglang-adapter.ts';
import { probeVllm, VllmEngineAdapter } from '../../src/engine/adapters/vllm-adapter.ts';
import { type FakeEngineOptions, FakeEngineServer } from '../../src/engine/fakes/fake-engine-server.ts';
import { encodeBatch } from '../../src/engine/fakes/zmq-kv-publisher.ts';
import type { KvCacheEvent } from '../../src/kv/events.ts';
import { RadixTreeIndexer } from '../../src/kv/radix-tree.ts';
import { BlockHasher } from '../../src/tokens/block-hash.ts';
import { u64FromHalves } from '../../src/tokens/u64.ts';
import { blockSet, collect, freePorts, waitUntil } from './helpers.ts';

const BLOCK = 4;

describe('EventBatch decoding and conversion', () => {
  const stored: RawKvEvent = {
    type: 'BlockStored',
    blockHashes: [0xffff_ffff_ffff_fff0n, 5n],
    parentBlockHash: 0x8000_0000_0000_0001n,
    tokenIds: [1, 2, 3, 4, 5, 6, 7, 8],
    blockSize: BLOCK,
    loraId: null,
  };
  const events: RawKvEvent[] = [
    stored,
    { type: 'BlockRemoved', blockHashes: [0xffff_ffff_ffff_fff0n] },
    { type: 'AllBlocksCleared' },
  ];

  it.each(['array', 'map'] as const)('%s layout round-trips, hashes taken bitwise as u64', (layout) => {
    const batch = decodeEventBatch(encodeBatch(layout, 1700000000.25, events, 3));
    expect(batch.dpRank).toBe(3);
    expect(batch.ts).toBeCloseTo(1700000000.25);
    expect(batch.events).toEqual(events);
  });

  it('the array layout carries hashes as signed i64 on the wire', () => {
    const raw = encodeBatch('array', 1.5, [stored], 0);
    // 0xd3 = msgpack int64: the negative i64 form of 0xffff_ffff_ffff_fff0.
    expect(
      Buffer.from(raw).includes(Buffer.from([0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0])),
    ).toBe(true);
  });

  it('accepts a batch without a rank, and byte-string hashes (first 8 bytes, big-endian)', () => {
    const hash = Uint8Array.from([0, 0, 0, 0, 0, 0, 1, 2, 9, 9, 9]);
    const batch = decodeEventBatch(encode([2.5, [['BlockRemoved', [hash]]]]));
    expect(batch.dpRank).toBeUndefined();
    expect(batch.events[0]).toEqual({ type: 'BlockRemoved', blockHashes: [0x102n] });
  });

  it('tokens_hash is our hash of each block; conversion stops at the first short block', () => {
    const hasher = new BlockHasher({ blockSize: BLOCK });
    const local = hasher.localHashes([1, 2, 3, 4, 5, 6, 7, 8]);
    const full = convertRawEvent(stored, hasher);
    expect(full).toEqual({
      kind: 'stored',
      parentHash: 0x8000_0000_0000_0001n,
      blocks: [
        { blockHash: 0xffff_ffff_ffff_fff0n, tokensHash: u64FromHalves(local[0], local[1]) },
        { blockHash: 5n, tokensHash: u64FromHalves(local[2], local[3]) },
      ],
    });
    const note = { truncatedBlocks: 0, reason: null as 'block_size' | 'short_tokens' | null };
    const short = convertRawEvent({ ...stored, tokenIds: [1, 2, 3, 4, 5, 6] }, hasher, note);
    expect(short?.kind === 'stored' && short.blocks.length).toBe(1);
    expect(note).toEqual({ truncatedBlocks: 1, reason: 'short_tokens' });
    expect(convertRawEvent({ ...stored, blockSize: 8 }, hasher)).toBeNull();
  });

  it.each([
    ['not msgpack', Uint8Array.from([0xc1])],
    ['a scalar', encode(7)],
    ['a map without events', encode({ ts: 1.5 })],
    ['an unknown tag', encode([1.5, [['BlockMoved', [1]]], 0])],
    ['a bad token id', encode([1.5, [['BlockStored', [1], null, [-1, 2, 3, 4], 4, null]], 0])],
    ['a bad rank', encode([1.5, [], -2])],
    ['a bad hash', encode([1.5, [['BlockRemoved', ['abc']]], 0])],
  ])('rejects %s with a coded error', (_name, payload) => {
    expect(() => decodeEventBatch(payload)).toThrow(expect.objectContaining({ code: 'KV_BATCH_MALFORMED' }));
  });
});

describe('KV events over ZMQ', () => {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function sglang(options: Partial<FakeEngineOptions>, dp: number, replay: boolean) {
    const base = await freePorts(dp * 2);
    const fake = await FakeEngineServer.start({
      api: 'sglang',
      zmqPort: base,
      ...(replay ? { replayPort: base + dp } : {}),
      dataParallelSize: dp,
      engine: { blockSize: BLOCK, numGpuBlocks: 256, speedupRatio: 0 },
      ...options,
    });
    cleanup.push(() => fake.close());
    const adapter = SglangEngineAdapter.factory(fake.url, await probeSglang(fake.url))({ workerId: 42n });
    cleanup.push(() => adapter.close());
    const seen: KvCacheEvent[] = [];
    adapter.onKvEvent((e) => seen.push(e));
    await new Promise((r) => setTimeout(r, 200)); // SUB sockets connect (ZMQ's slow joiner)
    return { fake, adapter, seen };
  }

  async function run(
    adapter: SglangEngineAdapter | VllmEngineAdapter,
    id: string,
    tokens: number[],
    dpRank: number,
  ) {
    const chunks = await collect(
      adapter.generate(
        { requestId: id, tokenIds: tokens, sampling: { maxTokens: 6, ignoreEos: true }, dpRank },
        new AbortController().signal,
      ),
    );
    expect(chunks.at(-1)?.finishReason).toBe('length');
  }

  const truth = (fake: FakeEngineServer, rank: number) =>
    blockSet(fake.engine.localIndexer(rank).dump(), rank);
  const view = (adapter: SglangEngineAdapter | VllmEngineAdapter, rank: number) =>
    blockSet(adapter.dump(rank).events, rank);
  /** Waits until the adapter's view of each rank holds as many blocks as the engine's own. */
  const caughtUp = (
    adapter: SglangEngineAdapter | VllmEngineAdapter,
    fake: FakeEngineServer,
    ranks: number[],
  ) =>
    waitUntil(async () => {
      await adapter.kvEventsIdle();
      return ranks.every((rank) => view(adapter, rank).length === truth(fake, rank).length);
    });
  const prompt = (seed: number, length = 13) => Array.from({ length }, (_, i) => (seed * 131 + i * 7) % 5000);

  it('vLLM layout (maps, u64 hashes): per-rank views equal the fake engine, rank in the header', async () => {
    const base = await freePorts(2);
    const fake = await FakeEngineServer.start({
      api: 'vllm',
      zmqPort: base,
      dataParallelSize: 2,
      engine: { blockSize: BLOCK, numGpuBlocks: 256, speedupRatio: 0 },
    });
    cleanup.push(() => fake.close());
    const info = await probeVllm(fake.url, { dataParallelSize: 2 });
    expect(info.description).toMatchObject({ kvBlockSize: BLOCK, totalKvBlocks: 256, dataParallelSize: 2 });
    const adapter = VllmEngineAdapter.factory(fake.url, info, {
      kvEvents: { endpoint: `tcp://127.0.0.1:${base}` },
    })({ workerId: 9n });
    cleanup.push(() => adapter.close());
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 6; i++) await run(adapter, `v${i}`, prompt(i % 3), i % 2);
    expect(fake.requests.map((r) => [r.headerRank, r.rank])).toEqual([0, 1, 0, 1, 0, 1].map((r) => [r, r]));
    await caughtUp(adapter, fake, [0, 1]);
    for (const rank of [0, 1]) expect(view(adapter, rank)).toEqual(truth(fake, rank));
    expect(truth(fake, 0).length).toBeGreaterThan(0);
  });

  it('a dropped sequence number is recovered through the replay socket', async () => {
    const { fake, adapter } = await sglang({}, 2, true);
    await run(adapter, 'a', prompt(1), 1);
    fake.publisher!.dropNext(1);
    await run(adapter, 'b', prompt(2), 1);
    await run(adapter, 'c', prompt(3), 1);
    await caughtUp(adapter, fake, [1]);
    const stats = adapter.kvEventStats()!;
    expect(stats.gaps).toBe(1);
    expect(stats.replayedBatches).toBeGreaterThanOrEqual(1);
    expect(stats.resets).toBe(0);
    expect(view(adapter, 1)).toEqual(truth(fake, 1));
  });

  it('a worker joining late replays the history the publisher still buffers', async () => {
    const base = await freePorts(2);
    const fake = await FakeEngineServer.start({
      api: 'sglang',
      zmqPort: base,
      replayPort: base + 1,
      engine: { blockSize: BLOCK, numGpuBlocks: 256, speedupRatio: 0 },
    });
    cleanup.push(() => fake.close());
    const info = await probeSglang(fake.url);
    const { kvEvents: _none, ...withoutEvents } = info;
    const early = SglangEngineAdapter.factory(fake.url, withoutEvents)({ workerId: 1n });
    cleanup.push(() => early.close());
    for (let i = 0; i < 4; i++) await run(early, `early-${i}`, prompt(10 + i), 0);
    expect(fake.publisher!.nextSequence(0)).toBeGreaterThan(0n);
    const late = SglangEngineAdapter.factory(fake.url, info)({ workerId: 2n });
    cleanup.push(() => late.close());
    await new Promise((r) => setTimeout(r, 200));
    await run(late, 'late', prompt(20), 0);
    await caughtUp(late, fake, [0]);
    expect(view(late, 0)).toEqual(truth(fake, 0));
    expect(late.kvEventStats()!.replayedBatches).toBeGreaterThanOrEqual(4);
  });

  it('without a replay socket, a gap resets that rank (its blocks removed, other ranks kept), the view restarts, ids and ranges run on', async () => {
    const { fake, adapter, seen } = await sglang({}, 2, false);
    await run(adapter, 'a', prompt(1), 0);
    await run(adapter, 'x', prompt(9), 1);
    fake.publisher!.dropNext(0);
    await run(adapter, 'b', prompt(2), 0);
    await run(adapter, 'c', prompt(3), 0);
    await waitUntil(async () => {
      await adapter.kvEventsIdle();
      // The reset may come from b's later batches before c's events arrive: wait for those too.
      return adapter.kvEventStats()!.resets === 1 && view(adapter, 0).length > 0;
    });
    expect(seen.filter((e) => e.data.kind === 'cleared')).toEqual([]);
    const removedOnReset = seen.filter((e) => e.data.kind === 'removed' && e.dpRank === 0);
    expect(removedOnReset.length).toBeGreaterThan(0);
    // A router fed the same events keeps rank 1's blocks and holds on rank 0 only what followed.
    const router = new RadixTreeIndexer();
    // (Events under a parent lost in the gap are refused there as in the adapter's own view.)
    for (const event of seen) router.apply({ workerId: 1n, event });
    const routerView = (rank: number) => blockSet(router.dump(), rank).sort();
    expect(routerView(1)).toEqual([...truth(fake, 1)].sort());
    expect(routerView(0)).toEqual([...view(adapter, 0)].sort());
    // Ids stay dense per rank across the reset.
    const ids = seen.filter((e) => e.dpRank === 0).map((e) => e.eventId);
    expect(ids).toEqual(ids.map((_, i) => BigInt(i)));
    // A router that missed events asks for a range across the reset and gets exactly what was published.
    const published = seen.filter((e) => e.dpRank === 0);
    const range = adapter.eventsInRange(0, 0n, published.at(-1)!.eventId);
    expect(range.kind === 'events' ? range.events.map((e) => e.event) : range).toEqual(published);
    // Rank 0 now knows only what came after the reset; rank 1 is untouched.
    const after = view(adapter, 0);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((b) => truth(fake, 0).includes(b))).toBe(true);
    expect(after.length).toBeLessThan(truth(fake, 0).length);
    expect(view(adapter, 1)).toEqual(truth(fake, 1));
  });

  it('malformed frames and payloads are counted and dropped; the subscription keeps working', async () => {
    const { fake, adapter } = await sglang({}, 1, true);
    const pub = fake.publisher!;
    await pub.sendRaw(0, ['', 'two frames only']);
    await pub.sendRaw(0, ['', Buffer.alloc(3), 'seq of 3 bytes']);
    await pub.sendRaw(0, ['', Buffer.alloc(8), 'x', 'four frames']);
    await pub.publishPayload(0, Uint8Array.from([0xc1]));
    await pub.publishPayload(0, encode({ ts: 1.5, events: 'nope' }));
    await pub.publishPayload(0, encode([1.5, [['BlockStored', [1], null, [1, 2, 3, 4], 4, null]], 5]));
    await run(adapter, 'a', prompt(4), 0);
    await run(adapter, 'b', prompt(5), 0);
    await caughtUp(adapter, fake, [0]);
    const stats = adapter.kvEventStats()!;
    expect(stats.malformedFrames).toBe(3);
    expect(stats.malformedPayloads).toBe(3);
    expect(stats.gaps + stats.resets).toBe(0);
    expect(view(adapter, 0)).toEqual(truth(fake, 0));
  });
});
