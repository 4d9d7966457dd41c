/**
 * Lossless JSON for plane payloads: a bigint is written as a plain JSON number, and an integer that
 * is not a safe JS number decodes as a bigint. Consumers normalise field types with zod.
 *
 * Encoding is one JSON.stringify whose replacer turns a bigint into a marked string, and the marks
 * are then cut out around its digits (most payloads carry a u64 id or hash: a JSON.stringify that
 * throws on them, caught, cost an exception per message). Decoding uses JSON.parse when the text has
 * no run of 16+ digits (every integer of at most 15 digits is safe).
 */
import { randomBytes } from 'node:crypto';
import { isSafeNumber, parse } from 'lossless-json';
import { RuntimeError } from './errors.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

// A per-process random tag, so no string a client or model produces can be mistaken for a bigint.
const TAG = `u64-${randomBytes(8).toString('hex')}:`;
const MARKER = `\u0000${TAG}`;
const ESCAPED_MARKER = `\\u0000${TAG}`;
const MARKED = new RegExp(`"\\\\u0000${TAG}(-?\\d+)"`, 'g');

function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${MARKER}${value.toString()}` : value;
}

/** JSON text of `value`, bigints written as plain JSON numbers. */
export function stringifyLossless(value: unknown): string {
  const text: string | undefined = JSON.stringify(value, bigintReplacer);
  if (text === undefined) throw new RuntimeError('RUNTIME_INVALID', 'value has no JSON representation');
  return text.includes(ESCAPED_MARKER) ? text.replace(MARKED, '$1') : text;
}

/** lossless-json's number reviver: an integer that is not a safe JS number becomes a bigint. */
export function parseLosslessNumber(text: string): number | bigint {
  if (isSafeNumber(text)) return Number(text);
  if (/^-?\d+$/.test(text)) return BigInt(text);
  return Number(text);
}

function hasLongDigitRun(text: string): boolean {
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (++run >= 16) return true;
    } else run = 0;
  }
  return false;
}

/** Throws RuntimeError RUNTIME_MALFORMED on invalid JSON. */
export function parseLossless(text: string): unknown {
  try {
    return hasLongDigitRun(text) ? parse(text, null, parseLosslessNumber) : JSON.parse(text);
  } catch (error) {
    throw new RuntimeError('RUNTIME_MALFORMED', `invalid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(stringifyLossless(value));
}

/** Throws RuntimeError RUNTIME_MALFORMED on invalid UTF-8 or JSON. */
export function decodeJson(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch (error) {
    throw new RuntimeError('RUNTIME_MALFORMED', 'invalid UTF-8', { cause: error });
  }
  return parseLossless(text);
}
