/**
 * KV cache events, Dynamo's RouterEvent shape. All u64 fields are bigint so nothing above 2^53
 * is ever rounded. `dpRank` is a plain integer in [0, 2^32); absent on the wire means 0.
 */
import type { U64 } from '../tokens/u64.ts';

export type WorkerId = U64;

export interface StoredBlock {
  /** The engine's opaque hash of the block (ExternalSequenceBlockHash); lookup key per owner. */
  readonly blockHash: U64;
  /** The router's local hash of the block's tokens (LocalBlockHash); the radix tree's edge key. */
  readonly tokensHash: U64;
}

export type KvEventData =
  | { readonly kind: 'stored'; readonly parentHash: U64 | null; readonly blocks: readonly StoredBlock[] }
  | { readonly kind: 'removed'; readonly blockHashes: readonly U64[] }
  | { readonly kind: 'cleared' };

export interface KvCacheEvent {
  readonly eventId: U64;
  readonly dpRank: number;
  readonly data: KvEventData;
}

export interface RouterEvent {
  readonly workerId: WorkerId;
  readonly event: KvCacheEvent;
}

/** A (worker, data-parallel rank) pair: the unit that holds a KV cache and that the router scores. */
export interface WorkerRank {
  readonly workerId: WorkerId;
  readonly dpRank: number;
}

export const MAX_DP_RANK = 0xffff_ffff;

export function isDpRank(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_DP_RANK;
}
