import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';
import { mergeByRank, RankBpe } from '../../src/tokens/tokenizer-bpe.ts';

/** tiktoken's `_byte_pair_merge`, written the plain quadratic way, as the reference. */
function referenceMerge(ranks: Map<string, number>, bytes: string): number[] {
  const whole = ranks.get(bytes);
  if (whole !== undefined) return [whole];
  let parts = [...bytes];
  for (;;) {
    let best = Number.POSITIVE_INFINITY;
    let at = -1;
    for (let i = 0; i + 1 < parts.length; i++) {
      const rank = ranks.get(parts[i] + parts[i + 1]);
      if (rank !== undefined && rank < best) {
        best = rank;
        at = i;
      }
    }
    if (at < 0) break;
    parts = [...parts.slice(0, at), parts[at] + parts[at + 1], ...parts.slice(at + 2)];
  }
  return parts.map((p) => ranks.get(p)!);
}

describe('RankBpe (tiktoken semantics)', () => {
  it('the heap path (long pieces) and the scan path (short pieces) equal the reference', () => {
    // A small vocabulary over "abc": every single byte, then random multi-byte tokens.
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 2, maxLength: 5 }), {
          maxLength: 30,
        }),
        fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 300 }),
        (tokens, text) => {
          const ranks = new Map<string, number>([
            ['a', 0],
            ['b', 1],
            ['c', 2],
          ]);
          for (const token of tokens) ranks.set(token, ranks.size);
          expect(new RankBpe(ranks).encodePiece(text)).toEqual(referenceMerge(ranks, text));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('mergeByRank (merge-list semantics)', () => {
  it('equals merging the lowest-ranked pair leftmost-first, one at a time', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 })), {
          maxLength: 12,
          selector: ([a, b]) => `${a},${b}`,
        }),
        fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 200 }),
        (merges, symbols) => {
          // merge r joins (a, b) into the new id 100 + r; merged ids can merge again via later pairs
          const rules = merges.map(([a, b], r) => [a, b, r] as const);
          const rankOf = (a: number, b: number) =>
            rules.find(([x, y]) => x === a && y === b)?.[2] ?? Number.POSITIVE_INFINITY;
          let expected = [...symbols];
          for (;;) {
            let best = Number.POSITIVE_INFINITY;
            let at = -1;
            for (let i = 0; i + 1 < expected.length; i++) {
              const r = rankOf(expected[i], expected[i + 1]);
              if (r < best) {
                best = r;
                at = i;
              }
            }
            if (at < 0) break;
            expected = [...expected.slice(0, at), 100 + best, ...expected.slice(at + 2)];
          }
          expect(mergeByRank(symbols, rankOf, (r) => 100 + r)).toEqual(expected);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('o200k_base encode agrees with gpt-tokenizer', () => {
  let tok: Tokenizer;
  let reference: (text: string) => number[];
  beforeAll(async () => {
    tok = await loadO200kTokenizer();
    const { default: api } = await import('gpt-tokenizer/encoding/o200k_base');
    reference = (text) => api.encode(text, { disallowedSpecial: new Set() });
  });

  it('on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 120 }), (text) => {
        expect(tok.encode(text)).toEqual(reference(text));
      }),
      { numRuns: 500 },
    );
  });

  it('on long pieces that take the heap path', () => {
    const samples = [
      'x'.repeat(3000),
      'ab'.repeat(1200),
      'Supercalifragilisticexpialidocious'.repeat(40),
      'é'.repeat(900),
      '日本語'.repeat(300),
      '😀'.repeat(400),
      `${' '.repeat(2000)}end`,
      '!?'.repeat(800),
    ];
    for (const text of samples) expect(tok.encode(text)).toEqual(reference(text));
  });

  it('a 200 kB run of one letter encodes (no quadratic blow-up) and decodes back', () => {
    const text = 'x'.repeat(200_000);
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
  });
});
