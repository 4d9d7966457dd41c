/**
 * Mooncake request traces (FAST '25 format): one JSON object per line,
 * `{"timestamp": ms, "input_length": N, "output_length": M, "hash_ids": [id, ...]}` where each id
 * names one `traceBlockSize`-token block of the prompt (512 in Mooncake's traces) and equal ids
 * mean equal blocks. The last block may be partial.
 *
 * Replays need real token ids, so `TraceTokenExpander` turns a request into tokens that are equal
 * wherever the ids are equal: block `id` always expands to the same token stream (a counter-based
 * PRNG keyed by the id), and a partial last block is a prefix of that stream. Block hashes at any
 * engine block size therefore reproduce the trace's prefix sharing.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

export const MOONCAKE_BLOCK_SIZE = 512;

export interface TraceRequest {
  /** Arrival time in ms from the start of the trace. */
  readonly timestamp: number;
  readonly inputLength: number;
  readonly outputLength: number;
  readonly hashIds: readonly number[];
}

export interface ParseTraceOptions {
  /** Tokens per hash id (default 512, Mooncake's). */
  readonly traceBlockSize?: number;
  /** Skip and count malformed lines instead of failing on the first one. */
  readonly skipBad?: boolean;
  /** Keep only the first `limit` valid requests. */
  readonly limit?: number;
}

export interface SkippedLine {
  readonly line: number;
  readonly reason: string;
}

export interface ParsedTrace {
  /** Valid requests, in arrival order (stable sort by timestamp). */
  readonly requests: TraceRequest[];
  /** Lines skipped with `skipBad` (blank lines are ignored, not counted). */
  readonly skipped: SkippedLine[];
}

export class TraceFormatError extends Error {
  readonly code = 'BAD_TRACE_LINE';
  constructor(
    readonly line: number,
    readonly reason: string,
    readonly source?: string,
  ) {
    super(`${source ? `${source}:` : 'trace line '}${line}: ${reason}`);
    this.name = 'TraceFormatError';
  }
}

const traceLineSchema = z.object({
  timestamp: z.number().finite().nonnegative(),
  input_length: z.number().int().positive(),
  output_length: z.number().int().positive(),
  hash_ids: z.array(z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)).min(1),
});

/** Validates one line; returns the request or a human-readable reason. */
export function parseTraceLine(text: string, traceBlockSize = MOONCAKE_BLOCK_SIZE): TraceRequest | string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
  const parsed = traceLineSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return `${issue.path.join('.') || 'line'}: ${issue.message}`;
  }
  const { timestamp, input_length, output_length, hash_ids } = parsed.data;
  const needed = Math.ceil(input_length / traceBlockSize);
  if (hash_ids.length !== needed) {
    return `input_length ${input_length} needs ${needed} hash_ids of ${traceBlockSize} tokens, got ${hash_ids.length}`;
  }
  return { timestamp, inputLength: input_length, outputLength: output_length, hashIds: hash_ids };
}

export function parseTrace(text: string, options: ParseTraceOptions = {}, source?: string): ParsedTrace {
  const traceBlockSize = options.traceBlockSize ?? MOONCAKE_BLOCK_SIZE;
  if (!Number.isInteger(traceBlockSize) || traceBlockSize < 1) {
    throw new RangeError(`trace block size must be a positive integer, got ${traceBlockSize}`);
  }
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const requests: TraceRequest[] = [];
  const skipped: SkippedLine[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && requests.length < limit; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const result = parseTraceLine(line, traceBlockSize);
    if (typeof result === 'string') {
      if (!options.skipBad) throw new TraceFormatError(i + 1, result, source);
      skipped.push({ line: i + 1, reason: result });
    } else {
      requests.push(result);
    }
  }
  // Mooncake traces are sorted; a merged or hand-edited one may not be. Array sort is stable.
  requests.sort((a, b) => a.timestamp - b.timestamp);
  return { requests, skipped };
}

export async function readTrace(path: string, options: ParseTraceOptions = {}): Promise<ParsedTrace> {
  return parseTrace(await readFile(path, 'utf8'), options, path);
}

/** Serialises requests in the Mooncake format (one line each, newline-terminated). */
export function formatTrace(requests: readonly TraceRequest[]): string {
  let out = '';
  for (const r of requests) {
    out += `${JSON.stringify({
      timestamp: r.timestamp,
      input_length: r.inputLength,
      output_length: r.outputLength,
      hash_ids: r.hashIds,
    })}\n`;
  }
  return out;
}

/** murmur3's 32-bit finaliser: a bijection on u32 with full avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export interface TokenExpanderOptions {
  readonly traceBlockSize?: number;
  /** Token ids are drawn from [0, vocabSize); a power of two (default 2^17). */
  readonly vocabSize?: number;
  /** Changes every block's tokens (default 0). */
  readonly seed?: number;
}

/**
 * Expands trace requests into prompt token ids. Block `id` maps to a key that is a bijection of the
 * id's low 32 bits (so ids below 2^32 never share a key), and token j of the block is
 * fmix32(key + j * golden) masked to the vocabulary: stateless, so a partial block is exactly a
 * prefix of the full one.
 */
export class TraceTokenExpander {
  readonly traceBlockSize: number;
  readonly vocabSize: number;
  private readonly seedKey: number;
  private readonly mask: number;

  constructor(options: TokenExpanderOptions = {}) {
    this.traceBlockSize = options.traceBlockSize ?? MOONCAKE_BLOCK_SIZE;
    this.vocabSize = options.vocabSize ?? 1 << 17;
    if (!Number.isInteger(this.traceBlockSize) || this.traceBlockSize < 1) {
      throw new RangeError(`trace block size must be a positive integer, got ${this.traceBlockSize}`);
    }
    if (
      !Number.isInteger(this.vocabSize) ||
      this.vocabSize < 2 ||
      this.vocabSize > 2 ** 31 ||
      (this.vocabSize & (this.vocabSize - 1)) !== 0
    ) {
      throw new RangeError(`vocab size must be a power of two in [2, 2^31], got ${this.vocabSize}`);
    }
    this.mask = this.vocabSize - 1;
    this.seedKey = fmix32(((options.seed ?? 0) ^ 0x6b76_6761) >>> 0);
  }

  /** The block key of a hash id (ids are safe integers, split into u32 halves without rounding). */
  private blockKey(id: number): number {
    const lo = id >>> 0;
    const hi = Math.floor(id / 0x1_0000_0000) >>> 0;
    return fmix32((lo ^ fmix32((hi ^ this.seedKey) >>> 0)) >>> 0);
  }

  /** Writes the request's `inputLength` prompt tokens into `out` (allocated when absent or short). */
  expand(request: TraceRequest, out?: Uint32Array): Uint32Array {
    const n = request.inputLength;
    const tokens = out && out.length >= n ? out.subarray(0, n) : new Uint32Array(n);
    const bs = this.traceBlockSize;
    const mask = this.mask;
    const ids = request.hashIds;
    let pos = 0;
    for (let b = 0; b < ids.length && pos < n; b++) {
      const key = this.blockKey(ids[b]);
      const end = Math.min(n, pos + bs);
      for (let j = 0; pos < end; j++, pos++) {
        tokens[pos] = fmix32((key + Math.imul(j, 0x9e3779b9)) >>> 0) & mask;
      }
    }
    if (pos < n) {
      throw new RangeError(`request has ${ids.length} hash ids of ${bs} tokens, too few for ${n} tokens`);
    }
    return tokens;
  }
}
