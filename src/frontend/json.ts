/**
 * JSON in and out without losing u64 worker ids. `JSON.parse` rounds integers above 2^53 (a Dynamo
 * worker id often is one). Bodies are parsed natively first; only when a field that carries a u64
 * holds a number JSON.parse could not represent exactly is the text parsed again with
 * lossless-json, where such integers come back as bigint. (Deciding from the parsed value rather
 * than from the text keeps a prompt full of digits on the fast path.) On the way out,
 * `stringifyLossless` (runtime/codec.ts) writes bigints as plain JSON numbers (Dynamo's wire shape).
 */
import { parse as parseLossless } from 'lossless-json';
import { parseLosslessNumber } from '../runtime/codec.ts';

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
  return needsLossless(parsed) ? parseLossless(text, null, parseLosslessNumber) : parsed;
}
