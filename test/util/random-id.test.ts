import { describe, expect, it } from 'vitest';
import { randomHexId } from '../../src/util/random-id.ts';

describe('randomHexId', () => {
  it('gives 32 lowercase hex digits, all different across several pool refills', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const id = randomHexId();
      expect(id).toMatch(/^[0-9a-f]{32}$/);
      ids.add(id);
    }
    expect(ids.size).toBe(2_000);
  });

  it('uses every hex digit in every position (the bytes are random, not a counter)', () => {
    const seen = Array.from({ length: 32 }, () => new Set<string>());
    for (let i = 0; i < 1_000; i++) {
      const id = randomHexId();
      for (let p = 0; p < 32; p++) seen[p].add(id[p]);
    }
    for (const digits of seen) expect(digits.size).toBe(16);
  });
});
