/**
 * KV block hashing, bit-exact with Dynamo's `compute_block_hash_for_seq` / `compute_seq_hash`:
 * - local block hash (`tokens_hash`): xxh3-64(seed) over a full block's tokens as LE u32;
 * - sequence hash (`block_hash`): seq[0] = local[0], seq[i] = xxh3-64(LE64(seq[i-1]) || LE64(local[i])).
 *
 * Hashes come back packed as [lo, hi] u32 pairs. Each call hashes a whole prompt in one call into
 * the WebAssembly kernel, without BigInt or per-block allocation.
 */
import { u64Hi, u64Lo } from './u64.ts';
import { DYNAMO_SEED, xxh3_64 } from './xxh3.ts';
import { KERNEL_DATA_START, sharedXxh3Kernel, type Xxh3Kernel } from './xxh3-wasm.ts';

export { DYNAMO_SEED, xxh3_64 };

const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Keeps `blockSize * 4` and every offset well inside a 32-bit wasm address space. */
const MAX_BLOCK_SIZE = 1 << 24;

export interface HashNamespace {
  model?: string;
  lora?: string;
  salt?: string;
}

const NAMESPACE_TAG = 'kvgate/namespace/v1';
const NAMESPACE_FIELDS = ['model', 'lora', 'salt'] as const;

/**
 * The seed for a namespace: 1337 (Dynamo's) when no part is set, so hashes equal Dynamo's;
 * otherwise xxh3-64(1337) of an unambiguous encoding of the parts (tag, then per present part:
 * its index byte, its UTF-8 length as LE u32, its UTF-8 bytes). Empty strings count as absent.
 */
export function namespaceSeed(ns?: HashNamespace): bigint {
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [encoder.encode(NAMESPACE_TAG)];
  let present = 0;
  NAMESPACE_FIELDS.forEach((field, index) => {
    const value = ns?.[field];
    if (value === undefined || value === '') return;
    if (typeof value !== 'string') throw new TypeError(`namespace ${field} must be a string`);
    const utf8 = encoder.encode(value);
    const header = new Uint8Array(5);
    header[0] = index + 1;
    new DataView(header.buffer).setUint32(1, utf8.length, true);
    chunks.push(header, utf8);
    present++;
  });
  if (present === 0) return DYNAMO_SEED;
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return xxh3_64(bytes, DYNAMO_SEED);
}

export interface BlockHasherOptions {
  blockSize: number;
  /** u64 seed; default 1337 (Dynamo). Use `namespaceSeed(...)` to separate models. */
  seed?: bigint;
}

export class BlockHasher {
  readonly blockSize: number;
  readonly seed: bigint;
  private readonly seedLo: number;
  private readonly seedHi: number;
  private readonly kernel: Xxh3Kernel;
  /** blockHashes' views of its results in kernel memory, reused while the layout stays the same. */
  private resultMemory: Uint32Array | null = null;
  private resultWord = -1;
  private resultBlocks = -1;
  private localResult: Uint32Array = new Uint32Array(0);
  private sequenceResult: Uint32Array = new Uint32Array(0);

  constructor(options: BlockHasherOptions) {
    const { blockSize, seed = DYNAMO_SEED } = options;
    if (!Number.isInteger(blockSize) || blockSize <= 0 || blockSize > MAX_BLOCK_SIZE) {
      throw new RangeError(`blockSize must be an integer in [1, ${MAX_BLOCK_SIZE}], got ${blockSize}`);
    }
    if (typeof seed !== 'bigint' || seed < 0n || seed > U64_MAX) {
      throw new RangeError(`seed must be a u64 bigint, got ${String(seed)}`);
    }
    this.blockSize = blockSize;
    this.seed = seed;
    this.seedLo = u64Lo(seed);
    this.seedHi = u64Hi(seed);
    this.kernel = sharedXxh3Kernel();
  }

  /** Number of full blocks in `tokenCount` tokens (a trailing partial block is not hashed). */
  blockCount(tokenCount: number): number {
    if (!Number.isInteger(tokenCount) || tokenCount < 0) {
      throw new RangeError(`token count must be a non-negative integer, got ${tokenCount}`);
    }
    return Math.floor(tokenCount / this.blockSize);
  }

  /**
   * Local block hashes (`tokens_hash`) of every full block, packed [lo, hi] × blockCount.
   * Tokens must be u32 integers; a Uint32Array is trusted, anything else is checked.
   */
  localHashes(tokens: ArrayLike<number>, out?: Uint32Array): Uint32Array {
    const blocks = this.blockCount(tokens.length);
    const result = outputFor(out, blocks);
    if (blocks === 0) return result;
    const tokenCount = blocks * this.blockSize;
    const src = KERNEL_DATA_START;
    const dst = src + tokenCount * 4;
    const kernel = this.kernel;
    kernel.reserve(dst + blocks * 8);
    const memory = kernel.u32;
    this.copyTokens(tokens, tokenCount, memory, src >>> 2);
    kernel.hashBlocks(src, this.blockSize * 4, blocks, dst, this.seedLo, this.seedHi);
    const dstWord = dst >>> 2;
    result.set(memory.subarray(dstWord, dstWord + 2 * blocks));
    return result;
  }

  /**
   * Both `localHashes(tokens)` and `sequenceHashes` of them, in one kernel call (the local hashes
   * are not copied back in; for block sizes 5..32 one loop computes both). `localOut` and `sequenceOut` must hold blockCount pairs;
   * returns blockCount. Same token rules as localHashes.
   */
  blockHashes(tokens: ArrayLike<number>, localOut: Uint32Array, sequenceOut: Uint32Array): number {
    const blocks = this.blockCount(tokens.length);
    if (localOut.length < 2 * blocks || sequenceOut.length < 2 * blocks) {
      throw new RangeError(
        `outputs hold ${Math.min(localOut.length, sequenceOut.length) >>> 1} hashes, ${blocks} needed`,
      );
    }
    if (blocks === 0) return 0;
    const tokenCount = blocks * this.blockSize;
    const src = KERNEL_DATA_START;
    const local = src + tokenCount * 4;
    const sequence = local + blocks * 8;
    const kernel = this.kernel;
    kernel.reserve(sequence + blocks * 8);
    const memory = kernel.u32;
    this.copyTokens(tokens, tokenCount, memory, src >>> 2);
    kernel.hashPrompt(src, this.blockSize * 4, blocks, local, sequence, this.seedLo, this.seedHi);
    const localWord = local >>> 2;
    if (memory !== this.resultMemory || localWord !== this.resultWord || blocks !== this.resultBlocks) {
      // A new prompt length or a grown memory: new views (same-length prompts allocate nothing here).
      this.resultMemory = memory;
      this.resultWord = localWord;
      this.resultBlocks = blocks;
      this.localResult = memory.subarray(localWord, localWord + 2 * blocks);
      this.sequenceResult = memory.subarray(localWord + 2 * blocks, localWord + 4 * blocks);
    }
    localOut.set(this.localResult);
    sequenceOut.set(this.sequenceResult);
    return blocks;
  }

  /**
   * Rolling sequence hashes (`block_hash`) of packed local hashes, same length. `out` may be
   * `local` itself.
   */
  sequenceHashes(local: Uint32Array, out?: Uint32Array): Uint32Array {
    if ((local.length & 1) !== 0) {
      throw new RangeError(`packed u64 array must have an even length, got ${local.length}`);
    }
    const blocks = local.length >>> 1;
    const result = outputFor(out, blocks);
    if (blocks === 0) return result;
    const kernel = this.kernel;
    kernel.reserve(KERNEL_DATA_START + blocks * 8);
    const memory = kernel.u32;
    const word = KERNEL_DATA_START >>> 2;
    memory.set(local, word);
    kernel.hashSequence(KERNEL_DATA_START, blocks, KERNEL_DATA_START, this.seedLo, this.seedHi);
    result.set(memory.subarray(word, word + 2 * blocks));
    return result;
  }

  /** Copies the first `count` tokens into kernel memory from word `at` on (checked unless a Uint32Array). */
  private copyTokens(tokens: ArrayLike<number>, count: number, memory: Uint32Array, at: number): void {
    if (tokens instanceof Uint32Array) {
      memory.set(tokens.length === count ? tokens : tokens.subarray(0, count), at);
      return;
    }
    const bad = copyCheckedTokens(tokens, count, memory, at);
    if (bad >= 0) throw new RangeError(`token ${bad} is not a u32 integer: ${String(tokens[bad])}`);
  }
}

function outputFor(out: Uint32Array | undefined, blocks: number): Uint32Array {
  if (out === undefined) return new Uint32Array(2 * blocks);
  if (out.length < 2 * blocks) {
    throw new RangeError(`output holds ${out.length >>> 1} hashes, ${blocks} needed`);
  }
  return out.length === 2 * blocks ? out : out.subarray(0, 2 * blocks);
}

/** Copies `count` tokens into `memory` from word `at` on; returns the first bad index, or -1. */
function copyCheckedTokens(
  tokens: ArrayLike<number>,
  count: number,
  memory: Uint32Array,
  at: number,
): number {
  // Four tokens a step (about twice as fast on a number[]); a group with a bad token is redone one
  // by one below to find it.
  let i = 0;
  for (; i + 4 <= count; i += 4) {
    const a = tokens[i];
    const b = tokens[i + 1];
    const c = tokens[i + 2];
    const d = tokens[i + 3];
    // One compare rejects NaN, fractions, negatives, values >= 2^32 and non-numbers.
    if (a >>> 0 !== a || b >>> 0 !== b || c >>> 0 !== c || d >>> 0 !== d) break;
    memory[at + i] = a;
    memory[at + i + 1] = b;
    memory[at + i + 2] = c;
    memory[at + i + 3] = d;
  }
  for (; i < count; i++) {
    const token = tokens[i];
    if (token >>> 0 !== token) return i;
    memory[at + i] = token;
  }
  return -1;
}
