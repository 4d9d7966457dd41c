import { describe, expect, it } from 'vitest';
import { InvalidTokensError } from '../../src/routing/errors.ts';
import { TokenBuffer } from '../../src/routing/request-input.ts';

describe('TokenBuffer', () => {
  it('copies valid token ids of every length and array kind', () => {
    const buffer = new TokenBuffer();
    for (let n = 1; n <= 13; n++) {
      const ids = Array.from({ length: n }, (_, i) => (i * 2_654_435_761) >>> 0);
      expect(Array.from(buffer.read(ids))).toEqual(ids);
      expect(Array.from(buffer.read(Float64Array.from(ids)))).toEqual(ids);
      const small = ids.map((id) => id & 0xffff);
      expect(Array.from(buffer.read(Uint16Array.from(small)))).toEqual(small);
    }
    const long = Array.from({ length: 20_000 }, (_, i) => i);
    expect(Array.from(buffer.read(long))).toEqual(long);
    const typed = Uint32Array.of(1, 2, 3);
    expect(buffer.read(typed)).toBe(typed);
  });

  it('names the first bad token wherever it sits (four-at-a-time copy and the rest)', () => {
    const buffer = new TokenBuffer();
    const bad: unknown[] = [
      -1,
      1.5,
      Number.NaN,
      2 ** 32,
      '1',
      undefined,
      null,
      1n,
      Symbol('t'),
      { valueOf: () => 1 },
    ];
    for (let n = 1; n <= 11; n++) {
      for (let at = 0; at < n; at++) {
        for (const value of bad) {
          const tokens: unknown[] = Array.from({ length: n }, (_, i) => i);
          tokens[at] = value;
          // A second bad token later on must not be the one reported.
          if (at + 1 < n) tokens[n - 1] = -5;
          expect(() => buffer.read(tokens)).toThrow(InvalidTokensError);
          expect(() => buffer.read(tokens)).toThrow(`token at index ${at} `);
        }
      }
    }
    const holey = [1, 2, 3, 4, 5];
    delete holey[2];
    expect(() => buffer.read(holey)).toThrow('token at index 2 ');
  });

  it('rejects empty input and non-arrays', () => {
    const buffer = new TokenBuffer();
    for (const tokens of [[], new Uint32Array(0), 'abc', null, undefined, 7, { length: 2, 0: 1, 1: 2 }])
      expect(() => buffer.read(tokens)).toThrow(InvalidTokensError);
  });
});
