import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { translatePattern } from '../../src/tokens/hf-pretokenizer.ts';
import { HfBpeTokenizer, loadHfTokenizer } from '../../src/tokens/hf-tokenizer.ts';
import {
  loadO200kTokenizer,
  loadTokenizer,
  type Tokenizer,
  TokenizerError,
} from '../../src/tokens/tokenizer.ts';

const TINY = fileURLToPath(new URL('../fixtures/tiny-bpe/tokenizer.json', import.meta.url));

describe('o200k_base (gpt-tokenizer)', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadO200kTokenizer();
  });

  it('round-trips any well-formed text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (text) => {
        expect(tok.decode(tok.encode(text))).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  it('knows its special tokens and never produces them from text', () => {
    expect(tok.specialTokenId('<|im_start|>')).toBe(200003);
    expect(tok.specialTokenId('<|im_end|>')).toBe(200004);
    expect(tok.eosTokenId).toBe(199999);
    const ids = tok.encode('hi <|im_start|>system');
    expect(ids).not.toContain(200003);
    expect(tok.decode(ids)).toBe('hi <|im_start|>system');
    expect(tok.isSpecial(200004)).toBe(true);
    expect(tok.decode([200004], { skipSpecialTokens: true })).toBe('');
    expect(tok.decode([200004])).toBe('<|im_end|>');
  });

  it('token bytes concatenate to the UTF-8 of the text, even when a character spans tokens', () => {
    const text = 'naïve 😀 日本語';
    const ids = tok.encode(text);
    const bytes = ids.flatMap((id) => [...tok.tokenBytes(id)!]);
    expect(Buffer.from(bytes).toString('utf8')).toBe(text);
    expect(tok.tokenBytes(tok.vocabSize + 5)).toBeUndefined();
  });

  it('is the default of loadTokenizer', async () => {
    expect(await loadTokenizer()).toBe(tok);
  });
});

describe('Hugging Face tokenizer.json byte-level BPE (test/fixtures/tiny-bpe)', () => {
  // The fixture: ids 0..255 are the 256 byte-level characters in byte order (so a lone byte b is
  // id b), merges (rank order) "o Ġ", "h e", "l l", "Ġ w", "he ll", "hell o", "o r", "Ġw or",
  // "Ġwor l", "Ġworl d", "' s", "' S" make ids 256..267, and added tokens 300 <|endoftext|>,
  // 301 <|im_start|>, 302 <|im_end|> (special) and 303 <tool_call> (not special). Pre-tokenizer:
  // Qwen 2's Split regex (with a scoped (?i:...) group) then ByteLevel; NFC normalizer.
  let tok: HfBpeTokenizer;
  beforeAll(async () => {
    tok = await loadHfTokenizer(TINY);
  });

  it('applies merges by rank within pre-tokens, never across them', () => {
    // "o Ġ" is the first merge, but "hello" and " world" are separate pre-tokens.
    expect(tok.encode('hello world')).toEqual([261, 265]);
    expect(tok.encode('hell')).toEqual([260]);
    expect(tok.encode('lle')).toEqual([258, 101]);
    expect(tok.encode('hhe')).toEqual([104, 257]);
  });

  it('translates the scoped case-insensitive group: "it\'S" splits as it + \'S', () => {
    expect(tok.encode("it'S")).toEqual([105, 116, 267]);
    expect(tok.encode("it's")).toEqual([105, 116, 266]);
    expect(translatePattern("(?i:'s|[a-c])x").source).toBe("(?:'[sS]|[a-cA-C])x");
  });

  it('matches non-special added tokens in text but keeps special ones as plain text', () => {
    expect(tok.encode('a<tool_call>b')).toEqual([97, 303, 98]);
    const ids = tok.encode('<|im_start|>');
    expect(ids).not.toContain(301);
    expect(tok.decode(ids)).toBe('<|im_start|>');
    expect(tok.specialTokenId('<|im_start|>')).toBe(301);
    expect(tok.isSpecial(301)).toBe(true);
    expect(tok.isSpecial(303)).toBe(false);
  });

  it('lstrip / rstrip added tokens swallow the whitespace beside them; repeated tokens split in one pass', async () => {
    const json = JSON.parse(await readFile(TINY, 'utf8'));
    json.added_tokens = json.added_tokens.map((t: { id: number }) =>
      t.id === 303 ? { ...t, lstrip: true, rstrip: true } : t,
    );
    const stripping = new HfBpeTokenizer(json);
    expect(stripping.encode('a  <tool_call>\n b')).toEqual([97, 303, 98]);
    expect(tok.encode('a <tool_call><tool_call>b')).toEqual([97, 32, 303, 303, 98]);
  });

  it('encodes multi-byte characters as byte tokens and decodes them back', () => {
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
    expect(tok.decode([0xc3, 0xa9])).toBe('é');
    expect(tok.decode([261, 302, 265], { skipSpecialTokens: true })).toBe('hello world');
  });

  it('takes the eos token from tokenizer_config.json beside the file', () => {
    expect(tok.eosTokenId).toBe(302);
    expect(tok.vocabSize).toBe(304);
  });

  it('round-trips arbitrary text (NFC-normalised)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), (text) => {
        expect(tok.decode(tok.encode(text))).toBe(text.normalize('NFC'));
      }),
      { numRuns: 300 },
    );
  });

  it("takes the BOS from the post-processor's template (Llama 3 shape), or none", async () => {
    const json = JSON.parse(await readFile(TINY, 'utf8'));
    const llama = new HfBpeTokenizer({
      ...json,
      post_processor: {
        type: 'Sequence',
        processors: [
          { type: 'ByteLevel' },
          {
            type: 'TemplateProcessing',
            single: [
              { SpecialToken: { id: '<|endoftext|>', type_id: 0 } },
              { Sequence: { id: 'A', type_id: 0 } },
            ],
          },
        ],
      },
    });
    expect(llama.bosTokenId).toBe(300);
    expect(llama.encode('hello')).toEqual([261]); // encode never adds it; prompts do
    expect(new HfBpeTokenizer(json).bosTokenId).toBeUndefined();
    expect(new HfBpeTokenizer(json, { bosToken: '<|im_start|>' }).bosTokenId).toBe(301);
  });

  it('is what loadTokenizer returns for a tokenizer.json path', async () => {
    const loaded = await loadTokenizer({ tokenizerJsonPath: TINY });
    expect(loaded.encode('hello world')).toEqual([261, 265]);
  });

  it('rejects what it cannot reproduce faithfully', () => {
    const base = { model: { type: 'BPE', vocab: { a: 0 }, merges: [] } };
    expect(() => new HfBpeTokenizer({ ...base, pre_tokenizer: { type: 'Metaspace' } })).toThrow(
      TokenizerError,
    );
    expect(() => new HfBpeTokenizer({ ...base, pre_tokenizer: null })).toThrow(/byte-level/);
    expect(
      () =>
        new HfBpeTokenizer({
          model: { type: 'Unigram', vocab: {}, merges: [] },
          pre_tokenizer: { type: 'ByteLevel' },
        }),
    ).toThrow(TokenizerError);
    expect(
      () =>
        new HfBpeTokenizer({
          model: { type: 'BPE', vocab: { a: 0 }, merges: ['a b'] },
          pre_tokenizer: { type: 'ByteLevel' },
        }),
    ).toThrow(/missing from the vocabulary/);
  });
});
