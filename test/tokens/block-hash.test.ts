import { xxh3 } from '@node-rs/xxhash';
import { describe, expect, it } from 'vitest';
import { BlockHasher, DYNAMO_SEED, namespaceSeed, xxh3_64 } from '../../src/tokens/block-hash.ts';
import { readPackedU64, unpackU64s } from '../../src/tokens/u64.ts';
import { randomTokens, SEEDS } from './hash-fixtures.ts';

// 5..32 cover every branch of the SIMD 17..128-byte loop (20, 32, 44, 64, 68, 96, 100, 128 bytes).
const BLOCK_SIZES = [1, 2, 3, 4, 5, 8, 11, 16, 17, 24, 25, 32, 33, 60, 61, 64, 128, 256];
const VOCAB = 152_064;

function le64Pair(a: bigint, b: bigint): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, a, true);
  view.setBigUint64(8, b, true);
  return bytes;
}

/** Dynamo's algorithm, block by block, on the independent @node-rs/xxhash implementation. */
function expectedHashes(tokens: Uint32Array, blockSize: number, seed: bigint) {
  const local: bigint[] = [];
  const sequence: bigint[] = [];
  const bytes = new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  for (let b = 0; (b + 1) * blockSize <= tokens.length; b++) {
    const hash = xxh3.xxh64(bytes.subarray(b * blockSize * 4, (b + 1) * blockSize * 4), seed);
    local.push(hash);
    sequence.push(b === 0 ? hash : xxh3.xxh64(le64Pair(sequence[b - 1], hash), seed));
  }
  return { local, sequence };
}

describe('BlockHasher', () => {
  it('matches Dynamo hashes computed with @node-rs/xxhash (block sizes, seeds, token ranges)', () => {
    let case_ = 0;
    for (const seed of SEEDS) {
      for (const blockSize of BLOCK_SIZES) {
        for (const vocab of [undefined, VOCAB]) {
          const tokens = randomTokens(blockSize * 5 + (case_ % blockSize), ++case_, vocab);
          const hasher = new BlockHasher({ blockSize, seed });
          const local = hasher.localHashes(tokens);
          const sequence = hasher.sequenceHashes(local);
          const expected = expectedHashes(tokens, blockSize, seed);
          const label = `bs ${blockSize} seed ${seed} vocab ${vocab ?? 'u32'}`;
          expect(unpackU64s(local), label).toEqual(expected.local);
          expect(unpackU64s(sequence), label).toEqual(expected.sequence);
        }
      }
    }
  });

  it('reproduces literal vectors (seed 1337 and 42)', () => {
    const iota = Uint32Array.from({ length: 16 }, (_, i) => i);
    expect(unpackU64s(new BlockHasher({ blockSize: 16 }).localHashes(iota))).toEqual([0xd47a8f41c833328an]);
    expect(unpackU64s(new BlockHasher({ blockSize: 16, seed: 42n }).localHashes(iota))).toEqual([
      0x9d65e999ec127910n,
    ]);
    expect(unpackU64s(new BlockHasher({ blockSize: 4 }).localHashes([1, 2, 3, 4]))).toEqual([
      0xcb38e4d7fb2dca5cn,
    ]);
    const t64 = Array.from({ length: 64 }, (_, i) => Math.imul(i, 2654435761) >>> 0);
    expect(unpackU64s(new BlockHasher({ blockSize: 64 }).localHashes(t64))).toEqual([0xbfbab48eade207can]);
    const bs32 = new BlockHasher({ blockSize: 32 });
    const local = bs32.localHashes(t64);
    expect(unpackU64s(local)).toEqual([0x8a62ba28c8194a24n, 0x649bb3a7e5dffb7fn]);
    expect(unpackU64s(bs32.sequenceHashes(local))).toEqual([0x8a62ba28c8194a24n, 0x34991cb0b07c5591n]);
  });

  it('hashes only full blocks (Dynamo block-count cases)', () => {
    for (const blockSize of [11, 32, 64]) {
      const hasher = new BlockHasher({ blockSize });
      for (const [length, blocks] of [
        [blockSize, 1],
        [blockSize + 1, 1],
        [2 * blockSize + 1, 2],
        [0, 0],
      ]) {
        expect(hasher.blockCount(length)).toBe(blocks);
        const tokens = randomTokens(length, length + blockSize, VOCAB);
        const local = hasher.localHashes(tokens);
        expect(local.length).toBe(2 * blocks);
        expect(hasher.sequenceHashes(local).length).toBe(2 * blocks);
        expect(hasher.localHashes(Array.from(tokens))).toEqual(local);
      }
      // The trailing partial block does not change the full blocks' hashes.
      const tokens = randomTokens(2 * blockSize, blockSize, VOCAB);
      expect(hasher.localHashes(tokens.subarray(0, blockSize + 3))).toEqual(
        hasher.localHashes(tokens.subarray(0, blockSize)),
      );
    }
  });

  it('gives the same hashes for arrays, Uint32Array, subarrays and other typed arrays', () => {
    const hasher = new BlockHasher({ blockSize: 16 });
    const tokens = randomTokens(16 * 9 + 5, 77, VOCAB);
    const expected = hasher.localHashes(tokens);
    expect(hasher.localHashes(Array.from(tokens))).toEqual(expected);
    expect(hasher.localHashes(Float64Array.from(tokens))).toEqual(expected);
    const padded = new Uint32Array(tokens.length + 3);
    padded.set(tokens, 3);
    expect(hasher.localHashes(padded.subarray(3))).toEqual(expected);
  });

  it('writes into a caller buffer and supports in-place sequence hashing', () => {
    const hasher = new BlockHasher({ blockSize: 8 });
    const tokens = randomTokens(8 * 6, 5);
    const expectedLocal = hasher.localHashes(tokens);
    const expectedSeq = hasher.sequenceHashes(expectedLocal);

    const exact = new Uint32Array(12);
    expect(hasher.localHashes(tokens, exact)).toBe(exact);
    expect(exact).toEqual(expectedLocal);
    expect(hasher.sequenceHashes(exact, exact)).toBe(exact);
    expect(exact).toEqual(expectedSeq);

    const roomy = new Uint32Array(40).fill(7);
    const written = hasher.localHashes(tokens, roomy);
    expect(written.buffer).toBe(roomy.buffer);
    expect(written).toEqual(expectedLocal);
    expect(roomy[12]).toBe(7);

    expect(() => hasher.localHashes(tokens, new Uint32Array(11))).toThrow(RangeError);
    expect(() => hasher.sequenceHashes(expectedLocal, new Uint32Array(2))).toThrow(RangeError);
  });

  it('blockHashes gives localHashes and their sequenceHashes in one pass', () => {
    // 5..32: local and sequence hashes in one kernel loop; the others: two kernel passes.
    for (const blockSize of [1, 4, 5, 8, 16, 24, 25, 32, 33]) {
      const hasher = new BlockHasher({ blockSize, seed: 42n });
      for (const count of [0, blockSize - 1, blockSize, 7 * blockSize + 3, 300 * blockSize]) {
        const tokens = randomTokens(count, count + blockSize, VOCAB);
        const local = hasher.localHashes(tokens);
        const localOut = new Uint32Array(local.length + 6).fill(9);
        const sequenceOut = new Uint32Array(local.length + 6).fill(9);
        expect(hasher.blockHashes(Array.from(tokens), localOut, sequenceOut)).toBe(local.length >>> 1);
        expect(localOut.subarray(0, local.length)).toEqual(local);
        expect(sequenceOut.subarray(0, local.length)).toEqual(hasher.sequenceHashes(local));
        expect(localOut[local.length]).toBe(9);
        expect(sequenceOut[local.length]).toBe(9);
      }
      // The bigint reference agrees for the typed-array input too.
      const tokens = randomTokens(5 * blockSize, 77, VOCAB);
      const localOut = new Uint32Array(10);
      const sequenceOut = new Uint32Array(10);
      hasher.blockHashes(tokens, localOut, sequenceOut);
      const expected = expectedHashes(tokens, blockSize, 42n);
      expect(unpackU64s(localOut)).toEqual(expected.local);
      expect(unpackU64s(sequenceOut)).toEqual(expected.sequence);
    }
    // Same length again, then a prompt that grows the kernel memory, then the first length again:
    // results read through reused or fresh views are right each time.
    const sized = new BlockHasher({ blockSize: 16 });
    for (const blocks of [8, 8, 50_000, 8]) {
      const tokens = randomTokens(16 * blocks, blocks + 3, VOCAB);
      const local = new Uint32Array(2 * blocks);
      const sequence = new Uint32Array(2 * blocks);
      sized.blockHashes(tokens, local, sequence);
      const expectedLocal = sized.localHashes(tokens);
      expect(local).toEqual(expectedLocal);
      expect(sequence).toEqual(sized.sequenceHashes(expectedLocal));
    }
    const hasher = new BlockHasher({ blockSize: 4 });
    expect(() => hasher.blockHashes(randomTokens(8, 1), new Uint32Array(4), new Uint32Array(2))).toThrow(
      RangeError,
    );
    expect(() => hasher.blockHashes([1, 2, 3, 1.5], new Uint32Array(2), new Uint32Array(2))).toThrow(
      /token 3 is not a u32 integer/,
    );
  });

  it('handles prompts larger than the initial kernel memory', () => {
    const hasher = new BlockHasher({ blockSize: 16 });
    const tokens = randomTokens(16 * 40_000, 11, VOCAB);
    const local = hasher.localHashes(tokens);
    const sequence = hasher.sequenceHashes(local);
    const last = 39_999;
    const bytes = new Uint8Array(tokens.buffer);
    expect(readPackedU64(local, last)).toBe(xxh3.xxh64(bytes.subarray(last * 64, last * 64 + 64), 1337n));
    const previous = readPackedU64(sequence, last - 1);
    expect(readPackedU64(sequence, last)).toBe(
      xxh3.xxh64(le64Pair(previous, readPackedU64(local, last)), 1337n),
    );
  });

  it('rejects bad block sizes and seeds with RangeError', () => {
    for (const blockSize of [0, -1, -16, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new BlockHasher({ blockSize }), String(blockSize)).toThrow(RangeError);
    }
    expect(() => new BlockHasher({ blockSize: 16, seed: -1n })).toThrow(RangeError);
    expect(() => new BlockHasher({ blockSize: 16, seed: 1n << 64n })).toThrow(RangeError);
    const hasher = new BlockHasher({ blockSize: 16 });
    expect(() => hasher.blockCount(-1)).toThrow(RangeError);
    expect(() => hasher.blockCount(2.5)).toThrow(RangeError);
    expect(() => hasher.sequenceHashes(new Uint32Array(3))).toThrow(RangeError);
  });

  it('rejects tokens that are not u32 integers', () => {
    const hasher = new BlockHasher({ blockSize: 4 });
    for (const bad of [-1, 2 ** 32, 2 ** 40, Number.NaN, 1.5, Number.POSITIVE_INFINITY]) {
      const tokens = [1, 2, 3, 4, 5, 6, bad, 8];
      expect(() => hasher.localHashes(tokens), String(bad)).toThrow(/token 6 is not a u32 integer/);
    }
    expect(() => hasher.localHashes(['1', 2, 3, 4] as unknown as number[])).toThrow(RangeError);
    // Every position of a longer prompt (tokens are copied four at a time, then one by one).
    for (let at = 0; at < 12; at++) {
      const tokens = Array.from({ length: 12 }, (_, i) => i);
      tokens[at] = 1.5;
      if (at < 11) tokens[11] = -1; // a later bad token is not the one reported
      expect(() => hasher.localHashes(tokens)).toThrow(new RegExp(`token ${at} is not a u32 integer`));
    }
    // Tokens of a trailing partial block are not hashed, so they are not checked either.
    expect(hasher.localHashes([1, 2, 3, 4, -1]).length).toBe(2);
    expect(hasher.localHashes([0, 2 ** 32 - 1, 7, 9]).length).toBe(2);
  });
});

describe('namespaceSeed', () => {
  it('is Dynamo seed 1337 without a namespace, so hashes equal Dynamo', () => {
    expect(namespaceSeed()).toBe(DYNAMO_SEED);
    expect(namespaceSeed({})).toBe(1337n);
    expect(namespaceSeed({ model: '', lora: undefined })).toBe(1337n);
    const tokens = randomTokens(32, 3, VOCAB);
    const hasher = new BlockHasher({ blockSize: 16, seed: namespaceSeed() });
    expect(unpackU64s(hasher.localHashes(tokens))).toEqual(expectedHashes(tokens, 16, 1337n).local);
  });

  it('separates models, LoRAs and salts', () => {
    const namespaces = [
      { model: 'llama-3-8b' },
      { model: 'llama-3-70b' },
      { model: 'llama-3-8b', lora: 'sql' },
      { model: 'llama-3-8b', lora: 'chat' },
      { model: 'llama-3-8b', salt: 'tenant-a' },
      { model: 'llama-3-8b', lora: 'sql', salt: 'tenant-a' },
      { lora: 'llama-3-8b' },
      { salt: 'llama-3-8b' },
      // Would collide under plain concatenation of the parts.
      { model: 'ab', lora: 'c' },
      { model: 'a', lora: 'bc' },
    ];
    const seeds = namespaces.map((ns) => namespaceSeed(ns));
    expect(new Set([...seeds, DYNAMO_SEED]).size).toBe(seeds.length + 1);
    expect(namespaceSeed({ model: 'llama-3-8b' })).toBe(seeds[0]);

    const tokens = randomTokens(64, 4, VOCAB);
    const hashes = seeds.map((seed) => {
      const hasher = new BlockHasher({ blockSize: 16, seed });
      return hasher.sequenceHashes(hasher.localHashes(tokens))[6];
    });
    expect(new Set(hashes).size).toBe(hashes.length);
    expect(xxh3_64(new Uint8Array(8), seeds[2])).toBe(xxh3.xxh64(new Uint8Array(8), seeds[2]));
  });

  it('rejects non-string parts', () => {
    expect(() => namespaceSeed({ model: 5 as unknown as string })).toThrow(TypeError);
  });
});
