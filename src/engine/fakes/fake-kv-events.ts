/**
 * Turns the mock engine's KV events into the engines' ZMQ batches. The mock engine's stored events
 * carry hashes but not tokens, while SGLang's and vLLM's BlockStored carry `token_ids`. So the fake
 * learns each block's tokens from the requests it runs: prompt blocks when a request starts, and
 * output blocks as tokens are generated. An output block is stored just before its last token
 * reaches the request's stream, so events are flushed at the end of the engine step (a
 * microtask): one EventBatch per rank per step, as the engines publish.
 */
import type { KvCacheEvent } from '../../kv/events.ts';
import type { BlockHasher } from '../../tokens/block-hash.ts';
import { readPackedU64 } from '../../tokens/u64.ts';
import { log } from '../../util/log.ts';
import type { RawKvEvent } from '../adapters/kv-event-batch.ts';
import { ChunkStream } from '../stream.ts';
import type { FakeKvPublisher } from './zmq-kv-publisher.ts';

/** A request's output stream that also reports each token as the engine produces it. */
export class TrackedStream extends ChunkStream {
  constructor(
    cancel: () => void,
    private readonly onTokenSeen: (token: number) => void,
  ) {
    super(cancel);
  }

  override onToken(token: number): void {
    this.onTokenSeen(token);
    super.onToken(token);
  }
}

export class FakeKvEventSource {
  private readonly hasher: BlockHasher;
  private readonly publisher: FakeKvPublisher;
  private readonly blockTokens = new Map<bigint, number[]>();
  private readonly pending = new Map<number, RawKvEvent[]>();
  private flushScheduled = false;

  constructor(hasher: BlockHasher, publisher: FakeKvPublisher) {
    this.hasher = hasher;
    this.publisher = publisher;
  }

  /** Follows one request: its prompt blocks now, its output blocks as `onToken` sees them. */
  track(prompt: readonly number[]): (token: number) => void {
    const sequence = [...prompt];
    this.learnBlocks(sequence, 0);
    const blockSize = this.hasher.blockSize;
    return (token) => {
      sequence.push(token);
      if (sequence.length % blockSize === 0) this.learnBlocks(sequence, sequence.length / blockSize - 1);
    };
  }

  /** The engine's event listener. */
  collect(event: KvCacheEvent): void {
    const data = event.data;
    let raw: RawKvEvent;
    if (data.kind === 'cleared') raw = { type: 'AllBlocksCleared' };
    else if (data.kind === 'removed') raw = { type: 'BlockRemoved', blockHashes: data.blockHashes };
    else
      raw = {
        type: 'BlockStored',
        blockHashes: data.blocks.map((b) => b.blockHash),
        parentBlockHash: data.parentHash,
        tokenIds: [], // filled at flush
        blockSize: this.hasher.blockSize,
        loraId: null,
      };
    const list = this.pending.get(event.dpRank);
    if (list === undefined) this.pending.set(event.dpRank, [raw]);
    else list.push(raw);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private learnBlocks(tokens: readonly number[], fromBlock: number): void {
    const count = this.hasher.blockCount(tokens.length);
    if (count <= fromBlock) return;
    const seqHashes = this.hasher.sequenceHashes(this.hasher.localHashes(tokens));
    const size = this.hasher.blockSize;
    for (let i = fromBlock; i < count; i++)
      this.blockTokens.set(readPackedU64(seqHashes, i), tokens.slice(i * size, (i + 1) * size));
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const [rank, events] of this.pending) {
      const batch = events.map((e): RawKvEvent => {
        if (e.type !== 'BlockStored') return e;
        const tokens: number[] = [];
        for (const hash of e.blockHashes) {
          const block = this.blockTokens.get(hash);
          if (block === undefined) {
            log.warn({ hash: hash.toString(16) }, 'fake engine: tokens of a stored block unknown');
            break;
          }
          tokens.push(...block);
        }
        return { ...e, tokenIds: tokens };
      });
      void this.publisher.publish(rank, batch).catch(() => undefined);
    }
    this.pending.clear();
  }
}
