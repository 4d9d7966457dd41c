/** Test helpers: token prompts built from block "letters", and the KV events an engine would publish. */
import type { RouterEvent, WorkerId } from '../../src/kv/events.ts';
import { BlockHasher } from '../../src/tokens/block-hash.ts';
import { unpackU64s } from '../../src/tokens/u64.ts';

export const BS = 16;
export const hasher = new BlockHasher({ blockSize: BS });

/** One block of tokens per id: block `id` is BS tokens derived from it. */
export function blocks(...ids: number[]): number[] {
  const out: number[] = [];
  for (const id of ids) for (let t = 0; t < BS; t++) out.push(id * 1000 + t);
  return out;
}

/** Distinct pseudo-random tokens (seeded). */
export function randomTokens(count: number, seed: number): number[] {
  let x = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(x % 100_000);
  }
  return out;
}

let nextEventId = 0n;

/** The stored event an engine publishes after caching these tokens' full blocks from the root. */
export function storedEvent(workerId: WorkerId, dpRank: number, tokens: readonly number[]): RouterEvent {
  const local = hasher.localHashes(tokens);
  const seq = hasher.sequenceHashes(local);
  const locals = unpackU64s(local);
  const seqs = unpackU64s(seq);
  return {
    workerId,
    event: {
      eventId: nextEventId++,
      dpRank,
      data: {
        kind: 'stored',
        parentHash: null,
        blocks: seqs.map((blockHash, i) => ({ blockHash, tokensHash: locals[i] })),
      },
    },
  };
}
