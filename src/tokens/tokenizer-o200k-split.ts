/**
 * o200k_base pre-tokenization (the split regex of tiktoken / gpt-tokenizer) with a hand-written scan
 * for ASCII text. The regex costs ~40% of encoding with its Unicode property classes; on ASCII the
 * classes reduce to [A-Z], [a-z], [0-9], ASCII whitespace and the rest, and the alternatives to a
 * few loops. The regex has no lookbehind, so the piece starting at a position depends only on the
 * text from there on: whenever the scan would need to classify a non-ASCII character it asks the
 * regex (sticky, at that same position) for that one piece, and goes on scanning after it.
 *
 * The regex, alternatives in order:
 *   1. [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+ CONTRACTION?
 *   2. [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]* CONTRACTION?
 *   3. \p{N}{1,3}
 *   4. ' '?[^\s\p{L}\p{N}]+[\r\n/]*
 *   5. \s*[\r\n]+       6. \s+(?!\S)       7. \s+
 * with CONTRACTION = '(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE]).
 */

const CONTRACTION = "(?:'(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE]))?";

/** The pattern this scan reproduces (gpt-tokenizer's O200K_TOKEN_SPLIT_PATTERN). */
const O200K_SPLIT_PATTERN = String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+${CONTRACTION}|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*${CONTRACTION}|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** Whether `regex` is o200k_base's split regex (so O200kSplitter reproduces it). */
export function isO200kSplitRegex(regex: RegExp): boolean {
  return regex.source === O200K_SPLIT_PATTERN && regex.unicode;
}

// ASCII character classes.
const UPPER = 1;
const LOWER = 2;
const DIGIT = 3;
const SPACE = 4; // \s other than \r and \n
const NEWLINE = 5; // \r, \n
const OTHER = 6; // neither letter, digit nor whitespace
/** Past the end of the text. */
const END = 0;
/** A non-ASCII character: the regex decides. */
const WIDE = 7;

const CLASS = new Uint8Array(128).fill(OTHER);
for (let c = 65; c <= 90; c++) CLASS[c] = UPPER;
for (let c = 97; c <= 122; c++) CLASS[c] = LOWER;
for (let c = 48; c <= 57; c++) CLASS[c] = DIGIT;
for (const c of [9, 11, 12, 32]) CLASS[c] = SPACE;
CLASS[10] = NEWLINE;
CLASS[13] = NEWLINE;

const APOSTROPHE = 39;
const SLASH = 47;

/** Length of a contraction suffix ('s, 'll, 're, ...) at `i`, or 0. */
function contractionLength(text: string, i: number): number {
  if (text.charCodeAt(i) !== APOSTROPHE) return 0;
  const a = text.charCodeAt(i + 1) | 0x20; // lower-cased (NaN | 0x20 = 0x20 past the end)
  if (a === 0x73 || a === 0x64 || a === 0x6d || a === 0x74) return 2; // s d m t
  const b = text.charCodeAt(i + 2) | 0x20;
  if ((a === 0x6c && b === 0x6c) || (a === 0x76 && b === 0x65) || (a === 0x72 && b === 0x65)) return 3; // ll ve re
  return 0;
}

export class O200kSplitter {
  private readonly sticky: RegExp;
  /** Whether the last piece pieceEnd returned is all ASCII (its latin1 bytes are its chars). */
  lastPieceAscii = true;

  /** @param regex o200k_base's split regex (gpt-tokenizer's O200K_TOKEN_SPLIT_REGEX). */
  constructor(regex: RegExp) {
    this.sticky = new RegExp(regex.source, 'uy');
  }

  /** End (exclusive) of the pre-tokenized piece that starts at `start` (< text.length). */
  pieceEnd(text: string, start: number): number {
    const end = this.asciiPieceEnd(text, start);
    if (end > 0) {
      this.lastPieceAscii = true;
      return end;
    }
    this.lastPieceAscii = false;
    this.sticky.lastIndex = start;
    const match = this.sticky.exec(text);
    // Every character starts a piece (each alternative family covers one class), so this cannot fail.
    if (match === null) throw new Error(`o200k split: no piece at ${start}`);
    return start + match[0].length;
  }

  /** The piece's end by the ASCII scan, or -1 when a non-ASCII character is in the way. */
  private asciiPieceEnd(text: string, start: number): number {
    const c = classAt(text, start);
    if (c === WIDE) return -1;
    if (c === UPPER || c === LOWER) return lettersEnd(text, start);
    if (c === DIGIT) {
      let i = start + 1;
      for (; i < start + 3; i++) {
        const k = classAt(text, i);
        if (k === WIDE) return -1;
        if (k !== DIGIT) break;
      }
      return i;
    }
    const next = classAt(text, start + 1);
    if (next === WIDE) return -1;
    // Alternatives 1-2 with their one-character prefix (anything but \r, \n, letters and digits).
    if (c !== NEWLINE && (next === UPPER || next === LOWER)) return lettersEnd(text, start + 1);
    // Alternative 4: an optional space, a run of OTHER, then any run of \r, \n and / (a / right
    // after the OTHER run belongs to it; one after a newline belongs to this tail).
    if (c === OTHER || (text.charCodeAt(start) === 32 && next === OTHER)) {
      let i = c === OTHER ? start + 1 : start + 2;
      let k = classAt(text, i);
      while (k === OTHER) k = classAt(text, ++i);
      while (k === NEWLINE || (k === OTHER && text.charCodeAt(i) === SLASH)) k = classAt(text, ++i);
      return k === WIDE ? -1 : i;
    }
    // Whitespace (alternatives 5-7): W = the maximal whitespace run from start.
    let lastNewline = -1;
    let i = start;
    let k = c;
    while (k === SPACE || k === NEWLINE) {
      if (k === NEWLINE) lastNewline = i;
      k = classAt(text, ++i);
    }
    if (k === WIDE) return -1; // the run may go on with Unicode whitespace
    if (lastNewline >= 0) return lastNewline + 1; // \s*[\r\n]+: up to the last newline of the run
    if (k === END || i - start === 1) return i; // \s+(?!\S) at the end of the text, or \s+
    return i - 1; // \s+(?!\S): all but the last, which goes with what follows
  }
}

function classAt(text: string, i: number): number {
  if (i >= text.length) return END;
  const code = text.charCodeAt(i);
  return code < 128 ? CLASS[code] : WIDE;
}

/** Alternatives 1-2 from a letter at `i`: [A-Z]*[a-z]* then an optional contraction; -1 if Unicode is in the way. */
function lettersEnd(text: string, i: number): number {
  let k = classAt(text, i);
  while (k === UPPER) k = classAt(text, ++i);
  while (k === LOWER) k = classAt(text, ++i);
  if (k === WIDE) return -1; // a Unicode letter or mark may continue the run
  return i + contractionLength(text, i);
}
