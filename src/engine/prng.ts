/**
 * Deterministic output tokens. Token i of a request is a pure function of (request seed, i), so
 * the output does not depend on load, preemption or which engine (aggregated, or prefill then
 * decode) produced it. Like Dynamo's mocker, tokens are uniform in [1000, 2000).
 */

export const OUTPUT_TOKEN_MIN = 1000;
export const OUTPUT_TOKEN_SPAN = 1000;

/** murmur3's 32-bit finaliser: a bijective avalanche mix. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The `index`-th output token of a request whose sampler seed is `seed`. */
export function outputToken(seed: number, index: number): number {
  const h = fmix32((seed ^ fmix32(Math.imul(index + 1, 0x9e3779b9))) >>> 0);
  return OUTPUT_TOKEN_MIN + (h % OUTPUT_TOKEN_SPAN);
}

/** Sampler seed of a request: from its sampling seed if given, else from its request id; mixed with the engine seed. */
export function samplerSeed(requestSeed: number | undefined, requestId: string, engineSeed: number): number {
  let h = 0x811c9dc5 ^ (engineSeed >>> 0);
  if (requestSeed !== undefined) {
    h = Math.imul(h ^ (requestSeed >>> 0), 0x01000193);
    h = Math.imul(h ^ (Math.floor(requestSeed / 0x1_0000_0000) >>> 0), 0x01000193);
  } else {
    for (let i = 0; i < requestId.length; i++) h = Math.imul(h ^ requestId.charCodeAt(i), 0x01000193);
  }
  return fmix32(h >>> 0);
}

/** A small seeded PRNG (mulberry32) for engine-level choices such as bootstrap room ids. */
export class Mulberry32 {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform safe integer in [0, 2^53). */
  nextSafeInteger(): number {
    return (this.nextU32() & 0x1f_ffff) * 0x1_0000_0000 + this.nextU32();
  }
}
