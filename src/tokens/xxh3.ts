/**
 * XXH3-64 in plain TypeScript with bigint arithmetic: a readable transcription of the reference
 * algorithm (xxhash.h, XXH3_64bits_withSeed) for inputs of any length.
 *
 * This is the cold path (namespace seeds, tests, cross-checking the WebAssembly kernel). Block
 * hashing of prompts goes through `BlockHasher`, which runs the same algorithm in wasm.
 */

export const DYNAMO_SEED = 1337n;

const MASK64 = 0xffff_ffff_ffff_ffffn;

export const PRIME32_1 = 0x9e3779b1n;
export const PRIME32_2 = 0x85ebca77n;
export const PRIME32_3 = 0xc2b2ae3dn;
export const PRIME64_1 = 0x9e3779b185ebca87n;
export const PRIME64_2 = 0xc2b2ae3d27d4eb4fn;
export const PRIME64_3 = 0x165667b19e3779f9n;
export const PRIME64_4 = 0x85ebca77c2b2ae63n;
export const PRIME64_5 = 0x27d4eb2f165667c5n;
const PRIME_MX1 = 0x165667919e3779f9n;
const PRIME_MX2 = 0x9fb21c651e98df25n;

const STRIPE_LEN = 64;
const SECRET_CONSUME_RATE = 8;
const SECRET_SIZE_MIN = 136;
const MIDSIZE_MAX = 240;
const MIDSIZE_START_OFFSET = 3;
const MIDSIZE_LAST_OFFSET = 17;
const SECRET_LASTACC_START = 7;
const SECRET_MERGEACCS_START = 11;

/** The default 192-byte secret of XXH3 (`XXH3_kSecret`). */
export const XXH3_SECRET: Uint8Array = Uint8Array.from([
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c, 0xde, 0xd4,
  0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f, 0xcb, 0x79, 0xe6, 0x4e,
  0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21, 0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43,
  0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c, 0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb,
  0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3, 0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19,
  0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8, 0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7,
  0xc7, 0x0b, 0x4f, 0x1d, 0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78,
  0x73, 0x64, 0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e, 0x2b, 0x16,
  0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce, 0x45, 0xcb, 0x3a, 0x8f,
  0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
]);

const SECRET_SIZE = XXH3_SECRET.length;

function readLE32(bytes: Uint8Array, offset: number): bigint {
  return BigInt(
    (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0,
  );
}

function readLE64(bytes: Uint8Array, offset: number): bigint {
  return readLE32(bytes, offset) | (readLE32(bytes, offset + 4) << 32n);
}

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK64;
}

function swap32(x: bigint): bigint {
  return (
    ((x & 0xffn) << 24n) | (((x >> 8n) & 0xffn) << 16n) | (((x >> 16n) & 0xffn) << 8n) | ((x >> 24n) & 0xffn)
  );
}

function swap64(x: bigint): bigint {
  return (swap32(x & 0xffff_ffffn) << 32n) | swap32(x >> 32n);
}

/** Low 64 bits XOR high 64 bits of the 128-bit product. */
function mul128Fold64(a: bigint, b: bigint): bigint {
  const product = a * b;
  return (product & MASK64) ^ (product >> 64n);
}

function xxh64Avalanche(h: bigint): bigint {
  h ^= h >> 33n;
  h = (h * PRIME64_2) & MASK64;
  h ^= h >> 29n;
  h = (h * PRIME64_3) & MASK64;
  h ^= h >> 32n;
  return h;
}

function xxh3Avalanche(h: bigint): bigint {
  h ^= h >> 37n;
  h = (h * PRIME_MX1) & MASK64;
  h ^= h >> 32n;
  return h;
}

function rrmxmx(h: bigint, len: number): bigint {
  h ^= rotl64(h, 49n) ^ rotl64(h, 24n);
  h = (h * PRIME_MX2) & MASK64;
  h ^= (h >> 35n) + BigInt(len);
  h = (h * PRIME_MX2) & MASK64;
  h ^= h >> 28n;
  return h;
}

function len1To3(input: Uint8Array, secret: Uint8Array, seed: bigint): bigint {
  const len = input.length;
  const c1 = input[0];
  const c2 = input[len >> 1];
  const c3 = input[len - 1];
  const combined = BigInt(((c1 << 16) | (c2 << 24) | c3 | (len << 8)) >>> 0);
  const bitflip = ((readLE32(secret, 0) ^ readLE32(secret, 4)) + seed) & MASK64;
  return xxh64Avalanche(combined ^ bitflip);
}

function len4To8(input: Uint8Array, secret: Uint8Array, seed: bigint): bigint {
  const len = input.length;
  seed ^= swap32(seed & 0xffff_ffffn) << 32n;
  const input1 = readLE32(input, 0);
  const input2 = readLE32(input, len - 4);
  const bitflip = (readLE64(secret, 8) ^ readLE64(secret, 16)) - seed;
  const input64 = (input2 + (input1 << 32n)) & MASK64;
  return rrmxmx(input64 ^ (bitflip & MASK64), len);
}

function len9To16(input: Uint8Array, secret: Uint8Array, seed: bigint): bigint {
  const len = input.length;
  const bitflip1 = ((readLE64(secret, 24) ^ readLE64(secret, 32)) + seed) & MASK64;
  const bitflip2 = ((readLE64(secret, 40) ^ readLE64(secret, 48)) - seed) & MASK64;
  const inputLo = readLE64(input, 0) ^ bitflip1;
  const inputHi = readLE64(input, len - 8) ^ bitflip2;
  const acc = BigInt(len) + swap64(inputLo) + inputHi + mul128Fold64(inputLo, inputHi);
  return xxh3Avalanche(acc & MASK64);
}

function len0To16(input: Uint8Array, secret: Uint8Array, seed: bigint): bigint {
  const len = input.length;
  if (len > 8) return len9To16(input, secret, seed);
  if (len >= 4) return len4To8(input, secret, seed);
  if (len > 0) return len1To3(input, secret, seed);
  return xxh64Avalanche(seed ^ readLE64(secret, 56) ^ readLE64(secret, 64));
}

function mix16B(
  input: Uint8Array,
  inputOffset: number,
  secret: Uint8Array,
  secretOffset: number,
  seed: bigint,
) {
  const inputLo = readLE64(input, inputOffset);
  const inputHi = readLE64(input, inputOffset + 8);
  return mul128Fold64(
    inputLo ^ ((readLE64(secret, secretOffset) + seed) & MASK64),
    inputHi ^ ((readLE64(secret, secretOffset + 8) - seed) & MASK64),
  );
}

function len17To128(input: Uint8Array, secret: Uint8Array, seed: bigint): bigint {
  const len = input.length;
  let acc = BigInt(len) * PRIME64_1;
  if (len > 32) {
    if (len > 64) {
      if (len > 96) {
        acc += mix16B(input, 48, secret, 96, seed);
        acc += mix16B(input, len - 64, secret, 112, seed);
      }
      acc += mix16B(input, 32, secret, 64, seed);
      acc += mix16B(input, len - 48, secret, 80, seed);
    }
    acc += mix16B(input, 16, secret, 32, seed);
    acc += mix16B(input, len - 32, secret, 48, seed);
  }
  acc += mix16B(input, 0, secret, 0, seed);
  acc += mix16B(input, len - 16, secret, 16, seed);
  return xxh3Avalanche(acc & MASK64);
}

function len129To240(input: Uint8Array, secret: Uint8Array, seed: bigint): bigint {
  const len = input.length;
  const rounds = len >> 4;
  let acc = BigInt(len) * PRIME64_1;
  for (let i = 0; i < 8; i++) acc += mix16B(input, 16 * i, secret, 16 * i, seed);
  let accEnd = mix16B(input, len - 16, secret, SECRET_SIZE_MIN - MIDSIZE_LAST_OFFSET, seed);
  acc = xxh3Avalanche(acc & MASK64);
  for (let i = 8; i < rounds; i++) {
    accEnd += mix16B(input, 16 * i, secret, 16 * (i - 8) + MIDSIZE_START_OFFSET, seed);
  }
  return xxh3Avalanche((acc + accEnd) & MASK64);
}

/** `XXH3_initCustomSecret`: the default secret with the seed added to / subtracted from its words. */
export function customSecret(seed: bigint): Uint8Array {
  const out = new Uint8Array(SECRET_SIZE);
  const view = new DataView(out.buffer);
  for (let i = 0; i < SECRET_SIZE; i += 16) {
    view.setBigUint64(i, (readLE64(XXH3_SECRET, i) + seed) & MASK64, true);
    view.setBigUint64(i + 8, (readLE64(XXH3_SECRET, i + 8) - seed) & MASK64, true);
  }
  return out;
}

function accumulate512(
  acc: bigint[],
  input: Uint8Array,
  inputOffset: number,
  secret: Uint8Array,
  secretOffset: number,
) {
  for (let i = 0; i < 8; i++) {
    const dataVal = readLE64(input, inputOffset + 8 * i);
    const dataKey = dataVal ^ readLE64(secret, secretOffset + 8 * i);
    acc[i ^ 1] = (acc[i ^ 1] + dataVal) & MASK64;
    acc[i] = (acc[i] + (dataKey & 0xffff_ffffn) * (dataKey >> 32n)) & MASK64;
  }
}

function scrambleAcc(acc: bigint[], secret: Uint8Array, secretOffset: number) {
  for (let i = 0; i < 8; i++) {
    let a = acc[i];
    a ^= a >> 47n;
    a ^= readLE64(secret, secretOffset + 8 * i);
    acc[i] = (a * PRIME32_1) & MASK64;
  }
}

function mergeAccs(acc: bigint[], secret: Uint8Array, secretOffset: number, start: bigint): bigint {
  let result = start;
  for (let i = 0; i < 4; i++) {
    result += mul128Fold64(
      acc[2 * i] ^ readLE64(secret, secretOffset + 16 * i),
      acc[2 * i + 1] ^ readLE64(secret, secretOffset + 16 * i + 8),
    );
  }
  return xxh3Avalanche(result & MASK64);
}

function hashLong(input: Uint8Array, secret: Uint8Array): bigint {
  const len = input.length;
  const acc = [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1];
  const stripesPerBlock = (secret.length - STRIPE_LEN) / SECRET_CONSUME_RATE;
  const blockLen = STRIPE_LEN * stripesPerBlock;
  const blocks = Math.floor((len - 1) / blockLen);
  for (let n = 0; n < blocks; n++) {
    for (let s = 0; s < stripesPerBlock; s++) {
      accumulate512(acc, input, n * blockLen + s * STRIPE_LEN, secret, s * SECRET_CONSUME_RATE);
    }
    scrambleAcc(acc, secret, secret.length - STRIPE_LEN);
  }
  const lastStripes = Math.floor((len - 1 - blockLen * blocks) / STRIPE_LEN);
  for (let s = 0; s < lastStripes; s++) {
    accumulate512(acc, input, blocks * blockLen + s * STRIPE_LEN, secret, s * SECRET_CONSUME_RATE);
  }
  accumulate512(acc, input, len - STRIPE_LEN, secret, secret.length - STRIPE_LEN - SECRET_LASTACC_START);
  return mergeAccs(acc, secret, SECRET_MERGEACCS_START, (BigInt(len) * PRIME64_1) & MASK64);
}

/** XXH3-64 of `bytes` with a u64 `seed` (default 1337, Dynamo's `XXH3_SEED`). */
export function xxh3_64(bytes: Uint8Array, seed: bigint = DYNAMO_SEED): bigint {
  if (typeof seed !== 'bigint' || seed < 0n || seed > MASK64) {
    throw new RangeError(`xxh3 seed must be a u64 bigint, got ${String(seed)}`);
  }
  const len = bytes.length;
  if (len <= 16) return len0To16(bytes, XXH3_SECRET, seed);
  if (len <= 128) return len17To128(bytes, XXH3_SECRET, seed);
  if (len <= MIDSIZE_MAX) return len129To240(bytes, XXH3_SECRET, seed);
  return hashLong(bytes, seed === 0n ? XXH3_SECRET : customSecret(seed));
}
