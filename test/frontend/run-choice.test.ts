import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { type ChoiceDelta, runChoice } from '../../src/frontend/generation.ts';
import { FrontendMetrics } from '../../src/frontend/metrics.ts';
import { loadO200kTokenizer, type Tokenizer } from '../../src/tokens/tokenizer.ts';
import { FakeBackend } from './fake-backend.ts';

/** Where generation stops: the first point at which some stop string has been completed. */
function reference(text: string, stops: readonly string[]): { text: string; stopped: boolean } {
  for (let end = 1; end <= text.length; end++) {
    const done = stops.filter((s) => text.slice(0, end).endsWith(s)).sort((a, b) => b.length - a.length)[0];
    if (done !== undefined) return { text: text.slice(0, end - done.length), stopped: true };
  }
  return { text, stopped: false };
}

describe('runChoice: detokenization + stop strings end to end', () => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = await loadO200kTokenizer();
  });

  it('matches stopping the fully decoded text, for any reply, stops and chunk size', async () => {
    const metrics = new FrontendMetrics();
    const piece = fc.constantFrom('a', 'b', 'é', '😀', ' ', 'ab', '日本', '\n');
    await fc.assert(
      fc.asyncProperty(
        fc.array(piece, { minLength: 1, maxLength: 12 }).map((p) => p.join('')),
        fc.array(
          fc.array(piece, { minLength: 1, maxLength: 2 }).map((p) => p.join('')),
          { maxLength: 3 },
        ),
        fc.integer({ min: 1, max: 4 }),
        async (reply, stops, chunkSize) => {
          const replyTokens = tokenizer.encode(reply);
          const backend = new FakeBackend({ tokenizer, replyTokens, chunkSize });
          const timer = metrics.startRequest('fake-model', 'completions', true);
          const deltas: ChoiceDelta[] = [];
          for await (const delta of runChoice({
            index: 0,
            backend,
            request: {
              requestId: 'r',
              model: 'fake-model',
              tokenIds: [1, 2],
              sampling: { maxTokens: replyTokens.length },
              routing: {},
            },
            tokenizer,
            stopStrings: stops,
            signal: new AbortController().signal,
            timer,
          })) {
            deltas.push(delta);
          }
          timer.finish('success', 200);
          const expected = reference(reply, stops);
          expect(deltas.map((d) => d.text).join('')).toBe(expected.text);
          for (const d of deltas) expect(d.text).not.toContain('\uFFFD');
          expect(deltas.at(-1)!.finishReason).toBe(expected.stopped ? 'stop' : 'length');
          expect(deltas.filter((d) => d.finishReason !== undefined)).toHaveLength(1);
          if (expected.stopped) expect(backend.signals[0].aborted).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
