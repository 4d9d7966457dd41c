/**
 * Random sources for selection: an injectable `() => number` in [0, 1). `seededRandom` is a small,
 * fast, reproducible generator (sfc32) for tests, benchmarks and the trace replay.
 */
export type RandomSource = () => number;

export const mathRandom: RandomSource = Math.random;

/** sfc32 seeded from one 32-bit integer (state warmed up so nearby seeds diverge). */
export function seededRandom(seed: number): RandomSource {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 16; i++) next();
  return next;
}

/** A uniform integer in [0, n). */
export function randomIndex(random: RandomSource, n: number): number {
  const i = Math.floor(random() * n);
  return i < n ? i : n - 1;
}
