/**
 * Loads the xxh3 WebAssembly kernel (src/tokens/wasm/xxh3.wat) and wraps its linear memory.
 *
 * The binary comes from build/xxh3.wasm when it was assembled from the current .wat source;
 * otherwise (a clean clone where `prepare` did not run, a stale build) the .wat is assembled here
 * with wabt, once, at import time, and the result is cached in build/ when that is writable.
 * Compilation and instantiation are synchronous, so everything built on the kernel is too.
 */
import { assembleWat, readCachedWasm, readXxh3Wat, writeCachedWasm } from './wasm/assemble.ts';
import { type WasmMemory, wasmApi } from './wasm/webassembly.ts';

interface Xxh3Exports {
  memory: WasmMemory;
  hash_blocks(src: number, len: number, count: number, dst: number, seedLo: number, seedHi: number): void;
  hash_sequence(src: number, count: number, dst: number, seedLo: number, seedHi: number): void;
  hash_prompt(
    src: number,
    len: number,
    count: number,
    dst: number,
    seq: number,
    seedLo: number,
    seedHi: number,
  ): void;
}

/** First byte the JS side may use; below it lie the secrets the kernel keeps in its memory. */
export const KERNEL_DATA_START = 1024;
const PAGE_BYTES = 65_536;

async function loadModule(): Promise<object> {
  const source = readXxh3Wat();
  const cached = readCachedWasm(source);
  if (cached) {
    try {
      return new wasmApi.Module(cached);
    } catch {
      // A damaged cache file: assemble again below.
    }
  }
  const binary = await assembleWat(source);
  const module = new wasmApi.Module(binary);
  try {
    writeCachedWasm(source, binary);
  } catch {
    // A read-only checkout still works: the binary is simply assembled again next time.
  }
  return module;
}

const xxh3Module = await loadModule();

/**
 * One kernel instance and typed views over its memory. The views are replaced when the memory
 * grows, so read `u32` again after every `reserve`.
 */
export class Xxh3Kernel {
  readonly exports: Xxh3Exports;
  u32: Uint32Array;

  constructor() {
    this.exports = new wasmApi.Instance(xxh3Module).exports as unknown as Xxh3Exports;
    this.u32 = new Uint32Array(this.exports.memory.buffer);
  }

  /** Makes sure bytes [0, end) of the memory exist. */
  reserve(end: number): void {
    const have = this.exports.memory.buffer.byteLength;
    if (end <= have) return;
    this.exports.memory.grow(Math.ceil((end - have) / PAGE_BYTES));
    this.u32 = new Uint32Array(this.exports.memory.buffer);
  }

  /** Hashes `count` inputs of `len` bytes at `src`; the u64 results land at `dst`. */
  hashBlocks(src: number, len: number, count: number, dst: number, seedLo: number, seedHi: number): void {
    this.exports.hash_blocks(src, len, count, dst, seedLo, seedHi);
  }

  /**
   * hashBlocks to `dst` and the rolling sequence hashes of those to `seq` (not overlapping `src` or
   * `dst`), in one loop for 17..128-byte inputs.
   */
  hashPrompt(
    src: number,
    len: number,
    count: number,
    dst: number,
    seq: number,
    seedLo: number,
    seedHi: number,
  ): void {
    this.exports.hash_prompt(src, len, count, dst, seq, seedLo, seedHi);
  }

  /** Rolling sequence hashes of `count` u64 local hashes at `src`, written to `dst` (may equal src). */
  hashSequence(src: number, count: number, dst: number, seedLo: number, seedHi: number): void {
    this.exports.hash_sequence(src, count, dst, seedLo, seedHi);
  }
}

let shared: Xxh3Kernel | undefined;

/** The kernel shared by every hasher of this thread (JS is single-threaded, calls never interleave). */
export function sharedXxh3Kernel(): Xxh3Kernel {
  shared ??= new Xxh3Kernel();
  return shared;
}
