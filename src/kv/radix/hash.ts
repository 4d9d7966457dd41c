/** 32-bit mixers for open-addressing tables keyed by u64 halves (murmur3's finaliser). */

export function hashPair(lo: number, hi: number): number {
  let h = Math.imul(lo ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(hi ^ 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export function hashTriple(a: number, lo: number, hi: number): number {
  return hashPair(lo ^ Math.imul(a, 0x27d4eb2d), hi + a);
}

/** Smallest power of two >= max(n, minimum). */
export function powerOfTwoAtLeast(n: number, minimum = 8): number {
  let size = minimum;
  while (size < n) size *= 2;
  return size;
}
