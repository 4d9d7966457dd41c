import { describe, expect, it } from 'vitest';
import { DataParallelEngine } from '../../src/engine/data-parallel-engine.ts';
import { EngineError, type EngineErrorCode } from '../../src/engine/errors.ts';
import type { GenerateRequest } from '../../src/protocol/generate.ts';
import { VirtualClock } from '../../src/util/virtual-clock.ts';
import { collector, harness, range } from './helpers.ts';

function codeOf(fn: () => unknown): EngineErrorCode | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof EngineError) return error.code;
    throw error;
  }
  return undefined;
}

const ok: GenerateRequest = { requestId: 'ok', tokenIds: [1, 2, 3], sampling: { maxTokens: 2 } };

describe('request validation', () => {
  const bad: [string, unknown][] = [
    ['empty prompt', { ...ok, tokenIds: [] }],
    ['prompt not an array', { ...ok, tokenIds: 'abc' }],
    ['negative token', { ...ok, tokenIds: [1, -1] }],
    ['fractional token', { ...ok, tokenIds: [1, 2.5] }],
    ['token too large', { ...ok, tokenIds: [2 ** 32] }],
    ['string token', { ...ok, tokenIds: [1, '2'] }],
    ['NaN token', { ...ok, tokenIds: [Number.NaN] }],
    ['bad token inside a full (hashed) block', { ...ok, tokenIds: [...range(0, 10), -5, ...range(0, 100)] }],
    ['fractional token inside a full block', { ...ok, tokenIds: [...range(0, 70), 0.5, ...range(0, 100)] }],
    ['bad token in the trailing partial block', { ...ok, tokenIds: [...range(0, 64), 'x'] }],
    ['maxTokens 0', { ...ok, sampling: { maxTokens: 0 } }],
    ['maxTokens fractional', { ...ok, sampling: { maxTokens: 1.5 } }],
    ['maxTokens missing', { ...ok, sampling: {} }],
    ['no sampling', { requestId: 'x', tokenIds: [1] }],
    ['empty request id', { ...ok, requestId: '' }],
    ['bad stop ids', { ...ok, sampling: { maxTokens: 1, stopTokenIds: [1.5] } }],
    ['bad seed', { ...ok, sampling: { maxTokens: 1, seed: -3 } }],
    ['unknown output kind', { ...ok, sampling: { maxTokens: 1, outputKind: 'cumulative' } }],
    ['fractional rank', { ...ok, dpRank: 0.5 }],
    [
      'bad bootstrap',
      { ...ok, bootstrap: { host: 'h', port: 1, room: -1, prefillWorkerId: 1n, prefillDpRank: 0 } },
    ],
  ];
  for (const [name, request] of bad)
    it(`rejects ${name} with ENGINE_INVALID_REQUEST and runs nothing`, () => {
      const { engine } = harness();
      expect(codeOf(() => engine.submit(request as GenerateRequest, collector(new VirtualClock())))).toBe(
        'ENGINE_INVALID_REQUEST',
      );
      expect(codeOf(() => engine.generate(request as GenerateRequest))).toBe('ENGINE_INVALID_REQUEST');
      expect(engine.load(0)).toBe(0);
    });

  it('rejects a request that can never fit in a rank’s KV cache', () => {
    const { engine } = harness({ numGpuBlocks: 4, blockSize: 4 });
    expect(codeOf(() => engine.generate({ ...ok, tokenIds: range(0, 14), sampling: { maxTokens: 3 } }))).toBe(
      'ENGINE_REQUEST_TOO_LARGE',
    );
  });

  it('rejects a duplicate request id while the first runs', () => {
    const { clock, engine } = harness();
    engine.submit(ok, collector(clock));
    expect(codeOf(() => engine.submit(ok, collector(clock)))).toBe('ENGINE_DUPLICATE_REQUEST');
    clock.runUntilIdle();
    expect(codeOf(() => engine.submit(ok, collector(clock)))).toBeUndefined();
  });

  it('checks the request against the mode', () => {
    const clock = new VirtualClock();
    const decode = new DataParallelEngine({ clock, mode: 'decode' });
    expect(codeOf(() => decode.generate(ok))).toBe('ENGINE_MODE_MISMATCH');
    const bootstrap = { host: 'h', port: 1, room: 5, prefillWorkerId: 1n, prefillDpRank: 0 };
    const prefill = new DataParallelEngine({ clock, mode: 'prefill' });
    expect(codeOf(() => prefill.generate({ ...ok, bootstrap }))).toBe('ENGINE_MODE_MISMATCH');
    const aggregated = new DataParallelEngine({ clock });
    expect(codeOf(() => aggregated.generate({ ...ok, bootstrap }))).toBe('ENGINE_MODE_MISMATCH');
  });

  it('rejects bad options with ENGINE_INVALID_OPTIONS', () => {
    for (const options of [
      { numGpuBlocks: 0 },
      { blockSize: 1.5 },
      { watermark: 1 },
      { speedupRatio: -1 },
      { dataParallelSize: 0 },
      { mode: 'both' as never },
      { enablePrefixCaching: false, publishKvEvents: true },
    ])
      expect(codeOf(() => new DataParallelEngine(options))).toBe('ENGINE_INVALID_OPTIONS');
  });

  it('rejects requests after close', () => {
    const { engine } = harness();
    engine.close();
    expect(codeOf(() => engine.generate(ok))).toBe('ENGINE_CLOSED');
  });
});

describe('output tokens', () => {
  it('are deterministic per seed, in [1000, 2000), and honour stop tokens, EOS and ignoreEos', () => {
    const run = (sampling: GenerateRequest['sampling'], eosTokenIds: number[] = [], requestId = 'r') => {
      const { clock, engine } = harness({ eosTokenIds });
      const sink = collector(clock);
      engine.submit({ requestId, tokenIds: range(0, 10), sampling }, sink);
      clock.runUntilIdle();
      return sink;
    };
    const base = run({ maxTokens: 20, seed: 42 });
    expect(base.tokens).toHaveLength(20);
    expect(base.result?.reason).toBe('length');
    for (const t of base.tokens) expect(t >= 1000 && t < 2000).toBe(true);
    expect(run({ maxTokens: 20, seed: 42 }, [], 'other-id').tokens).toEqual(base.tokens);
    expect(run({ maxTokens: 20, seed: 43 }).tokens).not.toEqual(base.tokens);
    expect(run({ maxTokens: 20 }, [], 'id-a').tokens).not.toEqual(run({ maxTokens: 20 }, [], 'id-b').tokens);

    const third = base.tokens[2];
    const stopped = run({ maxTokens: 20, seed: 42, stopTokenIds: [third] });
    expect(stopped.tokens).toEqual(base.tokens.slice(0, base.tokens.indexOf(third) + 1));
    expect(stopped.result?.reason).toBe('stop');
    // stop token ids apply even with ignoreEos (as vLLM); EOS does not.
    expect(run({ maxTokens: 20, seed: 42, stopTokenIds: [third], ignoreEos: true }).result?.reason).toBe(
      'stop',
    );
    const eos = run({ maxTokens: 20, seed: 42 }, [third]);
    expect(eos.result?.reason).toBe('stop');
    expect(eos.tokens).toEqual(stopped.tokens);
    const ignored = run({ maxTokens: 20, seed: 42, ignoreEos: true }, [third]);
    expect(ignored.tokens).toEqual(base.tokens);
    expect(ignored.result?.reason).toBe('length');
  });

  it('stop on any of their stop ids and EOS ids together, a few or many (past the short-list size)', () => {
    const run = (stopTokenIds: number[], eosTokenIds: number[]) => {
      const { clock, engine } = harness({ eosTokenIds });
      const sink = collector(clock);
      engine.submit(
        { requestId: 'r', tokenIds: range(0, 10), sampling: { maxTokens: 20, seed: 42, stopTokenIds } },
        sink,
      );
      clock.runUntilIdle();
      return sink;
    };
    const base = run([], []);
    const fifth = base.tokens[4];
    const unused = (n: number) => range(3000, 3000 + n); // never generated: outputs are in [1000, 2000)
    for (const [stops, eos] of [
      [[fifth], [1]],
      [[2], [fifth]],
      [[...unused(20), fifth], []],
      [unused(10), [...unused(10), fifth]],
    ]) {
      const sink = run(stops, eos);
      expect(sink.result?.reason).toBe('stop');
      expect(sink.tokens).toEqual(base.tokens.slice(0, base.tokens.indexOf(fifth) + 1));
    }
    expect(run(unused(40), unused(3)).result?.reason).toBe('length');
  });

  it('stop on the stop ids the request had when submitted, whatever the caller does to its array later', () => {
    const run = (stopTokenIds: number[], change: (ids: number[]) => void = () => {}) => {
      const { clock, engine } = harness();
      const sink = collector(clock);
      engine.submit(
        { requestId: 'r', tokenIds: range(0, 10), sampling: { maxTokens: 20, seed: 42, stopTokenIds } },
        sink,
      );
      change(stopTokenIds);
      clock.runUntilIdle();
      return sink;
    };
    const base = run([]);
    const third = base.tokens[2];
    const stopped = run([third], (ids) => {
      ids[0] = 3000; // never generated: outputs are in [1000, 2000)
    });
    expect(stopped.result?.reason).toBe('stop');
    expect(stopped.tokens).toEqual(base.tokens.slice(0, base.tokens.indexOf(third) + 1));
    const unchanged = run([3000], (ids) => {
      ids[0] = third;
    });
    expect(unchanged.result?.reason).toBe('length');
    expect(unchanged.tokens).toEqual(base.tokens);
  });
});
