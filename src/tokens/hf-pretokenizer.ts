/**
 * The text-side pipeline of a Hugging Face `tokenizer.json` for byte-level BPE models: normalizers
 * (NFC/NFD/NFKC/NFKD, Lowercase, Sequence), pre-tokenizers (ByteLevel, Split, Digits, Sequence),
 * and the GPT-2 byte-to-unicode alphabet that ByteLevel maps bytes into. Anything else in the file
 * is rejected at load time with a TokenizerError naming it, rather than tokenizing differently
 * from the engine.
 */
import { TokenizerError } from './tokenizer.ts';

/** GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100 upwards. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCodePoint(b);
  let next = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCodePoint(256 + next++);
  return table;
})();

export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const utf8 = new TextEncoder();

/** The byte-level form of a piece of text: each UTF-8 byte as one alphabet character. */
export function toByteLevel(text: string): string {
  let out = '';
  for (const byte of utf8.encode(text)) out += BYTE_TO_CHAR[byte];
  return out;
}

/** GPT-2's pre-tokenization pattern (ByteLevel with use_regex). */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/**
 * Converts a Rust-regex / Oniguruma pattern as tokenizer.json carries it to a JavaScript `u`
 * regex. The only construct the common tokenizers use that Node 20 lacks is the scoped flag group
 * `(?i:...)`; it is rewritten by turning each ASCII letter inside it into a `[xX]` class.
 */
export function translatePattern(pattern: string): RegExp {
  let out = '';
  let i = 0;
  while (i < pattern.length) {
    if (pattern.startsWith('(?i:', i)) {
      const end = groupEnd(pattern, i);
      out += `(?:${caseInsensitive(pattern.slice(i + 4, end))})`;
      i = end + 1;
    } else if (pattern[i] === '\\') {
      out += pattern.slice(i, i + 2);
      i += 2;
    } else {
      out += pattern[i++];
    }
  }
  try {
    return new RegExp(out, 'gu');
  } catch (error) {
    throw new TokenizerError(
      `unsupported pre-tokenizer regex ${JSON.stringify(pattern)}: ${(error as Error).message}`,
    );
  }
}

/** Index of the `)` closing the group that opens at `start`. */
function groupEnd(pattern: string, start: number): number {
  let depth = 0;
  let inClass = false;
  for (let i = start; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
    } else if (c === '(') {
      depth++;
    } else if (c === ')') {
      depth--;
      if (depth === 0) return i;
    }
  }
  throw new TokenizerError(`unbalanced group in regex ${JSON.stringify(pattern)}`);
}

function caseInsensitive(body: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '\\') {
      out += body.slice(i, i + 2);
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
      const end = body[i + 2];
      if (/[a-z]/i.test(c) && body[i + 1] === '-' && end !== undefined && /[a-z]/i.test(end)) {
        out += `${c.toLowerCase()}-${end.toLowerCase()}${c.toUpperCase()}-${end.toUpperCase()}`;
        i += 2;
      } else {
        out += /[a-z]/i.test(c) ? c.toLowerCase() + c.toUpperCase() : c;
      }
    } else if (c === '[') {
      inClass = true;
      out += c;
    } else if (/[a-z]/i.test(c)) {
      out += `[${c.toLowerCase()}${c.toUpperCase()}]`;
    } else {
      out += c;
    }
  }
  return out;
}

type Behavior = 'Isolated' | 'Removed' | 'MergedWithPrevious' | 'MergedWithNext';

/** Splits `text` around the matches of `regex` the way HF's SplitDelimiterBehavior does. */
function splitBy(text: string, regex: RegExp, behavior: Behavior): string[] {
  const pieces: string[] = [];
  let last = 0;
  let carry = '';
  regex.lastIndex = 0;
  for (const match of text.matchAll(regex)) {
    if (match[0] === '') continue;
    const at = match.index ?? 0;
    const gap = text.slice(last, at);
    const hit = match[0];
    last = at + hit.length;
    switch (behavior) {
      case 'Isolated':
        if (gap) pieces.push(gap);
        pieces.push(hit);
        break;
      case 'Removed':
        if (gap) pieces.push(gap);
        break;
      case 'MergedWithPrevious':
        pieces.push(gap + hit);
        break;
      case 'MergedWithNext':
        if (carry || gap) pieces.push(carry + gap);
        carry = hit;
        break;
    }
  }
  const rest = carry + text.slice(last);
  if (rest) pieces.push(rest);
  return pieces;
}

export type PreTokenizer = (pieces: string[]) => string[];
export type Normalizer = (text: string) => string;

interface Config {
  type?: unknown;
  [key: string]: unknown;
}

export function buildNormalizer(config: Config | null | undefined): Normalizer {
  if (!config) return (text) => text;
  switch (config.type) {
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD': {
      const form = config.type;
      return (text) => text.normalize(form);
    }
    case 'Lowercase':
      return (text) => text.toLowerCase();
    case 'Sequence': {
      const steps = (config.normalizers as Config[] | undefined)?.map(buildNormalizer) ?? [];
      return (text) => steps.reduce((t, step) => step(t), text);
    }
    default:
      throw new TokenizerError(`unsupported normalizer ${JSON.stringify(config.type)}`);
  }
}

/**
 * Builds the pre-tokenizer. The result maps text pieces to byte-level words; the ByteLevel step is
 * required (this loader supports byte-level BPE only).
 */
export function buildPreTokenizer(config: Config | null | undefined): PreTokenizer {
  if (!config)
    throw new TokenizerError('tokenizer.json has no pre_tokenizer; only byte-level BPE is supported');
  const steps =
    config.type === 'Sequence' ? ((config.pretokenizers as Config[] | undefined) ?? []) : [config];
  if (!steps.some((s) => s.type === 'ByteLevel')) {
    throw new TokenizerError(
      'only byte-level BPE tokenizers are supported (no ByteLevel pre-tokenizer found)',
    );
  }
  const built = steps.map(buildStep);
  return (pieces) => built.reduce((current, step) => step(current), pieces);
}

function buildStep(config: Config): PreTokenizer {
  switch (config.type) {
    case 'ByteLevel': {
      const regex = config.use_regex === false ? undefined : translatePattern(GPT2_PATTERN);
      const prefixSpace = config.add_prefix_space === true;
      return (pieces) => {
        const out: string[] = [];
        for (let piece of pieces) {
          if (prefixSpace && !piece.startsWith(' ')) piece = ` ${piece}`;
          const words = regex ? splitBy(piece, regex, 'Isolated') : [piece];
          for (const word of words) out.push(toByteLevel(word));
        }
        return out;
      };
    }
    case 'Split': {
      if (config.invert === true)
        throw new TokenizerError('Split pre-tokenizer with invert is not supported');
      const pattern = config.pattern as { Regex?: string; String?: string } | undefined;
      const source =
        pattern?.Regex ??
        (pattern?.String !== undefined ? pattern.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : undefined);
      if (source === undefined) throw new TokenizerError('Split pre-tokenizer without a pattern');
      const behavior = config.behavior as Behavior;
      if (!['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext'].includes(behavior)) {
        throw new TokenizerError(`unsupported Split behavior ${JSON.stringify(config.behavior)}`);
      }
      const regex = translatePattern(source);
      return (pieces) => pieces.flatMap((piece) => splitBy(piece, regex, behavior));
    }
    case 'Digits': {
      const regex = config.individual_digits === true ? /\p{N}/gu : /\p{N}+/gu;
      return (pieces) => pieces.flatMap((piece) => splitBy(piece, regex, 'Isolated'));
    }
    default:
      throw new TokenizerError(`unsupported pre-tokenizer ${JSON.stringify(config.type)}`);
  }
}
