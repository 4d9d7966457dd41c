/**
 * The indexers a router builds for itself, all sharing the router's OwnerTable: the event index
 * (engine KV events) and decision indexes (approximate mode, predicted blocks, cache-aware policy)
 * that learn from the router's own choices with a TTL.
 */
import { ApproximateIndexer } from '../kv/approx-indexer.ts';
import type { KvEventError } from '../kv/errors.ts';
import type { WorkerId } from '../kv/events.ts';
import type { KvIndexer } from '../kv/indexer.ts';
import type { OwnerTable } from '../kv/owners.ts';
import { RadixTreeIndexer } from '../kv/radix-tree.ts';
import type { Clock } from '../util/clock.ts';

/** An index that also learns from routing decisions. */
export interface DecisionIndexer extends KvIndexer {
  recordRoute(
    workerId: WorkerId,
    dpRank: number,
    localHashes: Uint32Array,
    sequenceHashes: Uint32Array,
  ): KvEventError | null;
}

/** The radix tree, sharing the router's owner numbering. */
export function createEventIndexer(owners: OwnerTable): KvIndexer {
  return new RadixTreeIndexer({ owners });
}

export interface DecisionIndexerOptions {
  readonly owners: OwnerTable;
  readonly clock: Clock;
  readonly ttlSecs: number;
  readonly maxTreeSize: number;
  readonly pruneTargetRatio: number;
}

export function createDecisionIndexer(options: DecisionIndexerOptions): DecisionIndexer {
  return new ApproximateIndexer({
    inner: createEventIndexer(options.owners),
    clock: options.clock,
    ttlMs: options.ttlSecs * 1000,
    maxTreeSize: options.maxTreeSize,
    pruneTargetRatio: options.pruneTargetRatio,
  });
}
