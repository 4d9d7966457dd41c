/**
 * Subscribes to an engine's ZMQ KV-event publishers (SGLang and vLLM share the design): one PUB
 * socket per data-parallel rank, at the base endpoint's port + rank, sending multipart messages
 * `[topic, seq (8-byte big-endian), msgpack EventBatch]`; optionally one ROUTER replay socket per
 * rank (same offset rule) answering `['', start_seq]` with `['', seq, payload]` for every buffered
 * batch with seq >= start_seq and a final `['', -1 (8 bytes), '']`.
 *
 * Per rank, batches are handled strictly in sequence order: a gap asks the replay socket for the
 * missing batches; when there is no replay socket or it cannot fill the gap, the rank is reset (the
 * sink drops that rank's blocks) and the reset is logged. A sequence that goes back means the publisher restarted:
 * also a reset. Malformed frames and payloads are counted and dropped.
 */
import { Dealer, Subscriber } from 'zeromq';
import type { KvEventData } from '../../kv/events.ts';
import type { BlockHasher } from '../../tokens/block-hash.ts';
import { log } from '../../util/log.ts';
import { convertRawEvent, decodeEventBatch, KvBatchFormatError } from './kv-event-batch.ts';

export interface KvEventSink {
  /** One converted event of the batch with engine sequence number `seq`, for rank `dpRank`. */
  apply(dpRank: number, seq: bigint, data: KvEventData): void;
  /** The rank's blocks are unknown from here on (before batch `seq`): forget them. */
  reset(dpRank: number, seq: bigint, reason: string): void;
}

export interface ZmqKvSubscriberOptions {
  /** `tcp://host:port` of rank 0's publisher; rank r publishes at port + r. */
  readonly endpoint: string;
  /** `tcp://host:port` of rank 0's replay socket (same offset rule); absent = no replay. */
  readonly replayEndpoint?: string;
  readonly dataParallelSize: number;
  /** Topic prefix to subscribe to (default '': everything). */
  readonly topic?: string;
  /** Hashes token ids at the engine's block size. */
  readonly hasher: BlockHasher;
  readonly sink: KvEventSink;
  /** How long one replay may take (default 2000 ms). */
  readonly replayTimeoutMs?: number;
}

export interface ZmqKvSubscriberStats {
  readonly batches: number;
  readonly events: number;
  readonly malformedFrames: number;
  readonly malformedPayloads: number;
  readonly gaps: number;
  readonly replayedBatches: number;
  readonly resets: number;
  readonly truncatedBlocks: number;
}

const END_SEQ = 0xffff_ffff_ffff_ffffn;

/** `tcp://host:port` with the port moved up by `offset` (the engines' per-rank rule). */
export function offsetEndpoint(endpoint: string, offset: number): string {
  const match = /^(tcp:\/\/.+):(\d+)$/.exec(endpoint);
  if (match === null) throw new TypeError(`expected tcp://host:port, got ${JSON.stringify(endpoint)}`);
  const port = Number(match[2]) + offset;
  if (port > 65535) throw new RangeError(`${endpoint} + rank ${offset} is past port 65535`);
  return `${match[1]}:${port}`;
}

interface Pending {
  readonly seq: bigint;
  readonly payload: Uint8Array;
}

class RankChannel {
  readonly rank: number;
  last: bigint | null = null;
  readonly queue: Pending[] = [];
  draining = false;
  readonly sub: Subscriber;
  replay: Dealer | null = null;

  constructor(rank: number, sub: Subscriber) {
    this.rank = rank;
    this.sub = sub;
  }
}

export class ZmqKvSubscriber {
  private readonly options: ZmqKvSubscriberOptions;
  private readonly channels: RankChannel[] = [];
  private closed = false;
  private readonly loops: Promise<void>[] = [];
  private readonly idleWaiters = new Set<() => void>();
  private readonly counts = {
    batches: 0,
    events: 0,
    malformedFrames: 0,
    malformedPayloads: 0,
    gaps: 0,
    replayedBatches: 0,
    resets: 0,
    truncatedBlocks: 0,
  };

  constructor(options: ZmqKvSubscriberOptions) {
    this.options = options;
    offsetEndpoint(options.endpoint, options.dataParallelSize - 1);
    if (options.replayEndpoint !== undefined)
      offsetEndpoint(options.replayEndpoint, options.dataParallelSize - 1);
    for (let rank = 0; rank < options.dataParallelSize; rank++) {
      const sub = new Subscriber({ reconnectInterval: 100, reconnectMaxInterval: 1000 });
      sub.connect(offsetEndpoint(options.endpoint, rank));
      sub.subscribe(options.topic ?? '');
      const channel = new RankChannel(rank, sub);
      this.channels.push(channel);
      this.loops.push(this.receiveLoop(channel));
    }
  }

  stats(): ZmqKvSubscriberStats {
    return { ...this.counts };
  }

  /** Newest sequence number handled per rank (null before any). */
  lastSequences(): (bigint | null)[] {
    return this.channels.map((c) => c.last);
  }

  /** Forgets every rank's sequence position (after an engine restart the next batch starts afresh). */
  forgetSequences(): void {
    for (const c of this.channels) c.last = null;
  }

  /** Resolves once no rank has batches waiting or a replay running. */
  idle(): Promise<void> {
    if (this.channels.every((c) => !c.draining && c.queue.length === 0)) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.add(resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.channels) {
      c.sub.close();
      c.replay?.close();
      c.replay = null;
    }
  }

  private async receiveLoop(channel: RankChannel): Promise<void> {
    try {
      for await (const frames of channel.sub) {
        if (this.closed) return;
        if (frames.length !== 3 || frames[1].length !== 8) {
          this.counts.malformedFrames++;
          log.warn(
            { dpRank: channel.rank, frames: frames.length, seqBytes: frames[1]?.length },
            'kv events: malformed ZMQ message dropped (want [topic, 8-byte seq, payload])',
          );
          continue;
        }
        const seq = frames[1].readBigUInt64BE(0);
        channel.queue.push({ seq, payload: frames[2] });
        if (!channel.draining) void this.drain(channel);
      }
    } catch (error) {
      if (!this.closed) log.error({ err: error, dpRank: channel.rank }, 'kv events: subscriber loop failed');
    }
  }

  private async drain(channel: RankChannel): Promise<void> {
    channel.draining = true;
    try {
      while (channel.queue.length > 0 && !this.closed) {
        const { seq, payload } = channel.queue.shift()!;
        const last = channel.last;
        if (last !== null && seq <= last) {
          this.reset(channel, seq, `sequence went back from ${last} to ${seq} (publisher restarted)`);
          channel.last = null;
        }
        if (channel.last === null && seq > 0n && this.options.replayEndpoint !== undefined) {
          // Joining late: take whatever history the publisher still buffers.
          const filled = await this.replay(channel, 0n, seq, true);
          if (!filled)
            log.warn(
              { dpRank: channel.rank, seq: seq.toString() },
              'kv events: joined late and the publisher no longer buffers the start; blocks stored before are unknown',
            );
        } else if (channel.last !== null && seq > channel.last + 1n) {
          this.counts.gaps++;
          const from = channel.last + 1n;
          const filled = this.options.replayEndpoint !== undefined && (await this.replay(channel, from, seq));
          if (!filled)
            this.reset(
              channel,
              seq,
              `missed batches ${from}..${seq - 1n}${this.options.replayEndpoint === undefined ? ' (no replay socket)' : ' (replay could not fill them)'}`,
            );
        }
        this.handleBatch(channel, seq, payload);
        channel.last = seq;
      }
    } finally {
      channel.draining = false;
      if (this.channels.every((c) => !c.draining && c.queue.length === 0)) {
        for (const wake of [...this.idleWaiters]) wake();
        this.idleWaiters.clear();
      }
    }
  }

  private reset(channel: RankChannel, eventId: bigint, reason: string): void {
    this.counts.resets++;
    log.warn({ dpRank: channel.rank, eventId: eventId.toString(), reason }, 'kv events: resetting the rank');
    this.options.sink.reset(channel.rank, eventId, reason);
  }

  /**
   * Asks the rank's replay socket for batches [from, before) and handles them in order. True when
   * every batch of the range arrived. With `fromOldest`, the replay may start at the oldest batch
   * still buffered (joining late: some history beats none).
   */
  private async replay(
    channel: RankChannel,
    from: bigint,
    before: bigint,
    fromOldest = false,
  ): Promise<boolean> {
    const endpoint = offsetEndpoint(this.options.replayEndpoint!, channel.rank);
    const timeoutMs = this.options.replayTimeoutMs ?? 2000;
    const dealer =
      channel.replay ??
      (() => {
        const d = new Dealer({ receiveTimeout: timeoutMs, sendTimeout: timeoutMs, linger: 0 });
        d.connect(endpoint);
        channel.replay = d;
        return d;
      })();
    const start = Buffer.alloc(8);
    start.writeBigUInt64BE(from);
    let next = from;
    let complete = true;
    let broken = false;
    try {
      await dealer.send([Buffer.alloc(0), start]);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (Date.now() > deadline) throw new Error('replay timed out');
        const frames = await dealer.receive();
        if (frames.length !== 3 || frames[1].length !== 8) {
          this.counts.malformedFrames++;
          continue;
        }
        const seq = frames[1].readBigUInt64BE(0);
        if (seq === END_SEQ) break;
        // Read on to the end marker either way, so the next replay starts in step.
        if (broken || seq < next || seq >= before) continue;
        if (seq !== next) {
          complete = false;
          if (!(fromOldest && next === from)) {
            broken = true; // the publisher no longer buffers part of the range
            continue;
          }
          next = seq;
        }
        this.counts.replayedBatches++;
        this.handleBatch(channel, seq, frames[2]);
        channel.last = seq;
        next = seq + 1n;
      }
    } catch (error) {
      // A late answer must not be read as the next replay's: start over with a fresh socket.
      dealer.close();
      channel.replay = null;
      log.warn({ dpRank: channel.rank, endpoint, err: String(error) }, 'kv events: replay failed');
    }
    const filled = complete && next === before;
    log.info(
      { dpRank: channel.rank, from: from.toString(), before: before.toString(), filled },
      'kv events: replayed missed batches',
    );
    return filled;
  }

  private handleBatch(channel: RankChannel, seq: bigint, payload: Uint8Array): void {
    const size = this.options.dataParallelSize;
    let batch: ReturnType<typeof decodeEventBatch>;
    try {
      batch = decodeEventBatch(payload);
      if (batch.dpRank !== undefined && batch.dpRank >= size)
        throw new KvBatchFormatError(`data_parallel_rank ${batch.dpRank} out of range [0, ${size})`);
    } catch (error) {
      this.counts.malformedPayloads++;
      log.warn(
        {
          dpRank: channel.rank,
          seq: seq.toString(),
          err: error instanceof Error ? error.message : String(error),
        },
        'kv events: malformed batch dropped',
      );
      return;
    }
    this.counts.batches++;
    const rank = batch.dpRank ?? channel.rank;
    const note = { truncatedBlocks: 0, reason: null as 'block_size' | 'short_tokens' | null };
    for (const raw of batch.events) {
      const data = convertRawEvent(raw, this.options.hasher, note);
      if (data === null) continue;
      this.counts.events++;
      this.options.sink.apply(rank, seq, data);
    }
    if (note.truncatedBlocks > 0) {
      this.counts.truncatedBlocks += note.truncatedBlocks;
      log.debug({ dpRank: rank, seq: seq.toString(), ...note }, 'kv events: blocks not converted');
    }
  }
}
