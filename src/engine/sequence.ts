/**
 * One request inside a rank's scheduler: its tokens (prompt, then generated), the hashes of its
 * full blocks, the KV blocks it holds, and its progress and timing.
 */
import type { BootstrapInfo, FinishReason, Usage } from '../protocol/generate.ts';
import type { BlockHasher } from '../tokens/block-hash.ts';
import { readPackedU64, unpackU64s } from '../tokens/u64.ts';
import type { EngineError } from './errors.ts';
import type { BlockHashes, KvBlock } from './kv-manager.ts';

export interface RequestTiming {
  /** Clock time the engine accepted the request. */
  readonly arrivedAt: number;
  /** Clock time the first token was emitted (NaN if none was). */
  readonly firstTokenAt: number;
  /** Clock time the request finished. */
  readonly finishedAt: number;
}

export interface RequestResult {
  readonly reason: FinishReason;
  readonly usage: Usage;
  /** The rank the request ran on (-1 if it never reached one). */
  readonly dpRank: number;
  readonly timing: RequestTiming;
  /** Set when reason is 'error'. */
  readonly error?: EngineError;
}

/** Low-level consumer of one request's output: no promises, no allocation per token. */
export interface RequestSink {
  /** Once, when the request is placed on its rank (prefill mode: with the room holding its KV). */
  onStart?(dpRank: number, bootstrap: BootstrapInfo | undefined): void;
  /** `last`: the request finishes with this token (its onFinish follows at once, unless cancelled). */
  onToken(token: number, last?: boolean): void;
  onFinish(result: RequestResult): void;
}

/** Stop tokens: a short list (searched) or a Set. */
export type StopTokens = readonly number[] | ReadonlySet<number>;

/** Up to this many stop tokens are kept as a list: searching a few beats building a Set per request. */
export const SHORT_STOP_LIST = 16;

export type SequenceState = 'pulling' | 'waiting' | 'prefilling' | 'running' | 'done';

export class EngineSequence {
  readonly requestId: string;
  /** The caller's prompt, kept by reference (not copied): callers must not mutate it. */
  readonly prompt: readonly number[] | Uint32Array;
  /** Generated tokens. */
  readonly output: number[] = [];
  readonly promptLength: number;
  readonly blockSize: number;
  readonly maxTokens: number;
  /** Tokens that end the request with reason 'stop' (stop ids, plus EOS unless ignored). */
  readonly stopTokens: StopTokens | null;
  readonly seed: number;
  readonly sink: RequestSink;
  /** Hashes of every full block of prompt + output (empty when prefix caching is off). */
  readonly hashes: { seqHashes: bigint[]; localHashes: bigint[] };
  blocks: KvBlock[] = [];
  /** Tokens whose KV is computed. */
  computed = 0;
  generated = 0;
  /** Prompt tokens served from the prefix cache at first admission (-1 before). */
  cachedTokens = -1;
  state: SequenceState = 'waiting';
  dpRank = -1;
  /** The prompt's KV was pulled from a prefill worker: admit without prefill time. */
  kvPulled = false;
  preemptions = 0;
  readonly arrivedAt: number;
  firstTokenAt = Number.NaN;
  finishedAt = Number.NaN;

  constructor(init: {
    requestId: string;
    /** The prompt: an array of token ids, or a Uint32Array (hashed without a copy). */
    tokens: readonly number[] | Uint32Array;
    maxTokens: number;
    stopTokens: StopTokens | null;
    seed: number;
    sink: RequestSink;
    arrivedAt: number;
    blockSize: number;
    hasher: BlockHasher | null;
  }) {
    this.requestId = init.requestId;
    this.prompt = init.tokens;
    this.promptLength = init.tokens.length;
    this.blockSize = init.blockSize;
    this.maxTokens = init.maxTokens;
    this.stopTokens = init.stopTokens;
    this.seed = init.seed;
    this.sink = init.sink;
    this.arrivedAt = init.arrivedAt;
    // A prompt shorter than a block has no full block to hash.
    if (init.hasher !== null && init.tokens.length >= init.blockSize) {
      const local = init.hasher.localHashes(init.tokens);
      const seq = init.hasher.sequenceHashes(local);
      this.hashes = { localHashes: unpackU64s(local), seqHashes: unpackU64s(seq) };
    } else this.hashes = { seqHashes: [], localHashes: [] };
  }

  /** The token ends the request with reason 'stop'. */
  isStopToken(token: number): boolean {
    const stops = this.stopTokens;
    if (stops === null) return false;
    return isTokenList(stops) ? stops.includes(token) : stops.has(token);
  }

  /** Prompt plus generated tokens. */
  get length(): number {
    return this.promptLength + this.output.length;
  }

  tokenAt(index: number): number {
    return index < this.promptLength ? this.prompt[index] : this.output[index - this.promptLength];
  }

  get blockHashes(): BlockHashes {
    return this.hashes;
  }

  /**
   * Appends the hashes of the block that the last token completed (block `index`), chaining its
   * sequence hash from the previous block's.
   */
  extendHashes(hasher: BlockHasher, index: number, scratch: Uint32Array, blockTokens: Uint32Array): void {
    const bs = hasher.blockSize;
    for (let i = 0; i < bs; i++) blockTokens[i] = this.tokenAt(index * bs + i);
    const local = hasher.localHashes(blockTokens, scratch.subarray(2, 4));
    const localHash = readPackedU64(local, 0);
    let seqHash = localHash;
    if (index > 0) {
      // seq[i] = H(seq[i-1] || local[i]): a two-block rolling hash whose first "local" is seq[i-1].
      const prev = this.hashes.seqHashes[index - 1];
      scratch[0] = Number(prev & 0xffff_ffffn);
      scratch[1] = Number(prev >> 32n);
      const out = hasher.sequenceHashes(scratch.subarray(0, 4), scratch.subarray(4, 8));
      seqHash = readPackedU64(out, 1);
    }
    this.hashes.localHashes.push(localHash);
    this.hashes.seqHashes.push(seqHash);
  }

  usage(): Usage {
    return {
      promptTokens: this.promptLength,
      completionTokens: this.generated,
      cachedTokens: Math.max(0, this.cachedTokens),
    };
  }

  timing(): RequestTiming {
    return { arrivedAt: this.arrivedAt, firstTokenAt: this.firstTokenAt, finishedAt: this.finishedAt };
  }
}

function isTokenList(stops: StopTokens): stops is readonly number[] {
  return Array.isArray(stops);
}
