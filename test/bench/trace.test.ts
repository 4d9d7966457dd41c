import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { generateTrace } from '../../src/bench/generate.ts';
import {
  formatTrace,
  parseTrace,
  readTrace,
  TraceFormatError,
  type TraceRequest,
  TraceTokenExpander,
} from '../../src/bench/trace.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const line = (timestamp: number, inputLength: number, hashIds: number[], outputLength = 4): string =>
  JSON.stringify({ timestamp, input_length: inputLength, output_length: outputLength, hash_ids: hashIds });

const req = (inputLength: number, hashIds: number[]): TraceRequest => ({
  timestamp: 0,
  inputLength,
  outputLength: 1,
  hashIds,
});

describe('trace reader', () => {
  const inTemp = tempDir('kvgate-trace-');

  it('parses Mooncake lines into requests in arrival order', () => {
    const text = [line(0, 1024, [0, 1]), '', line(40, 600, [0, 2]), line(20, 10, [7])].join('\n');
    const { requests, skipped } = parseTrace(text);
    expect(skipped).toEqual([]);
    expect(requests.map((r) => r.timestamp)).toEqual([0, 20, 40]);
    expect(requests[2]).toEqual({ timestamp: 40, inputLength: 600, outputLength: 4, hashIds: [0, 2] });
  });

  it('fails on the first bad line with its number and the reason', () => {
    const text = [line(0, 512, [0]), '{"timestamp": 1, "input_length": 5', line(2, 10, [1])].join('\n');
    expect(() => parseTrace(text)).toThrow(TraceFormatError);
    try {
      parseTrace(text, {}, 'x.jsonl');
    } catch (err) {
      expect(err).toBeInstanceOf(TraceFormatError);
      expect((err as TraceFormatError).line).toBe(2);
      expect((err as TraceFormatError).code).toBe('BAD_TRACE_LINE');
      expect((err as Error).message).toMatch(/^x\.jsonl:2: not JSON/);
    }
  });

  it('rejects wrong types, missing fields and hash ids that do not cover input_length', () => {
    const bad = [
      JSON.stringify({ timestamp: -1, input_length: 10, output_length: 1, hash_ids: [0] }),
      JSON.stringify({ timestamp: 0, input_length: 10, output_length: 1 }),
      JSON.stringify({ timestamp: 0, input_length: '10', output_length: 1, hash_ids: [0] }),
      JSON.stringify({ timestamp: 0, input_length: 10, output_length: 0, hash_ids: [0] }),
      JSON.stringify({ timestamp: 0, input_length: 10, output_length: 1, hash_ids: [1.5] }),
      line(0, 513, [0]),
      line(0, 512, [0, 1]),
      '[1,2,3]',
    ];
    for (const text of bad) expect(() => parseTrace(text), text).toThrow(TraceFormatError);
    expect(() => parseTrace(line(0, 513, [0]))).toThrow(
      /input_length 513 needs 2 hash_ids of 512 tokens, got 1/,
    );
  });

  it('skips and counts bad lines with skipBad', () => {
    const text = [line(0, 512, [0]), 'nope', line(1, 100, [1]), line(2, 2000, [1])].join('\n');
    const { requests, skipped } = parseTrace(text, { skipBad: true });
    expect(requests).toHaveLength(2);
    expect(skipped.map((s) => s.line)).toEqual([2, 4]);
    expect(skipped[1].reason).toMatch(/hash_ids/);
  });

  it('honours the trace block size and the limit', () => {
    const text = [line(0, 128, [0, 1]), line(1, 64, [2]), line(2, 64, [3])].join('\n');
    expect(() => parseTrace(text)).toThrow(TraceFormatError);
    expect(parseTrace(text, { traceBlockSize: 64, limit: 2 }).requests).toHaveLength(2);
  });

  it('round-trips through formatTrace and a file', async () => {
    const requests = generateTrace({
      arrivals: 30,
      seed: 3,
      conversations: 2,
      bestOf: 3,
      bestOfFraction: 0.3,
    });
    const path = inTemp('t.jsonl');
    await writeFile(path, formatTrace(requests));
    const back = await readTrace(path);
    expect(back.requests).toEqual(requests);
    expect((await readFile(path, 'utf8')).split('\n')[0]).toMatch(/^\{"timestamp":0,"input_length":\d+/);
  });
});

describe('token expansion', () => {
  const expander = new TraceTokenExpander();

  it('gives identical tokens for identical hash ids', () => {
    const a = expander.expand(req(1024, [5, 9]));
    const b = expander.expand(req(1024, [5, 9]));
    expect(Array.from(a)).toEqual(Array.from(b));
    const c = expander.expand(req(1536, [7, 9, 5]));
    // Block 9 is the same tokens wherever it appears.
    expect(Array.from(c.subarray(512, 1024))).toEqual(Array.from(a.subarray(512, 1024)));
    expect(Array.from(c.subarray(1024, 1536))).toEqual(Array.from(a.subarray(0, 512)));
  });

  it('gives different tokens for different hash ids', () => {
    const blocks = new Set<string>();
    for (let id = 0; id < 200; id++) blocks.add(expander.expand(req(512, [id])).join(','));
    blocks.add(expander.expand(req(512, [2 ** 40])).join(','));
    blocks.add(expander.expand(req(512, [2 ** 40 + 1])).join(','));
    blocks.add(expander.expand(req(512, [Number.MAX_SAFE_INTEGER])).join(','));
    expect(blocks.size).toBe(203);
    // Within a block, tokens look random: many distinct values.
    expect(new Set(expander.expand(req(512, [1]))).size).toBeGreaterThan(450);
  });

  it('makes a partial last block a prefix of the full block', () => {
    const partial = expander.expand(req(512 + 100, [3, 4]));
    const full = expander.expand(req(1024, [3, 4]));
    expect(partial.length).toBe(612);
    expect(Array.from(partial)).toEqual(Array.from(full.subarray(0, 612)));
  });

  it('keeps tokens inside the vocabulary and depends on the seed', () => {
    const small = new TraceTokenExpander({ vocabSize: 256 });
    expect(Math.max(...small.expand(req(512, [1])))).toBeLessThan(256);
    const seeded = new TraceTokenExpander({ seed: 9 });
    expect(seeded.expand(req(512, [1])).join(',')).not.toBe(expander.expand(req(512, [1])).join(','));
    expect(() => new TraceTokenExpander({ vocabSize: 1000 })).toThrow(RangeError);
  });

  it('rejects a request whose hash ids cannot cover its length', () => {
    expect(() => expander.expand(req(1025, [1, 2]))).toThrow(RangeError);
  });

  it('writes into a caller buffer when it is large enough', () => {
    const buf = new Uint32Array(2048);
    const out = expander.expand(req(700, [1, 2]), buf);
    expect(out.buffer).toBe(buf.buffer);
    expect(out.length).toBe(700);
  });
});
