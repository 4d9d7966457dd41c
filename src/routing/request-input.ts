/** Validation of what callers hand the router: token ids and request ids. */
import { InvalidRequestIdError, InvalidTokensError } from './errors.ts';

/** Token ids: a non-empty array (or typed array) of integers in [0, 2^32). */
export function checkTokens(tokens: unknown): asserts tokens is ArrayLike<number> {
  if (tokens instanceof Uint32Array || tokens instanceof Uint16Array || tokens instanceof Uint8Array) {
    if (tokens.length === 0) throw new InvalidTokensError('tokens must not be empty');
    return;
  }
  if (!Array.isArray(tokens) && !ArrayBuffer.isView(tokens))
    throw new InvalidTokensError('tokens must be an array of token ids');
  const list = tokens as ArrayLike<unknown>;
  if (list.length === 0) throw new InvalidTokensError('tokens must not be empty');
  for (let i = 0; i < list.length; i++) {
    const t = list[i];
    // `t >>> 0 === t` holds exactly for numbers that are integers in [0, 2^32).
    if (typeof t !== 'number' || t >>> 0 !== t)
      throw new InvalidTokensError(`token at index ${i} is not an integer in [0, 2^32): ${String(t)}`);
  }
}

/**
 * Validates token ids into a reusable Uint32Array (grown on demand), so hashing can take the
 * trusted typed-array path. A Uint32Array input is used as is.
 */
export class TokenBuffer {
  private scratch = new Uint32Array(8192);

  /** The tokens as a Uint32Array, valid until the next call. Throws InvalidTokensError. */
  read(tokens: unknown): Uint32Array {
    if (tokens instanceof Uint32Array) {
      if (tokens.length === 0) throw new InvalidTokensError('tokens must not be empty');
      return tokens;
    }
    if (!Array.isArray(tokens) && !ArrayBuffer.isView(tokens))
      throw new InvalidTokensError('tokens must be an array of token ids');
    const list = tokens as unknown as ArrayLike<unknown>;
    const n = list.length;
    if (n === 0) throw new InvalidTokensError('tokens must not be empty');
    if (this.scratch.length < n) this.scratch = new Uint32Array(n * 2);
    const out = this.scratch;
    // The checked copy runs four tokens a step (about twice as fast on a number[]); the first group
    // with a bad token is redone one by one below for the error.
    for (let i = copyTokenIds(list, n, out); i < n; i++) {
      const t = list[i];
      // `t >>> 0 === t` holds exactly for numbers that are integers in [0, 2^32).
      if (typeof t !== 'number' || t >>> 0 !== t)
        throw new InvalidTokensError(`token at index ${i} is not an integer in [0, 2^32): ${String(t)}`);
      out[i] = t;
    }
    return out.subarray(0, n);
  }
}

/**
 * Copies tokens[0, n) into `out` while each is a number that is an integer in [0, 2^32); returns
 * how many leading tokens were copied in groups of four (n when all are valid and n % 4 == 0).
 */
function copyTokenIds(list: ArrayLike<unknown>, n: number, out: Uint32Array): number {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const a = list[i];
    const b = list[i + 1];
    const c = list[i + 2];
    const d = list[i + 3];
    if (typeof a !== 'number' || typeof b !== 'number' || typeof c !== 'number' || typeof d !== 'number')
      break;
    // `t >>> 0 === t` holds exactly for numbers that are integers in [0, 2^32).
    if (a >>> 0 !== a || b >>> 0 !== b || c >>> 0 !== c || d >>> 0 !== d) break;
    out[i] = a;
    out[i + 1] = b;
    out[i + 2] = c;
    out[i + 3] = d;
  }
  return i;
}

export function checkRequestId(requestId: unknown): asserts requestId is string {
  if (typeof requestId !== 'string' || requestId.length === 0)
    throw new InvalidRequestIdError('requestId must be a non-empty string');
}
