import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { O200K_TOKEN_SPLIT_REGEX } from 'gpt-tokenizer/encodingParams/constants';
import { describe, expect, it } from 'vitest';
import { isO200kSplitRegex, O200kSplitter } from '../../src/tokens/tokenizer-o200k-split.ts';

function byRegex(text: string): string[] {
  return [...text.matchAll(O200K_TOKEN_SPLIT_REGEX)].map((m) => m[0]);
}

function bySplitter(text: string): string[] {
  const splitter = new O200kSplitter(O200K_TOKEN_SPLIT_REGEX);
  const pieces: string[] = [];
  for (let start = 0; start < text.length; ) {
    const end = splitter.pieceEnd(text, start);
    expect(end).toBeGreaterThan(start);
    pieces.push(text.slice(start, end));
    start = end;
  }
  return pieces;
}

/** Characters of every class the regex tells apart, ASCII and not. */
const ALPHABET = [
  ..."aZbYz AQ09 5\t\n\r\v\f''sStTlLvVeErRdDmM.,/!?-_()\"#\u0000\u001f",
  'é',
  'É',
  '\u0301',
  '中',
  'ß',
  '\u00a0',
  '\u2028',
  '\u3000',
  '٣',
  '½',
  '😀',
  'ǅ',
  'ʰ',
  '\u200b',
];

describe('O200kSplitter', () => {
  it('recognises the o200k split regex only', () => {
    expect(isO200kSplitRegex(O200K_TOKEN_SPLIT_REGEX)).toBe(true);
    expect(isO200kSplitRegex(/\s+/gu)).toBe(false);
  });

  it('splits exactly as the regex on text drawn from every character class', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...ALPHABET), { maxLength: 40 }), (chars) => {
        const text = chars.join('');
        expect(bySplitter(text)).toEqual(byRegex(text));
      }),
      { numRuns: 5_000 },
    );
  });

  it('splits exactly as the regex on arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (text) => {
        expect(bySplitter(text)).toEqual(byRegex(text));
      }),
      { numRuns: 2_000 },
    );
  });

  it("splits exactly as the regex on this repository's sources", () => {
    const root = join(import.meta.dirname, '..', '..', 'src');
    const text = readdirSync(root, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .sort()
      .slice(0, 40)
      .map((f) => readFileSync(join(root, f), 'utf8'))
      .join('\n');
    expect(bySplitter(text)).toEqual(byRegex(text));
  });
});
