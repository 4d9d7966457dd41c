import { xxh3 } from '@node-rs/xxhash';
import { describe, expect, it } from 'vitest';
import { assembleWat, readCachedWasm, readXxh3Wat } from '../../src/tokens/wasm/assemble.ts';
import { wasmApi } from '../../src/tokens/wasm/webassembly.ts';
import { customSecret, DYNAMO_SEED, XXH3_SECRET, xxh3_64 } from '../../src/tokens/xxh3.ts';
import { KERNEL_DATA_START, Xxh3Kernel } from '../../src/tokens/xxh3-wasm.ts';
import { randomBytes, SEEDS } from './hash-fixtures.ts';

// Every xxh3 code path: 0, 1-3, 4-8, 9-16, 17-128, 129-240 and the long (stripe) path, including
// several 1024-byte blocks plus a partial one.
const LENGTHS = [...Array.from({ length: 300 }, (_, i) => i), 511, 512, 1023, 1024, 1025, 2048, 2049, 3333];

describe('xxh3_64 (TypeScript reference)', () => {
  it('matches published and independently computed vectors', () => {
    expect(xxh3_64(new Uint8Array(0), 0n)).toBe(0x2d06800538d394c2n); // xxHash's own sanity vector
    expect(xxh3_64(new Uint8Array(0))).toBe(0xd1f3e77444430ab9n);
    expect(xxh3_64(new TextEncoder().encode('abc'), 1337n)).toBe(0x3f3720f174d252b0n);
    expect(xxh3_64(new Uint8Array(Uint32Array.from([1, 2, 3, 4]).buffer), 42n)).toBe(0xcabc6cf291a3ba46n);
  });

  it('defaults to Dynamo seed 1337', () => {
    const bytes = randomBytes(64, 1);
    expect(DYNAMO_SEED).toBe(1337n);
    expect(xxh3_64(bytes)).toBe(xxh3_64(bytes, 1337n));
    expect(xxh3_64(bytes)).not.toBe(xxh3_64(bytes, 0n));
  });

  it('matches @node-rs/xxhash for every length class and seed', () => {
    for (const seed of SEEDS) {
      for (const len of LENGTHS) {
        const bytes = randomBytes(len, len * 7 + 1);
        expect(xxh3_64(bytes, seed), `len ${len} seed ${seed}`).toBe(xxh3.xxh64(bytes, seed));
      }
    }
  });

  it('derives the long-input secret by adding and subtracting the seed (initCustomSecret)', () => {
    expect(customSecret(0n)).toEqual(XXH3_SECRET);
    const secret = new DataView(customSecret(5n).buffer);
    const base = new DataView(XXH3_SECRET.buffer);
    expect(secret.getBigUint64(0, true)).toBe(BigInt.asUintN(64, base.getBigUint64(0, true) + 5n));
    expect(secret.getBigUint64(8, true)).toBe(BigInt.asUintN(64, base.getBigUint64(8, true) - 5n));
    // xxh64WithSecret hashes with the secret as given: equal results prove the derivation.
    const bytes = randomBytes(1000, 3);
    expect(xxh3.xxh64WithSecret(bytes, customSecret(5n))).toBe(xxh3_64(bytes, 5n));
  });

  it('rejects seeds that are not u64', () => {
    const bytes = randomBytes(8, 1);
    expect(() => xxh3_64(bytes, -1n)).toThrow(RangeError);
    expect(() => xxh3_64(bytes, 1n << 64n)).toThrow(RangeError);
    expect(() => xxh3_64(bytes, 5 as unknown as bigint)).toThrow(RangeError);
  });
});

describe('wasm xxh3 kernel', () => {
  it('matches the reference for every length class and seed, several inputs per call', () => {
    const kernel = new Xxh3Kernel();
    const count = 3;
    for (const seed of SEEDS) {
      for (const len of LENGTHS) {
        const bytes = randomBytes(len * count, len * 13 + 5);
        // Unaligned input address: the kernel must not assume alignment.
        const src = KERNEL_DATA_START + 3;
        const dst = KERNEL_DATA_START + 16_384;
        kernel.reserve(dst + 8 * count);
        new Uint8Array(kernel.exports.memory.buffer).set(bytes, src);
        kernel.hashBlocks(src, len, count, dst, Number(seed & 0xffffffffn), Number(seed >> 32n));
        const out = new DataView(kernel.exports.memory.buffer);
        for (let k = 0; k < count; k++) {
          expect(out.getBigUint64(dst + 8 * k, true), `len ${len} seed ${seed} input ${k}`).toBe(
            xxh3_64(bytes.subarray(k * len, (k + 1) * len), seed),
          );
        }
      }
    }
  });

  it('grows its memory for large batches and keeps hashing correctly', () => {
    const kernel = new Xxh3Kernel();
    const before = kernel.exports.memory.buffer.byteLength;
    const count = 5000;
    const len = 64;
    const bytes = randomBytes(count * len, 9);
    const dst = KERNEL_DATA_START + bytes.length;
    kernel.reserve(dst + count * 8);
    expect(kernel.exports.memory.buffer.byteLength).toBeGreaterThan(before);
    new Uint8Array(kernel.exports.memory.buffer).set(bytes, KERNEL_DATA_START);
    kernel.hashBlocks(KERNEL_DATA_START, len, count, dst, 1337, 0);
    const view = new DataView(kernel.exports.memory.buffer);
    for (const k of [0, 1, 2500, count - 1]) {
      expect(view.getBigUint64(dst + 8 * k, true)).toBe(xxh3_64(bytes.subarray(k * len, (k + 1) * len)));
    }
  });
});

describe('wasm kernel build', () => {
  it('assembles the .wat source into a module with the kernel exports', async () => {
    const binary = await assembleWat(readXxh3Wat());
    const module = new wasmApi.Module(binary);
    const exports = new wasmApi.Instance(module).exports;
    expect(Object.keys(exports).sort()).toEqual(['hash_blocks', 'hash_prompt', 'hash_sequence', 'memory']);
  });

  it('ignores a cached binary built from another source', () => {
    expect(readCachedWasm(`${readXxh3Wat()}\n;; edited`)).toBeNull();
  });
});
