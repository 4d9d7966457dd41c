/**
 * Lossless JSON for plane payloads: a bigint is written as a plain JSON number, and an integer that
 * is not a safe JS number decodes as a bigint. Consumers normalise field types with zod.
 *
 * Fast paths: encoding tries JSON.stringify first (it throws only when a bigint is present); decoding
 * uses JSON.parse when the text has no run of 16+ digits (every integer of at most 15 digits is safe).
 */
import { isSafeNumber, parse, stringify } from 'lossless-json';
import { RuntimeError } from './errors.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function stringifyLossless(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    text = stringify(value);
  }
  if (text === undefined) throw new RuntimeError('RUNTIME_INVALID', 'value has no JSON representation');
  return text;
}

function parseNumber(text: string): number | bigint {
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
    return hasLongDigitRun(text) ? parse(text, null, parseNumber) : JSON.parse(text);
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
