/**
 * JSON in and out without losing u64 worker ids. `JSON.parse` rounds integers above 2^53 (a Dynamo
 * worker id often is one), so bodies that contain a run of 16+ digits go through lossless-json and
 * such integers come back as bigint; everything else takes the fast native path. On the way out,
 * bigint values are written as plain JSON numbers (Dynamo's wire shape).
 */
import { randomBytes } from 'node:crypto';
import { isInteger, isSafeNumber, parse as parseLossless } from 'lossless-json';

const LONG_DIGIT_RUN = /\d{16}/;

function parseNumber(text: string): number | bigint {
  return isInteger(text) && !isSafeNumber(text) ? BigInt(text) : Number(text);
}

/** Parses JSON text; integers beyond 2^53 become bigint. Throws SyntaxError on bad JSON. */
export function parseJsonLossless(text: string): unknown {
  if (!LONG_DIGIT_RUN.test(text)) return JSON.parse(text);
  return parseLossless(text, null, parseNumber);
}

// A per-process random tag, so no string a client or model produces can be mistaken for a bigint.
const TAG = `u64-${randomBytes(8).toString('hex')}:`;
const MARKER = `\u0000${TAG}`;
const ESCAPED_MARKER = `\\u0000${TAG}`;
const MARKED = new RegExp(`"\\\\u0000${TAG}(\\d+)"`, 'g');

function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${MARKER}${value.toString()}` : value;
}

/** JSON.stringify that writes bigint as a bare integer. */
export function stringifyJson(value: unknown): string {
  const text = JSON.stringify(value, bigintReplacer);
  return text.includes(ESCAPED_MARKER) ? text.replace(MARKED, '$1') : text;
}
