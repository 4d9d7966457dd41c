import { beforeAll, describe, expect, it } from 'vitest';
import { ChatMlTemplate, type TemplateMessage } from '../../src/frontend/chat-template.ts';
import { EncodeCache } from '../../src/tokens/encode-cache.ts';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';

/** The tokenizer, counting its encode calls. */
function counting(tokenizer: Tokenizer): Tokenizer & { calls: number } {
  const wrapped = Object.create(tokenizer) as Tokenizer & { calls: number };
  wrapped.calls = 0;
  wrapped.encode = (text: string) => {
    wrapped.calls++;
    return tokenizer.encode(text);
  };
  return wrapped;
}

describe('EncodeCache', () => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = await loadO200kTokenizer();
  });

  it("returns the tokenizer's ids, encoding a text once while it is held", () => {
    const tok = counting(tokenizer);
    const cache = new EncodeCache(tok);
    const text = 'You are a helpful assistant. Answer briefly, in French if asked in French.';
    const first = cache.encode(text);
    expect([...first]).toEqual(tokenizer.encode(text));
    expect([...cache.encode(`${text}`)]).toEqual([...first]);
    expect(tok.calls).toBe(1);
  });

  it('holds at most its budget of tokens; a text in use survives every turnover', () => {
    const tok = counting(tokenizer);
    const cache = new EncodeCache(tok, 64);
    const kept = 'the system prompt';
    for (let i = 0; i < 40; i++) {
      cache.encode(`word${i} word${i * 7} word${i * 13}`);
      cache.encode(kept);
      expect(cache.tokens).toBeLessThanOrEqual(64);
    }
    expect(tok.calls).toBe(41); // 40 texts, and the kept one once
    // An early text not used since was dropped: it is encoded again.
    cache.encode('word1 word7 word13');
    expect(tok.calls).toBe(42);
  });

  it('does not keep a text longer than a quarter of its budget', () => {
    const tok = counting(tokenizer);
    const cache = new EncodeCache(tok, 40);
    const long = 'one two three four five six seven eight nine ten eleven twelve';
    expect(tokenizer.encode(long).length).toBeGreaterThan(10);
    cache.encode(long);
    cache.encode(long);
    expect(tok.calls).toBe(2);
    expect(cache.size).toBe(0);
  });

  it('a chat template with the cache writes exactly what one without it writes, encoding each turn once', () => {
    const tok = counting(tokenizer);
    const cached = new ChatMlTemplate(tok, { cacheTokens: 4_096 });
    const plainTok = counting(tokenizer);
    const plain = new ChatMlTemplate(plainTok, { cacheTokens: 0 });
    const system: TemplateMessage = { role: 'system', content: 'You answer in one sentence. ✓ ünïcödé' };
    const conversation: TemplateMessage[] = [system];
    for (let turn = 0; turn < 12; turn++) {
      conversation.push({ role: 'user', content: `Question ${turn}: what is ${turn} × ${turn}?` });
      expect(cached.apply(conversation)).toEqual(plain.apply(conversation));
      conversation.push({ role: 'assistant', content: `It is ${turn * turn}.` });
    }
    // Two encodes in the constructor, then each of the 1 + 12 + 11 distinct turns once; without the
    // cache every request encodes its whole conversation again.
    expect(tok.calls).toBe(2 + 1 + 12 + 11);
    expect(plainTok.calls).toBeGreaterThan(100);
  });
});
