import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeJson, encodeJson, parseLossless, stringifyLossless } from '../../src/runtime/codec.ts';
import { isRuntimeError } from '../../src/runtime/errors.ts';

describe('lossless JSON codec', () => {
  it('writes bigints as plain JSON numbers, negative ones too, and leaves look-alike strings alone', () => {
    expect(stringifyLossless({ id: 18446744073709551615n, small: 7n, list: [1, 2n], neg: -5n })).toBe(
      '{"id":18446744073709551615,"small":7,"list":[1,2],"neg":-5}',
    );
    for (const s of ['u64:5', '\u0000u64-0000000000000000:7', '"\\u0000u64-0000000000000000:7"'])
      expect(stringifyLossless({ s, n: 1n })).toBe(`{"s":${JSON.stringify(s)},"n":1}`);
    expect(stringifyLossless({ a: [undefined, () => 1], d: new Date(0), n: null })).toBe(
      JSON.stringify({ a: [undefined, () => 1], d: new Date(0), n: null }),
    );
    expect(() => stringifyLossless(undefined)).toThrow(/no JSON representation/);
  });

  it('decodes integers that are not safe numbers as bigint, everything else as numbers', () => {
    const value = parseLossless(
      '{"max":18446744073709551615,"above":9007199254740993,"safe16":1234567890123456,"neg":-9223372036854775808,"f":0.1,"e":1e300,"s":"12345678901234567890"}',
    );
    expect(value).toEqual({
      max: 18446744073709551615n,
      above: 9007199254740993n,
      safe16: 1234567890123456,
      neg: -9223372036854775808n,
      f: 0.1,
      e: 1e300,
      s: '12345678901234567890',
    });
  });

  it('round-trips any u64 exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (n) => {
        const back = decodeJson(encodeJson({ n })) as { n: number | bigint };
        expect(BigInt(back.n)).toBe(n);
        expect(typeof back.n).toBe(n <= BigInt(Number.MAX_SAFE_INTEGER) ? 'number' : 'bigint');
      }),
    );
  });

  it('rejects invalid JSON and invalid UTF-8 with RUNTIME_MALFORMED', () => {
    for (const bytes of [new TextEncoder().encode('{"a":'), new Uint8Array([0xff, 0xfe]), new Uint8Array()]) {
      let error: unknown;
      try {
        decodeJson(bytes);
      } catch (e) {
        error = e;
      }
      expect(isRuntimeError(error, 'RUNTIME_MALFORMED')).toBe(true);
    }
    expect(() => parseLossless('[1234567890123456789,')).toThrow(/invalid JSON/);
  });
});
