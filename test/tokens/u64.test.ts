import { describe, expect, it } from 'vitest';
import {
  packU64s,
  U64_MAX,
  u64FromHalves,
  u64FromI64,
  u64Hi,
  u64Lo,
  unpackU64s,
} from '../../src/tokens/u64.ts';

describe('u64 halves', () => {
  it('keeps values above 2^53 exact through packing', () => {
    const values = [0n, 1n, 9007199254740993n, U64_MAX, 0x8000_0000_0000_0000n];
    expect(unpackU64s(packU64s(values))).toEqual(values);
    expect(u64Lo(U64_MAX)).toBe(0xffff_ffff);
    expect(u64Hi(9007199254740993n)).toBe(0x20_0000);
    expect(u64FromHalves(1, 0x20_0000)).toBe(9007199254740993n);
  });

  it('reinterprets signed i64 hashes bitwise', () => {
    expect(u64FromI64(-1n)).toBe(U64_MAX);
    expect(u64FromI64(-2n)).toBe(U64_MAX - 1n);
  });
});
