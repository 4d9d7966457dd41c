import { describe, expect, it } from 'vitest';
import { parseJsonLossless } from '../../src/frontend/json.ts';
import { nvextNeedsLossless } from '../../src/frontend/nvext.ts';

describe('lossless JSON for u64 ids', () => {
  it('re-parses only when an nvext id was rounded, and then keeps all 64 bits', () => {
    const big = '{"nvext":{"backend_instance_id":18446744073709551615},"prompt":"x"}';
    expect(parseJsonLossless(big, nvextNeedsLossless)).toEqual({
      nvext: { backend_instance_id: 18446744073709551615n },
      prompt: 'x',
    });
    const small = '{"nvext":{"backend_instance_id":42},"prompt":"12345678901234567890"}';
    expect(parseJsonLossless(small, nvextNeedsLossless)).toEqual({
      nvext: { backend_instance_id: 42 },
      prompt: '12345678901234567890',
    });
    expect(nvextNeedsLossless({ nvext: { decode_worker_id: 2 ** 60 } })).toBe(true);
    expect(nvextNeedsLossless({ nvext: { decode_worker_id: 2 ** 40 }, seed: 2 ** 60 })).toBe(false);
    expect(() => parseJsonLossless('{"a":', nvextNeedsLossless)).toThrow(SyntaxError);
  });
});
