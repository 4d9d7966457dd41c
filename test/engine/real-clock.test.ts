import { describe, expect, it } from 'vitest';
import { DataParallelEngine } from '../../src/engine/data-parallel-engine.ts';
import { realClock } from '../../src/util/clock.ts';
import { drain, range } from './helpers.ts';

describe('on the real clock', () => {
  it('streams the same tokens live as on a virtual clock (speed-up 0 and 50)', async () => {
    for (const speedupRatio of [0, 50]) {
      const engine = new DataParallelEngine({ clock: realClock, speedupRatio, dataParallelSize: 2 });
      const started = performance.now();
      const [a, b] = await Promise.all([
        drain(
          engine.generate({ requestId: 'a', tokenIds: range(0, 1000), sampling: { maxTokens: 8, seed: 9 } }),
        ),
        drain(
          engine.generate({
            requestId: 'b',
            tokenIds: range(0, 1000),
            sampling: { maxTokens: 8, seed: 9 },
            dpRank: 1,
          }),
        ),
      ]);
      const elapsed = performance.now() - started;
      expect(a.flatMap((c) => c.tokenIds)).toHaveLength(8);
      expect(a.flatMap((c) => c.tokenIds)).toEqual(b.flatMap((c) => c.tokenIds));
      expect(b[0].dpRank).toBe(1);
      expect(a.at(-1)?.usage).toEqual({ promptTokens: 1000, completionTokens: 8, cachedTokens: 0 });
      if (speedupRatio === 50) {
        // prefill(1000) + 8 decode steps is about 80 ms of GPU time: at 50x, at least 1.6 ms of wall time.
        const placement = engine.placement('a')!;
        expect(placement.finishedAt - placement.arrivedAt).toBeGreaterThan(1.5);
        expect(elapsed).toBeGreaterThan(1.5);
      }
      engine.close();
    }
  });
});
