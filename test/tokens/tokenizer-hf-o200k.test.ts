/**
 * Cross-check of the tokenizer.json BPE against an independent implementation: o200k_base's
 * tiktoken ranks (from gpt-tokenizer) converted to a Hugging Face tokenizer.json the way
 * transformers' TikTokenConverter does it (vocab = byte-level strings, merges = every split of a
 * token into two shorter tokens, ordered by the merged token's rank, ignore_merges on), with
 * o200k's pre-tokenizer regex written in tokenizer.json's Rust syntax. Both must agree token for
 * token on arbitrary text.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { BYTE_TO_CHAR } from '../../src/tokens/hf-pretokenizer.ts';
import { HfBpeTokenizer, type TokenizerJson } from '../../src/tokens/hf-tokenizer.ts';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';

const O200K_PATTERN = [
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
  '\\p{N}{1,3}',
  ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*',
  '\\s*[\\r\\n]+',
  '\\s+(?!\\S)',
  '\\s+',
].join('|');

async function convertO200k(reference: Tokenizer): Promise<TokenizerJson> {
  const { default: ranks } = await import('gpt-tokenizer/bpeRanks/o200k_base');
  // Byte-level strings hold one UTF-16 unit per byte, so string positions are byte positions.
  const tokens: string[] = [];
  const rankOf = new Map<string, number>();
  for (let rank = 0; rank < ranks.length; rank++) {
    let text = '';
    for (const byte of reference.tokenBytes(rank)!) text += BYTE_TO_CHAR[byte];
    tokens[rank] = text;
    rankOf.set(text, rank);
  }
  const vocab: Record<string, number> = {};
  const merges: [string, string][] = [];
  tokens.forEach((token, rank) => {
    vocab[token] = rank;
    const splits: [string, string, number, number][] = [];
    for (let i = 1; i < token.length; i++) {
      const left = token.slice(0, i);
      const right = token.slice(i);
      const l = rankOf.get(left);
      const r = rankOf.get(right);
      if (l !== undefined && r !== undefined) splits.push([left, right, l, r]);
    }
    splits.sort((a, b) => a[2] - b[2] || a[3] - b[3]);
    for (const [left, right] of splits) merges.push([left, right]);
  });
  return {
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: O200K_PATTERN }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, use_regex: false },
      ],
    },
    decoder: { type: 'ByteLevel' },
    model: { type: 'BPE', vocab, merges, ignore_merges: true },
  };
}

describe('tokenizer.json BPE agrees with tiktoken on o200k_base', () => {
  let reference: Tokenizer;
  let converted: HfBpeTokenizer;
  beforeAll(async () => {
    reference = await loadO200kTokenizer();
    converted = new HfBpeTokenizer(await convertO200k(reference), { name: 'o200k-as-tokenizer.json' });
  }, 120_000);

  it('on sample text', () => {
    const samples = [
      "Hello, world! It's a TEST of THE'LL and we'VE 12345 numbers.\n\n  indented\tcode();",
      'Übermäßig große Straße — naïve café, 日本語のテキスト, emoji 😀👍🏽, العربية',
      'def f(x):\n    return x ** 2  # comment\r\n',
      // long pieces: the heap path
      'ab'.repeat(1200),
      'Supercalifragilisticexpialidocious'.repeat(40),
      '日本語'.repeat(300),
    ];
    for (const text of samples) expect(converted.encode(text)).toEqual(reference.encode(text));
  });

  it('on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 80 }), (text) => {
        expect(converted.encode(text)).toEqual(reference.encode(text));
      }),
      { numRuns: 400 },
    );
  });
});
