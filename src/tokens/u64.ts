/**
 * u64 helpers. Inside hot paths a u64 lives as two u32 halves (lo, hi), usually packed in a
 * Uint32Array as [lo0, hi0, lo1, hi1, ...]. At API edges (events, wire, ids) it is a bigint.
 * Never pass a u64 through a JS number: above 2^53 it silently loses bits.
 */

export type U64 = bigint;

export const U64_MAX: U64 = 0xffff_ffff_ffff_ffffn;
const U32_MASK = 0xffff_ffffn;

export function isU64(value: unknown): value is U64 {
  return typeof value === 'bigint' && value >= 0n && value <= U64_MAX;
}

export function u64FromHalves(lo: number, hi: number): U64 {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function u64Lo(value: U64): number {
  return Number(value & U32_MASK);
}

export function u64Hi(value: U64): number {
  return Number((value >> 32n) & U32_MASK);
}

/** Reads pair `index` of a packed [lo, hi] array as a bigint. */
export function readPackedU64(packed: Uint32Array, index: number): U64 {
  return u64FromHalves(packed[2 * index], packed[2 * index + 1]);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Writes `value` into pair `index` of a packed [lo, hi] array. */
export function writePackedU64(packed: Uint32Array, index: number, value: U64): void {
  packed[2 * index] = u64Lo(value);
  packed[2 * index + 1] = u64Hi(value);
}

export function packU64s(values: readonly U64[]): Uint32Array {
  const packed = new Uint32Array(values.length * 2);
  for (let i = 0; i < values.length; i++) writePackedU64(packed, i, values[i]);
  return packed;
}

export function unpackU64s(packed: Uint32Array, count = packed.length >>> 1): U64[] {
  const out = new Array<U64>(count);
  if (LITTLE_ENDIAN) {
    // A packed [lo, hi] pair is then a little-endian u64: read it as one bigint, no arithmetic.
    const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
    for (let i = 0; i < count; i++) out[i] = view.getBigUint64(8 * i, true);
  } else for (let i = 0; i < count; i++) out[i] = readPackedU64(packed, i);
  return out;
}

/** Two's-complement reinterpretation of an i64 as u64 (engines may publish signed hashes). */
export function u64FromI64(value: bigint): U64 {
  return BigInt.asUintN(64, value);
}
