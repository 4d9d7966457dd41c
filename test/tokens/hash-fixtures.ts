/** Deterministic inputs for the hashing tests (a seeded generator: failures reproduce). */

export const SEEDS: readonly bigint[] = [
  1337n,
  0n,
  1n,
  0xffff_ffff_ffff_ffffn,
  0x8000_0000n,
  0x1234_5678_9abc_def0n,
];

/** mulberry32: small, fast, good enough to spread test inputs. */
export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export function randomBytes(length: number, seed: number): Uint8Array {
  const next = rng(seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = next() & 0xff;
  return bytes;
}

/** Tokens over the full u32 range, or below `vocab` when given. */
export function randomTokens(length: number, seed: number, vocab?: number): Uint32Array {
  const next = rng(seed);
  const tokens = new Uint32Array(length);
  for (let i = 0; i < length; i++) tokens[i] = vocab === undefined ? next() : next() % vocab;
  return tokens;
}
