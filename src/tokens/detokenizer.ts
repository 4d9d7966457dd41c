/**
 * Streaming detokenization: token ids arrive a few at a time and text must leave as soon as it is
 * complete. A byte-level token can end in the middle of a multi-byte UTF-8 character (an emoji is
 * often two or three tokens), so bytes are fed through a streaming TextDecoder that holds back an
 * incomplete tail until the next token completes it. Stop strings are matched on the decoded text
 * across chunk boundaries: text that could be the start of a stop string is held back until it is
 * either confirmed (then cut off) or ruled out (then released).
 */
import type { Tokenizer } from './tokenizer.ts';

export interface DetokenizerOptions {
  /** Leave special tokens (end-of-text, template markers) out of the text. Default true. */
  readonly skipSpecialTokens?: boolean;
}

export class IncrementalDetokenizer {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  private readonly skipSpecial: boolean;

  constructor(
    private readonly tokenizer: Tokenizer,
    options: DetokenizerOptions = {},
  ) {
    this.skipSpecial = options.skipSpecialTokens ?? true;
  }

  /** Adds tokens; returns the text they complete (possibly empty). Unknown ids decode to U+FFFD. */
  push(ids: readonly number[]): string {
    if (ids.length === 1) return this.decoder.decode(this.bytesOf(ids[0]), { stream: true });
    const parts: Uint8Array[] = [];
    let length = 0;
    for (const id of ids) {
      const bytes = this.bytesOf(id);
      parts.push(bytes);
      length += bytes.length;
    }
    const joined = new Uint8Array(length);
    let offset = 0;
    for (const part of parts) {
      joined.set(part, offset);
      offset += part.length;
    }
    return this.decoder.decode(joined, { stream: true });
  }

  /** Ends the stream: an incomplete trailing character becomes U+FFFD. */
  flush(): string {
    return this.decoder.decode();
  }

  private bytesOf(id: number): Uint8Array {
    if (this.skipSpecial && this.tokenizer.isSpecial(id)) return EMPTY;
    return this.tokenizer.tokenBytes(id) ?? REPLACEMENT;
  }
}

const EMPTY = new Uint8Array(0);
const REPLACEMENT = new TextEncoder().encode('\uFFFD');

export interface StopMatch {
  /** Text that is safe to emit now. */
  readonly text: string;
  /** True when a stop string was found; `text` ends right before it and nothing follows. */
  readonly stopped: boolean;
  /** The stop string that matched. */
  readonly stop?: string;
}

/**
 * Finds the first stop string to complete in a stream of text pieces: the match that ends first
 * (for equal ends, the longest), which is where generation stops; the result does not depend on
 * how the text is chunked. The stop string and everything after it are discarded.
 */
export class StopStringMatcher {
  private readonly stops: readonly string[];
  private readonly maxLength: number;
  private held = '';
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
    this.maxLength = this.stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  get stopped(): boolean {
    return this.done;
  }

  push(piece: string): StopMatch {
    if (this.done) return { text: '', stopped: true };
    if (this.stops.length === 0) return { text: piece, stopped: false };
    const buffer = this.held + piece;
    // The stop string completed first wins (smallest end; for equal ends the longest), which is
    // where generation would have stopped, however the text was cut into chunks.
    let at = -1;
    let end = Number.POSITIVE_INFINITY;
    let which = '';
    for (const stop of this.stops) {
      const index = buffer.indexOf(stop);
      if (index < 0) continue;
      const stopEnd = index + stop.length;
      if (stopEnd < end || (stopEnd === end && index < at)) {
        at = index;
        end = stopEnd;
        which = stop;
      }
    }
    if (at >= 0) {
      this.done = true;
      this.held = '';
      return { text: buffer.slice(0, at), stopped: true, stop: which };
    }
    const keep = this.heldSuffixLength(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), stopped: false };
  }

  /** Releases text held back as a possible stop prefix (call when the stream ends). */
  flush(): string {
    const text = this.done ? '' : this.held;
    this.held = '';
    return text;
  }

  /** Length of the longest suffix of `buffer` that is a proper prefix of some stop string. */
  private heldSuffixLength(buffer: string): number {
    const limit = Math.min(buffer.length, this.maxLength - 1);
    for (let length = limit; length > 0; length--) {
      const suffix = buffer.slice(buffer.length - length);
      for (const stop of this.stops) {
        if (stop.length > length && stop.startsWith(suffix)) return length;
      }
    }
    return 0;
  }
}
