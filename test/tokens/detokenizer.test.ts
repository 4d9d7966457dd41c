import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeTokens, IncrementalDetokenizer, StopStringMatcher } from '../../src/tokens/detokenizer.ts';
import { loadHfTokenizer } from '../../src/tokens/hf-tokenizer.ts';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';

const TINY = fileURLToPath(new URL('../fixtures/tiny-bpe/tokenizer.json', import.meta.url));

describe('IncrementalDetokenizer', () => {
  let o200k: Tokenizer;
  let tiny: Tokenizer;
  beforeAll(async () => {
    o200k = await loadO200kTokenizer();
    tiny = await loadHfTokenizer(TINY);
  });

  it('holds back the first half of a character split across two tokens', () => {
    const detok = new IncrementalDetokenizer(tiny);
    // 'é' is the byte tokens 0xC3 0xA9 in the tiny tokenizer.
    expect(detok.push([0xc3])).toBe('');
    expect(detok.push([0xa9])).toBe('é');
    expect(detok.flush()).toBe('');
  });

  it('emits only complete characters for an emoji spread over several o200k tokens', () => {
    const text = '🧑‍🚀 x';
    const ids = o200k.encode(text);
    const emojiTokens = ids.filter((id) => {
      const bytes = o200k.tokenBytes(id)!;
      return new TextDecoder('utf-8', { fatal: false }).decode(bytes).includes('\uFFFD');
    });
    expect(emojiTokens.length).toBeGreaterThan(0); // some token really does split a character
    const detok = new IncrementalDetokenizer(o200k);
    const pieces = ids.map((id) => detok.push([id]));
    for (const piece of pieces) expect(piece).not.toContain('\uFFFD');
    expect(pieces.join('') + detok.flush()).toBe(text);
  });

  it('joins to the full text for any chunking (property)', () => {
    fc.assert(
      fc.property(
        // Text that holds U+FFFD itself would trip the check below without any fault.
        fc.string({ unit: 'grapheme', maxLength: 60 }).filter((t) => !t.includes('\uFFFD')),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 20 }),
        (text, sizes) => {
          const ids = o200k.encode(text);
          const detok = new IncrementalDetokenizer(o200k);
          let out = '';
          let at = 0;
          let k = 0;
          while (at < ids.length) {
            const size = sizes[k++ % sizes.length];
            const piece = detok.push(ids.slice(at, at + size));
            expect(piece).not.toContain('\uFFFD');
            out += piece;
            at += size;
          }
          expect(out + detok.flush()).toBe(text);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('drops special tokens by default and keeps them when asked', () => {
    const end = o200k.specialTokenId('<|im_end|>')!;
    const ids = [...o200k.encode('done'), end];
    expect(new IncrementalDetokenizer(o200k).push(ids)).toBe('done');
    expect(new IncrementalDetokenizer(o200k, { skipSpecialTokens: false }).push(ids)).toBe('done<|im_end|>');
  });

  it('turns an unknown id or a dangling partial character into U+FFFD instead of failing', () => {
    const detok = new IncrementalDetokenizer(tiny);
    expect(detok.push([99_999])).toBe('\uFFFD');
    expect(detok.push([0xc3])).toBe('');
    expect(detok.flush()).toBe('\uFFFD');
  });
});

describe('decodeTokens', () => {
  let o200k: Tokenizer;
  let tiny: Tokenizer;
  beforeAll(async () => {
    o200k = await loadO200kTokenizer();
    tiny = await loadHfTokenizer(TINY);
  });

  /** The definition: every token's bytes (U+FFFD's for an unknown id) end to end, decoded at once. */
  function reference(tokenizer: Tokenizer, ids: readonly number[], skipSpecial: boolean): string {
    const bytes: number[] = [];
    for (const id of ids) {
      if (skipSpecial && tokenizer.isSpecial(id)) continue;
      bytes.push(...(tokenizer.tokenBytes(id) ?? new TextEncoder().encode('\uFFFD')));
    }
    return new TextDecoder('utf-8').decode(Uint8Array.from(bytes));
  }

  it('equals decoding all the bytes at once, for any mix of whole, partial, special and unknown tokens (property)', () => {
    // The tiny tokenizer's ids 0-255 are single bytes: continuation bytes, lead bytes of 2-4 byte
    // characters and the byte-order mark's EF BB BF are drawn often.
    const id = fc.oneof(
      fc.integer({ min: 0x20, max: 0x7e }),
      fc.integer({ min: 0x80, max: 0xbf }),
      fc.integer({ min: 0xc2, max: 0xf4 }),
      fc.constantFrom(0xef, 0xbb, 0xbf, 0xe2, 0x82, 0xac),
      fc.integer({ min: 0, max: 267 }),
      fc.constantFrom(300, 301, 302, 303, 999),
    );
    fc.assert(
      fc.property(fc.array(id, { maxLength: 24 }), fc.boolean(), (ids, skipSpecial) => {
        expect(decodeTokens(tiny, ids, { skipSpecialTokens: skipSpecial })).toBe(
          reference(tiny, ids, skipSpecial),
        );
        // Twice: the second time every token's text comes from the cache.
        expect(decodeTokens(tiny, ids, { skipSpecialTokens: skipSpecial })).toBe(
          reference(tiny, ids, skipSpecial),
        );
      }),
      { numRuns: 2_000 },
    );
  });

  it('an IncrementalDetokenizer fed the same ids in any chunking, then flushed, gives the same text (property)', () => {
    const id = fc.oneof(
      fc.integer({ min: 0x20, max: 0x7e }),
      fc.integer({ min: 0x80, max: 0xbf }),
      fc.integer({ min: 0xc2, max: 0xf4 }),
      fc.constantFrom(0xef, 0xbb, 0xbf, 0xe2, 0x82, 0xac),
      fc.constantFrom(300, 301, 302, 303, 999),
    );
    fc.assert(
      fc.property(
        fc.array(id, { maxLength: 24 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        (ids, sizes, skipSpecial) => {
          const detok = new IncrementalDetokenizer(tiny, { skipSpecialTokens: skipSpecial });
          let out = '';
          for (let at = 0, k = 0; at < ids.length; at += sizes[k++ % sizes.length])
            out += detok.push(ids.slice(at, at + sizes[k % sizes.length]));
          out += detok.flush();
          expect(out).toBe(reference(tiny, ids, skipSpecial));
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('keeps a byte-order mark inside the text and drops one at its start, as a decoder does', () => {
    const bom = [0xef, 0xbb, 0xbf];
    const end = tiny.specialTokenId('<|im_end|>')!;
    expect(decodeTokens(tiny, [...bom, 0x41])).toBe('A');
    expect(decodeTokens(tiny, [end, ...bom, 0x41])).toBe('A');
    expect(decodeTokens(tiny, [0x41, ...bom, 0x42])).toBe('A\uFEFFB');
    expect(decodeTokens(tiny, [0x41, 0xc3, ...bom])).toBe('A\uFFFD\uFEFF');
    const streamed = (ids: number[]) => {
      const detok = new IncrementalDetokenizer(tiny);
      return ids.map((id) => detok.push([id])).join('') + detok.flush();
    };
    expect(streamed([...bom, 0x41])).toBe('A');
    expect(streamed([end, ...bom, 0x41])).toBe('A');
    expect(streamed([0x41, ...bom, 0x42])).toBe('A\uFEFFB');
  });

  it('joins a character split by a skipped special token, as the joined bytes do', () => {
    const end = tiny.specialTokenId('<|im_end|>')!;
    expect(decodeTokens(tiny, [0x41, 0xc3, end, 0xa9])).toBe('Aé');
    expect(decodeTokens(tiny, [0x41, 0xc3, end, 0xa9], { skipSpecialTokens: false })).toBe(
      'A\uFFFD<|im_end|>\uFFFD',
    );
  });

  it('decodes real text and emoji split over o200k tokens', () => {
    const text = 'The capital of France is Paris 🧑‍🚀 — très bien. 東京';
    expect(decodeTokens(o200k, o200k.encode(text))).toBe(text);
    expect(decodeTokens(o200k, o200k.encode(text))).toBe(text);
  });
});

describe('StopStringMatcher', () => {
  it('finds a stop string split across chunks and cuts it off', () => {
    const m = new StopStringMatcher(['STOP']);
    expect(m.push('hello S')).toEqual({ text: 'hello ', stopped: false });
    expect(m.push('TO')).toEqual({ text: '', stopped: false });
    expect(m.push('P and more')).toEqual({ text: '', stopped: true, stop: 'STOP' });
    expect(m.push('later')).toEqual({ text: '', stopped: true });
    expect(m.flush()).toBe('');
  });

  it('releases held text that turns out not to be a stop string', () => {
    const m = new StopStringMatcher(['STOP']);
    expect(m.push('ST')).toEqual({ text: '', stopped: false });
    expect(m.push('ART')).toEqual({ text: 'START', stopped: false });
    expect(m.push('ending S')).toEqual({ text: 'ending ', stopped: false });
    expect(m.flush()).toBe('S');
  });

  it('the stop string completed first wins, whatever the chunking', () => {
    expect(new StopStringMatcher(['world', 'lo w']).push('hello world')).toEqual({
      text: 'hel',
      stopped: true,
      stop: 'lo w',
    });
    // "a" completes before "bab" does, even though "bab" starts earlier.
    expect(new StopStringMatcher(['bab', 'a']).push('bab')).toEqual({ text: 'b', stopped: true, stop: 'a' });
    const m = new StopStringMatcher(['bab', 'a']);
    expect(m.push('b')).toEqual({ text: '', stopped: false });
    expect(m.push('ab')).toEqual({ text: 'b', stopped: true, stop: 'a' });
    // Equal ends: the longer stop string wins.
    expect(new StopStringMatcher(['c', 'abc']).push('xabc')).toEqual({
      text: 'x',
      stopped: true,
      stop: 'abc',
    });
  });

  it('equals a one-shot search for any chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'x'), maxLength: 40 }),
        fc.array(fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 6 }), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 10 }),
        (text, stops, sizes) => {
          // Reference: scan the text one character at a time; stop at the first completed stop string.
          let expected = text;
          let firstAt = Number.POSITIVE_INFINITY;
          for (let end = 1; end <= text.length && !Number.isFinite(firstAt); end++) {
            const done = stops
              .filter((s) => text.slice(0, end).endsWith(s))
              .sort((a, b) => b.length - a.length)[0];
            if (done !== undefined) {
              firstAt = end - done.length;
              expected = text.slice(0, firstAt);
            }
          }
          const m = new StopStringMatcher(stops);
          let out = '';
          let at = 0;
          let k = 0;
          let stopped = false;
          while (at < text.length && !stopped) {
            const size = sizes[k++ % sizes.length];
            const r = m.push(text.slice(at, at + size));
            out += r.text;
            stopped = r.stopped;
            at += size;
          }
          if (!stopped) out += m.flush();
          expect(out).toBe(expected);
          expect(stopped).toBe(Number.isFinite(firstAt));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
