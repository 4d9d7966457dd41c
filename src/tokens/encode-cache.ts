/**
 * Remembers `tokenizer.encode` of recent texts. Chat clients send the same system prompt, and the
 * whole conversation so far, with every request: tokenizing those turns again is most of the
 * preprocessing time, and their token ids cannot change.
 *
 * Two generations of entries: new entries and hits go to the newer one; once it holds half of
 * `maxTokens`, it becomes the older and the older one is dropped. A lookup is one or two map reads
 * (no reordering on every hit, as an exact LRU would need) and the cache never holds more than
 * `maxTokens` token ids. A text longer than a quarter of the budget is encoded without caching.
 */
import type { Tokenizer } from './tokenizer.ts';

export const DEFAULT_ENCODE_CACHE_TOKENS = 1 << 19;

export class EncodeCache {
  private newer = new Map<string, Uint32Array>();
  private older = new Map<string, Uint32Array>();
  private newerTokens = 0;
  private olderTokens = 0;
  private readonly generationTokens: number;
  private readonly largestCached: number;

  constructor(
    private readonly tokenizer: Tokenizer,
    maxTokens: number = DEFAULT_ENCODE_CACHE_TOKENS,
  ) {
    this.generationTokens = Math.floor(maxTokens / 2);
    this.largestCached = Math.floor(maxTokens / 4);
  }

  /** The token ids of `text` (what `tokenizer.encode(text)` returns), shared: read only. */
  encode(text: string): ArrayLike<number> & Iterable<number> {
    const newer = this.newer.get(text);
    if (newer !== undefined) return newer;
    const older = this.older.get(text);
    if (older !== undefined) {
      this.older.delete(text);
      this.olderTokens -= older.length;
      this.remember(text, older);
      return older;
    }
    const ids = this.tokenizer.encode(text);
    if (ids.length <= this.largestCached) this.remember(text, Uint32Array.from(ids));
    return ids;
  }

  /** Texts held. */
  get size(): number {
    return this.newer.size + this.older.size;
  }

  /** Token ids held (at most the budget). */
  get tokens(): number {
    return this.newerTokens + this.olderTokens;
  }

  private remember(text: string, ids: Uint32Array): void {
    if (this.newerTokens + ids.length > this.generationTokens) {
      this.older = this.newer;
      this.olderTokens = this.newerTokens;
      this.newer = new Map();
      this.newerTokens = 0;
    }
    this.newer.set(text, ids);
    this.newerTokens += ids.length;
  }
}
