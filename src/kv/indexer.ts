/**
 * The indexer contract: every implementation (radix tree, approximate, naive reference) passes the
 * same conformance suite (test/kv/indexer.conformance.ts).
 *
 * Hashes on the query path are packed u32 pairs (see tokens/u64.ts); events carry bigints.
 * Owners are (worker, dp_rank) pairs interned in an OwnerTable shared with the router.
 */
import type { KvEventError } from './errors.ts';
import type { RouterEvent, WorkerId } from './events.ts';
import type { OwnerTable } from './owners.ts';

export interface FindMatchesOptions {
  /** Stop as soon as one owner has matched every block (no tree sizes needed beyond it). */
  readonly earlyExit?: boolean;
}

/**
 * Result of findMatches. Reused between calls by the same indexer (valid until the next call):
 * read it, do not keep it. Entry i is owner `owners[i]`, holding the first `blocks[i]` blocks of the
 * query (always >= 1), with `treeSizes[i]` blocks indexed for it in total.
 */
export interface OverlapScores {
  count: number;
  readonly owners: Int32Array;
  readonly blocks: Int32Array;
  readonly treeSizes: Int32Array;
}

export interface IndexerStats {
  /** Live (block, owner) entries. */
  readonly entries: number;
  /** Radix-tree nodes (excluding the root), or distinct blocks for flat implementations. */
  readonly nodes: number;
  readonly owners: number;
  readonly eventsApplied: number;
  readonly eventErrors: number;
  /** Approximate bytes held, typed arrays included. */
  readonly bytes: number;
}

export interface KvIndexer {
  readonly owners: OwnerTable;

  /**
   * Applies one event. Returns null on success, or the first error. Semantics (Dynamo's):
   * stored with an unknown parent applies nothing; removed with an unknown hash still removes the
   * rest of the batch; cleared drops every rank of the worker. Never throws on bad input.
   */
  apply(event: RouterEvent): KvEventError | null;

  /** Drops every entry of every rank of the worker. */
  removeWorker(workerId: WorkerId): void;

  /** Drops every entry of one rank of a worker (its owner id stays interned). */
  removeRank(workerId: WorkerId, dpRank: number): void;

  /** Leading-block matches per owner for the query's local block hashes ([lo, hi] pairs). */
  findMatches(localHashes: Uint32Array, options?: FindMatchesOptions): OverlapScores;

  /** Blocks indexed for one owner. */
  treeSize(owner: number): number;

  /** Events that, applied to an empty indexer, rebuild an identical index (event ids are 0). */
  dump(): RouterEvent[];

  /** Live (block, owner) entries. */
  readonly size: number;

  stats(): IndexerStats;
}

/** Reads an OverlapScores into plain objects keyed `${workerId}:${dpRank}` (tests, debugging). */
export function overlapToRecord(
  indexer: KvIndexer,
  scores: OverlapScores,
): Record<string, { blocks: number; treeSize: number }> {
  const out: Record<string, { blocks: number; treeSize: number }> = {};
  for (let i = 0; i < scores.count; i++) {
    const { workerId, dpRank } = indexer.owners.pairOf(scores.owners[i]);
    out[`${workerId}:${dpRank}`] = { blocks: scores.blocks[i], treeSize: scores.treeSizes[i] };
  }
  return out;
}
