import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { completeResponse, completeResponseJson, type ResponseKind } from '../../src/frontend/responses.ts';
import { stringifyLossless } from '../../src/runtime/codec.ts';

describe('completeResponseJson', () => {
  it('writes the same JSON as the completeResponse object, nvext u64 ids in full', () => {
    const nvext = fc.option(
      fc.record(
        {
          worker_id: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          dp_rank: fc.nat(),
          prefill_worker_id: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          prefill_dp_rank: fc.nat(),
        },
        { requiredKeys: [] },
      ),
      { nil: undefined },
    );
    fc.assert(
      fc.property(
        fc.constantFrom<ResponseKind>('chat', 'text'),
        fc.string(),
        fc.array(
          fc.record({
            index: fc.nat(300),
            text: fc.string({ unit: 'binary' }),
            finishReason: fc.constantFrom('stop' as const, 'length' as const),
          }),
          { maxLength: 3 },
        ),
        fc.record({ promptTokens: fc.nat(), completionTokens: fc.nat(), cachedTokens: fc.nat() }),
        nvext,
        (kind, model, choices, usage, echo) => {
          const header = { id: 'chatcmpl-0123abcd', created: 1_795_644_135, model };
          const json = completeResponseJson(kind, header, choices, usage, echo);
          expect(json).toBe(stringifyLossless(completeResponse(kind, header, choices, usage, echo)));
          expect(() => JSON.parse(json)).not.toThrow();
        },
      ),
    );
  });
});
