/**
 * JSON in and out without losing u64 worker ids. `JSON.parse` rounds integers above 2^53 (a Dynamo
 * worker id often is one). Bodies are parsed natively first; only when a field that carries a u64
 * holds a number JSON.parse could not represent exactly is the text parsed again with
 * lossless-json, where such integers come back as bigint. (Deciding from the parsed value rather
 * than from the text keeps a prompt full of digits on the fast path.) On the way out, bigint values
 * are written as plain JSON numbers (Dynamo's wire shape).
 */
import { randomBytes } from 'node:crypto';
import { isInteger, isSafeNumber, parse as parseLossless } from 'lossless-json';

function parseNumber(text: string): number | bigint {
  return isInteger(text) && !isSafeNumber(text) ? BigInt(text) : Number(text);
}

/** A number JSON.parse may have rounded. */
export function isUnsafeNumber(value: unknown): boolean {
  return typeof value === 'number' && !Number.isSafeInteger(value) && Number.isInteger(value);
}

/**
 * Parses JSON text. When `needsLossless(parsed)` says a value was rounded, parses again keeping
 * integers beyond 2^53 as bigint. Throws SyntaxError on bad JSON.
 */
export function parseJsonLossless(
  text: string,
  needsLossless: (parsed: unknown) => boolean = () => true,
): unknown {
  const parsed: unknown = JSON.parse(text);
  return needsLossless(parsed) ? parseLossless(text, null, parseNumber) : parsed;
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
