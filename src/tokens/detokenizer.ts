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
  /** Made for the first token that is not whole characters on its own (many streams never need one). */
  private decoder: InstanceType<typeof TextDecoder> | undefined;
  /** The decoder may hold the start of a character: the last token it was fed was not whole. */
  private pending = false;
  /** Text has gone out already (a decoder drops a byte-order mark at the start of the text only). */
  private started = false;
  private readonly skipSpecial: boolean;
  private readonly texts: TokenTexts;

  constructor(
    private readonly tokenizer: Tokenizer,
    options: DetokenizerOptions = {},
  ) {
    this.skipSpecial = options.skipSpecialTokens ?? true;
    this.texts = tokenTextsOf(tokenizer);
  }

  /**
   * Adds tokens; returns the text they complete (possibly empty). Unknown ids decode to U+FFFD.
   * A whole token with nothing held back is its cached text; any other goes through the decoder.
   */
  push(ids: readonly number[]): string {
    let text = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const whole = this.texts.text(id, this.skipSpecial);
      if (whole === '') continue; // a skipped special token: no bytes
      if (whole !== undefined && !this.pending) {
        text += whole;
        this.started = true;
        continue;
      }
      this.decoder ??= new TextDecoder('utf-8', { fatal: false, ignoreBOM: this.started });
      // (A skipped special token was passed over above, as text '': what is left has its bytes.)
      text += this.decoder.decode(this.tokenizer.tokenBytes(id) ?? REPLACEMENT, STREAM);
      this.started = true;
      this.pending = whole === undefined;
    }
    return text;
  }

  /** Ends the stream: an incomplete trailing character becomes U+FFFD. */
  flush(): string {
    this.pending = false;
    return this.decoder?.decode() ?? '';
  }
}

const STREAM = { stream: true };
const EMPTY = new Uint8Array(0);
const REPLACEMENT = new TextEncoder().encode('\uFFFD');
/** A one-shot decode keeps no state between calls, so one decoder serves every caller. */
const ONE_SHOT = new TextDecoder('utf-8', { fatal: false });

/**
 * The whole text of a finished token sequence at once: the same text an `IncrementalDetokenizer`
 * fed the same ids (in any chunking) and then flushed produces. Most tokens are whole UTF-8
 * characters on their own: their texts come from a per-tokenizer cache and are joined; each run of
 * other tokens (part of a character, unknown ids) has its bytes joined and decoded. A run starts
 * and ends on a character boundary (whole tokens begin and end on one), so decoding it apart gives
 * what decoding all the bytes at once would.
 */
export function decodeTokens(
  tokenizer: Tokenizer,
  ids: readonly number[],
  options: DetokenizerOptions = {},
): string {
  const skipSpecial = options.skipSpecialTokens ?? true;
  const texts = tokenTextsOf(tokenizer);
  let text = '';
  let run = -1; // first id of the current run of tokens that are not whole characters
  for (let i = 0; i < ids.length; i++) {
    const piece = texts.text(ids[i], skipSpecial);
    if (piece === undefined) {
      if (run < 0) run = i;
    } else if (piece !== '') {
      // (A skipped special token adds no bytes: it neither ends a run nor starts one.)
      if (run >= 0) text += decodeRunOf(texts, tokenizer, ids, run, i, skipSpecial, text === '');
      run = -1;
      text += piece;
    }
  }
  if (run >= 0) text += decodeRunOf(texts, tokenizer, ids, run, ids.length, skipSpecial, text === '');
  return text;
}

/** A decoder keeps a byte-order mark that is not at the start of the text. */
const KEEP_BOM = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** A run of one token in the middle of a text is that token's bytes decoded alone (cached). */
function decodeRunOf(
  texts: TokenTexts,
  tokenizer: Tokenizer,
  ids: readonly number[],
  start: number,
  end: number,
  skipSpecial: boolean,
  atStart: boolean,
): string {
  if (end - start === 1 && !atStart) return texts.aloneText(ids[start]);
  return (atStart ? ONE_SHOT : KEEP_BOM).decode(joinTokenBytes(tokenizer, ids, skipSpecial, start, end));
}

const NOT_WHOLE = null;
const STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The text of single tokens, for those whose bytes decode alone to exactly the characters they
 * add to any text: valid, complete UTF-8 not starting with a byte-order mark (a decoder drops a
 * BOM at the start of a text only). One slot per id of the vocabulary, filled on first use (an
 * engine may emit any id, so a bounded cache would keep missing); ids outside it are not kept.
 */
class TokenTexts {
  /** By id: the text, NOT_WHOLE, or undefined when not looked at yet. */
  private readonly texts: (string | typeof NOT_WHOLE | undefined)[] = [];
  /** By id, for tokens that are not whole: their bytes decoded alone (a few hundred ids at most). */
  private readonly alone = new Map<number, string>();

  constructor(private readonly tokenizer: Tokenizer) {
    // Filled in a loop: `new Array(n)` of a vocabulary's size would be a slow dictionary array.
    for (let id = 0; id < tokenizer.vocabSize; id++) this.texts.push(undefined);
  }

  /** The token's text; '' for a skipped special token; undefined when its bytes are not whole characters. */
  text(id: number, skipSpecial: boolean): string | undefined {
    if (skipSpecial && this.tokenizer.isSpecial(id)) return '';
    let text = this.texts[id];
    if (text === undefined) {
      const bytes = this.tokenizer.tokenBytes(id);
      if (bytes === undefined) return undefined;
      text = wholeText(bytes);
      if (id < this.texts.length) this.texts[id] = text;
    }
    return text ?? undefined;
  }

  /** A token that is not whole characters, decoded on its own in the middle of a text. */
  aloneText(id: number): string {
    let text = this.alone.get(id);
    if (text === undefined) {
      text = KEEP_BOM.decode(tokenBytesOf(this.tokenizer, id, false));
      if (id >= 0 && id < this.texts.length) this.alone.set(id, text);
    }
    return text;
  }
}

function wholeText(bytes: Uint8Array): string | typeof NOT_WHOLE {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return NOT_WHOLE;
  try {
    return STRICT.decode(bytes);
  } catch {
    return NOT_WHOLE;
  }
}

const tokenTexts = new WeakMap<Tokenizer, TokenTexts>();

function tokenTextsOf(tokenizer: Tokenizer): TokenTexts {
  let texts = tokenTexts.get(tokenizer);
  if (texts === undefined) {
    texts = new TokenTexts(tokenizer);
    tokenTexts.set(tokenizer, texts);
  }
  return texts;
}

function tokenBytesOf(tokenizer: Tokenizer, id: number, skipSpecial: boolean): Uint8Array {
  if (skipSpecial && tokenizer.isSpecial(id)) return EMPTY;
  return tokenizer.tokenBytes(id) ?? REPLACEMENT;
}

/** The bytes of `ids[start..end)`, end to end (special ones left out when skipped). */
function joinTokenBytes(
  tokenizer: Tokenizer,
  ids: readonly number[],
  skipSpecial: boolean,
  start: number,
  end: number,
): Uint8Array {
  const parts: Uint8Array[] = [];
  let length = 0;
  for (let i = start; i < end; i++) {
    const bytes = tokenBytesOf(tokenizer, ids[i], skipSpecial);
    parts.push(bytes);
    length += bytes.length;
  }
  const joined = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

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
 *
 * Each stop string runs a Knuth-Morris-Pratt automaton over the text (UTF-16 code units), so the
 * cost is O(text length × stop strings) however long the stop strings are; text that could still
 * be the start of a stop string (the longest partial match) is held back.
 */
export class StopStringMatcher {
  private readonly stops: readonly string[];
  /** KMP failure function per stop string. */
  private readonly failure: readonly Int32Array[];
  /** Length of the longest prefix of each stop string that ends the text seen so far. */
  private readonly state: Int32Array;
  private held = '';
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
    this.failure = this.stops.map(failureFunction);
    this.state = new Int32Array(this.stops.length);
  }

  get stopped(): boolean {
    return this.done;
  }

  push(piece: string): StopMatch {
    if (this.done) return { text: '', stopped: true };
    if (this.stops.length === 0) return { text: piece, stopped: false };
    const buffer = this.held + piece;
    const offset = this.held.length;
    let keep = 0;
    for (let i = 0; i < piece.length; i++) {
      const c = piece.charCodeAt(i);
      let completed = -1;
      keep = 0;
      for (let k = 0; k < this.stops.length; k++) {
        const stop = this.stops[k];
        let q = this.state[k];
        while (q > 0 && stop.charCodeAt(q) !== c) q = this.failure[k][q - 1];
        if (stop.charCodeAt(q) === c) q++;
        if (q === stop.length) {
          if (completed < 0 || stop.length > this.stops[completed].length) completed = k;
          q = this.failure[k][q - 1];
        }
        this.state[k] = q;
        if (q > keep) keep = q;
      }
      if (completed >= 0) {
        this.done = true;
        this.held = '';
        const end = offset + i + 1;
        const stop = this.stops[completed];
        return { text: buffer.slice(0, end - stop.length), stopped: true, stop };
      }
    }
    if (piece.length === 0) return { text: '', stopped: false };
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), stopped: false };
  }

  /** Releases text held back as a possible stop prefix (call when the stream ends). */
  flush(): string {
    const text = this.done ? '' : this.held;
    this.held = '';
    this.state.fill(0);
    return text;
  }
}

/** failure[q] = length of the longest proper prefix of s[0..q] that is also its suffix. */
function failureFunction(s: string): Int32Array {
  const failure = new Int32Array(s.length);
  let k = 0;
  for (let q = 1; q < s.length; q++) {
    while (k > 0 && s.charCodeAt(k) !== s.charCodeAt(q)) k = failure[k - 1];
    if (s.charCodeAt(k) === s.charCodeAt(q)) k++;
    failure[q] = k;
  }
  return failure;
}
