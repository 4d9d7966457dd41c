/**
 * The engines' ZMQ KV-event publisher, for the fakes: per data-parallel rank one PUB socket at
 * port + rank sending `[topic, seq (8-byte big-endian), msgpack EventBatch]`, and optionally one
 * ROUTER replay socket at replayPort + rank that streams buffered batches with seq >= the requested
 * start as `[identity, '', seq, payload]` and ends with `[identity, '', -1, '']` (the protocol of
 * SGLang's and vLLM's ZmqEventPublisher).
 *
 * Layouts: 'array' is SGLang's (msgspec `array_like=True`): `[ts, events, dp_rank]`, events as
 * tagged arrays, hashes as signed i64. 'map' is newer vLLM's: `{ts, events, data_parallel_rank}`,
 * events as maps tagged under `type`, hashes as u64.
 */
import { encode } from '@msgpack/msgpack';
import { Publisher, Router } from 'zeromq';
import type { RawKvEvent } from '../adapters/kv-event-batch.ts';

export type KvEventLayout = 'array' | 'map';

export interface FakeKvPublisherOptions {
  readonly host?: string;
  /** Rank 0's PUB port; rank r binds port + r. */
  readonly port: number;
  /** Rank 0's replay ROUTER port (rank r: + r); absent = no replay socket. */
  readonly replayPort?: number;
  readonly dataParallelSize: number;
  readonly layout: KvEventLayout;
  readonly topic?: string;
  /** Batches kept for replay per rank (default 10 000). */
  readonly bufferSize?: number;
}

interface RankSockets {
  readonly pub: Publisher;
  readonly replay: Router | null;
  readonly buffer: { seq: bigint; payload: Uint8Array }[];
  next: bigint;
  dropNext: number;
  /** zeromq refuses concurrent sends on one socket: sends are chained. */
  sending: Promise<void>;
}

const END_SEQ = Buffer.alloc(8, 0xff);

function seqBytes(seq: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(seq);
  return b;
}

export class FakeKvPublisher {
  readonly options: FakeKvPublisherOptions;
  private readonly ranks: RankSockets[];
  private closed = false;

  private constructor(options: FakeKvPublisherOptions, ranks: RankSockets[]) {
    this.options = options;
    this.ranks = ranks;
    for (const r of ranks) if (r.replay !== null) void this.serveReplay(r);
  }

  static async start(options: FakeKvPublisherOptions): Promise<FakeKvPublisher> {
    const host = options.host ?? '127.0.0.1';
    const ranks: RankSockets[] = [];
    try {
      for (let rank = 0; rank < options.dataParallelSize; rank++) {
        const pub = new Publisher({ linger: 0, sendHighWaterMark: 100_000 });
        ranks.push({ pub, replay: null, buffer: [], next: 0n, dropNext: 0, sending: Promise.resolve() });
        await pub.bind(`tcp://${host}:${options.port + rank}`);
        if (options.replayPort !== undefined) {
          const replay = new Router({ linger: 0 });
          (ranks[rank] as { replay: Router | null }).replay = replay;
          await replay.bind(`tcp://${host}:${options.replayPort + rank}`);
        }
      }
    } catch (error) {
      for (const r of ranks) {
        r.pub.close();
        r.replay?.close();
      }
      throw error;
    }
    return new FakeKvPublisher(options, ranks);
  }

  /** Sequence number the rank's next batch gets. */
  nextSequence(dpRank: number): bigint {
    return this.ranks[dpRank].next;
  }

  /** The next `count` batches of the rank are buffered for replay but never sent (a lost message). */
  dropNext(dpRank: number, count = 1): void {
    this.ranks[dpRank].dropNext += count;
  }

  /** Sends raw frames on a rank's PUB socket (tests of malformed input). */
  async sendRaw(dpRank: number, frames: (Uint8Array | string)[]): Promise<void> {
    await this.send(this.ranks[dpRank], frames);
  }

  private send(r: RankSockets, frames: (Uint8Array | string)[]): Promise<void> {
    const sent = r.sending.then(() => (this.closed ? undefined : r.pub.send(frames)));
    r.sending = sent.catch(() => undefined);
    return sent;
  }

  /** Sends `payload` as the rank's next batch (next sequence number, not kept for replay). */
  async publishPayload(dpRank: number, payload: Uint8Array): Promise<bigint> {
    const r = this.ranks[dpRank];
    const seq = r.next++;
    await this.send(r, [this.options.topic ?? '', seqBytes(seq), payload]);
    return seq;
  }

  /** Publishes one batch of the rank's events; returns its sequence number. */
  async publish(dpRank: number, events: readonly RawKvEvent[], ts = Date.now() / 1000): Promise<bigint> {
    const r = this.ranks[dpRank];
    const seq = r.next++;
    const payload = encodeBatch(this.options.layout, ts, events, dpRank);
    r.buffer.push({ seq, payload });
    if (r.buffer.length > (this.options.bufferSize ?? 10_000)) r.buffer.shift();
    if (r.dropNext > 0) {
      r.dropNext--;
      return seq;
    }
    await this.send(r, [this.options.topic ?? '', seqBytes(seq), payload]);
    return seq;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.ranks) {
      r.pub.close();
      r.replay?.close();
    }
  }

  private async serveReplay(r: RankSockets): Promise<void> {
    const router = r.replay!;
    try {
      for await (const frames of router) {
        if (frames.length !== 3 || frames[2].length !== 8) continue; // the engines log and ignore these
        const [identity] = frames;
        const start = frames[2].readBigUInt64BE(0);
        for (const { seq, payload } of [...r.buffer])
          if (seq >= start) await router.send([identity, Buffer.alloc(0), seqBytes(seq), payload]);
        await router.send([identity, Buffer.alloc(0), END_SEQ, Buffer.alloc(0)]);
      }
    } catch {
      // closed
    }
  }
}

/** msgpack EventBatch bytes in the given layout. */
export function encodeBatch(
  layout: KvEventLayout,
  ts: number,
  events: readonly RawKvEvent[],
  dpRank: number,
): Uint8Array {
  // A float ts even when it happens to be whole (msgspec encodes a float).
  const tsValue = Number.isInteger(ts) ? ts + 0.5 : ts;
  if (layout === 'array') return encode([tsValue, events.map(arrayEvent), dpRank], { useBigInt64: true });
  return encode(
    { ts: tsValue, events: events.map(mapEvent), data_parallel_rank: dpRank },
    { useBigInt64: true },
  );
}

const i64 = (h: bigint) => BigInt.asIntN(64, h);

function arrayEvent(e: RawKvEvent): unknown[] {
  switch (e.type) {
    case 'BlockStored':
      return [
        'BlockStored',
        e.blockHashes.map(i64),
        e.parentBlockHash === null ? null : i64(e.parentBlockHash),
        e.tokenIds,
        e.blockSize,
        e.loraId,
      ];
    case 'BlockRemoved':
      return ['BlockRemoved', e.blockHashes.map(i64)];
    case 'AllBlocksCleared':
      return ['AllBlocksCleared'];
  }
}

function mapEvent(e: RawKvEvent): Record<string, unknown> {
  switch (e.type) {
    case 'BlockStored':
      return {
        type: 'BlockStored',
        block_hashes: e.blockHashes,
        parent_block_hash: e.parentBlockHash,
        token_ids: e.tokenIds,
        block_size: e.blockSize,
        lora_id: e.loraId,
        medium: 'GPU',
        lora_name: null,
      };
    case 'BlockRemoved':
      return { type: 'BlockRemoved', block_hashes: e.blockHashes, medium: 'GPU' };
    case 'AllBlocksCleared':
      return { type: 'AllBlocksCleared' };
  }
}
