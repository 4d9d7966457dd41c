/**
 * Block hashing: 4096-token prompts, block size 16 (256 blocks), local + sequence hashes.
 *   (a) baseline: one @node-rs/xxhash call per hash (N-API, bigint results), the obvious approach;
 *   (b) BlockHasher: one wasm call per prompt for the local hashes and one for the sequence hashes,
 *       packed [lo, hi] u32 output, no bigint; also blockHashes, both in one call (the router's).
 * Interleaved rounds in one process (this VM is noisy); medians reported. Last stdout line is JSON.
 */
import { xxh3 } from '@node-rs/xxhash';
import { SeededRandom } from '../src/bench/random.ts';
import { BlockHasher, DYNAMO_SEED } from '../src/tokens/block-hash.ts';
import { readPackedU64 } from '../src/tokens/u64.ts';

const PROMPT_TOKENS = 4096;
const BLOCK_SIZE = 16;
const PROMPTS = 512;
const ROUNDS = 21;
const VOCAB = 152_064;
const BLOCKS = PROMPT_TOKENS / BLOCK_SIZE;

const random = new SeededRandom(20_251_125);
const prompts: Uint32Array[] = [];
for (let p = 0; p < PROMPTS; p++) {
  const tokens = new Uint32Array(PROMPT_TOKENS);
  for (let i = 0; i < PROMPT_TOKENS; i++) tokens[i] = random.nextU32() % VOCAB;
  prompts.push(tokens);
}
const promptArrays = prompts.map((tokens) => Array.from(tokens));

// (a) per-block native calls, as a straightforward port of Dynamo's Rust would do it.
const pair = Buffer.alloc(16);
function perBlockNative(tokens: Uint32Array): bigint {
  const bytes = new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  let previous = 0n;
  for (let b = 0; b < BLOCKS; b++) {
    const local = xxh3.xxh64(bytes.subarray(b * BLOCK_SIZE * 4, (b + 1) * BLOCK_SIZE * 4), DYNAMO_SEED);
    if (b === 0) {
      previous = local;
    } else {
      pair.writeBigUInt64LE(previous, 0);
      pair.writeBigUInt64LE(local, 8);
      previous = xxh3.xxh64(pair, DYNAMO_SEED);
    }
  }
  return previous;
}

// (b) batched wasm kernel, reusing output buffers as a router would.
const hasher = new BlockHasher({ blockSize: BLOCK_SIZE });
const local = new Uint32Array(2 * BLOCKS);
const sequence = new Uint32Array(2 * BLOCKS);
function batched(tokens: ArrayLike<number>): number {
  hasher.localHashes(tokens, local);
  hasher.sequenceHashes(local, sequence);
  return sequence[2 * BLOCKS - 2];
}
const localOne = new Uint32Array(2 * BLOCKS);
const sequenceOne = new Uint32Array(2 * BLOCKS);
function oneCall(tokens: Uint32Array): number {
  hasher.blockHashes(tokens, localOne, sequenceOne);
  return sequenceOne[2 * BLOCKS - 2];
}
function batchedLocalOnly(tokens: Uint32Array): number {
  hasher.localHashes(tokens, local);
  return local[0];
}

// Both paths must agree before anything is timed.
for (const tokens of prompts.slice(0, 8)) {
  batched(tokens);
  oneCall(tokens);
  const expected = perBlockNative(tokens);
  if (
    readPackedU64(sequence, BLOCKS - 1) !== expected ||
    readPackedU64(sequenceOne, BLOCKS - 1) !== expected
  ) {
    throw new Error('batched and per-block hashes differ');
  }
}

let sink = 0;
/** Wall-clock and process CPU time (µs per input) of one pass; CPU time shows contention. */
function timeRound<T>(inputs: readonly T[], fn: (input: T) => number | bigint): [number, number] {
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  for (const input of inputs) {
    const result = fn(input);
    sink ^= typeof result === 'bigint' ? Number(result & 1n) : result;
  }
  const wall = Number(process.hrtime.bigint() - start) / 1000 / inputs.length;
  const cpu = process.cpuUsage(cpuStart);
  return [wall, (cpu.user + cpu.system) / inputs.length];
}

const cases: Array<[string, () => [number, number]]> = [
  ['per_block_native', () => timeRound(prompts, perBlockNative)],
  ['batched', () => timeRound(prompts, batched)],
  ['batched_local_only', () => timeRound(prompts, batchedLocalOnly)],
  ['one_call', () => timeRound(prompts, oneCall)],
  ['batched_number_array', () => timeRound(promptArrays, batched)],
];
const samples = new Map<string, number[]>(cases.map(([name]) => [name, []]));
const cpuSamples = new Map<string, number[]>(cases.map(([name]) => [name, []]));
for (let round = -2; round < ROUNDS; round++) {
  // Rotate the order each round so no case always runs first (or right after a GC-heavy one).
  for (let k = 0; k < cases.length; k++) {
    const [name, run] = cases[(k + round + 2) % cases.length];
    const [wall, cpu] = run();
    if (round >= 0) {
      samples.get(name)!.push(wall);
      cpuSamples.get(name)!.push(cpu);
    }
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
const us = Object.fromEntries([...samples].map(([name, values]) => [name, median(values)]));
const cpuUs = Object.fromEntries([...cpuSamples].map(([name, values]) => [name, median(values)]));
const ratio = us.per_block_native / us.batched;
const blocksPerSecond = (BLOCKS / us.batched) * 1e6;
const hashesPerSecond = 2 * blocksPerSecond;
const fmt = (value: number) => value.toFixed(2).padStart(8);

console.log(
  `block hashing: ${PROMPTS} prompts x ${PROMPT_TOKENS} tokens, block size ${BLOCK_SIZE} (${BLOCKS} blocks),`,
);
console.log(`local + sequence hash per block, median of ${ROUNDS} interleaved rounds (sink ${sink & 1})`);
console.log(`(a) per-block @node-rs/xxhash calls, bigint  ${fmt(us.per_block_native)} us / 4k prompt`);
console.log(`(b) BlockHasher, Uint32Array tokens           ${fmt(us.batched)} us / 4k prompt`);
console.log(`    BlockHasher, number[] tokens (validated)  ${fmt(us.batched_number_array)} us / 4k prompt`);
console.log(`    BlockHasher, local hashes only            ${fmt(us.batched_local_only)} us / 4k prompt`);
console.log(`    BlockHasher.blockHashes (one call, both)  ${fmt(us.one_call)} us / 4k prompt`);
console.log(
  `process CPU time (a) ${cpuUs.per_block_native.toFixed(2)} us, (b) ${cpuUs.batched.toFixed(2)} us / 4k prompt` +
    ' (far below wall clock means other processes were competing for the cores)',
);
console.log(`ratio (a)/(b): ${ratio.toFixed(1)}x; ${(hashesPerSecond / 1e6).toFixed(1)} M hashes/s`);
console.log(
  `(${(blocksPerSecond / 1e6).toFixed(1)} M blocks/s, each block gets its local and its sequence hash)`,
);
console.log(
  JSON.stringify({
    hashes_per_s: Math.round(hashesPerSecond),
    us_per_4k_prompt: Number(us.batched.toFixed(3)),
    per_block_call_us_per_4k_prompt: Number(us.per_block_native.toFixed(3)),
    ratio: Number(ratio.toFixed(2)),
    us_per_4k_prompt_number_array: Number(us.batched_number_array.toFixed(3)),
    us_per_4k_prompt_local_only: Number(us.batched_local_only.toFixed(3)),
    us_per_4k_prompt_one_call: Number(us.one_call.toFixed(3)),
    cpu_us_per_4k_prompt_one_call: Number(cpuUs.one_call.toFixed(3)),
    cpu_us_per_4k_prompt: Number(cpuUs.batched.toFixed(3)),
    per_block_call_cpu_us_per_4k_prompt: Number(cpuUs.per_block_native.toFixed(3)),
  }),
);
