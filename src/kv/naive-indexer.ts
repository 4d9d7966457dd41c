/**
 * The reference indexer: obviously correct, bigint keys, no packing tricks. It is the model the other
 * indexers are checked against and the baseline of the indexer benchmark.
 *
 * State: a tree of positions (a position is the path of tokens hashes from the root) and, per owner,
 * a map blockHash -> position. An owner holds a position while at least one of its block hashes
 * maps there. Dynamo's semantics:
 * - stored: chains from the owner's position of `parentHash` (or the root); an unknown parent, or a
 *   block hash repeated in the event or equal to the parent, applies nothing.
 * - removed: each hash leaves its position; an unknown hash is reported but the rest still applies.
 *   No cascade: descendants stay, so a query stops at the removed level for that owner (it no longer
 *   holds the prefix), and re-storing the removed block makes the deeper blocks count again.
 * - cleared / removeWorker: every rank of the worker.
 */
import { KvEventError } from './errors.ts';
import type { RouterEvent, WorkerId } from './events.ts';
import type { FindMatchesOptions, IndexerStats, KvIndexer, OverlapScores } from './indexer.ts';
import { OwnerTable } from './owners.ts';

interface Position {
  readonly parent: Position | null;
  readonly tokensHash: bigint;
  readonly children: Map<bigint, Position>;
  /** owner -> how many of its block hashes map here. */
  readonly holders: Map<number, number>;
}

export interface NaiveIndexerOptions {
  /** Shared owner numbering; a private table is created when absent. */
  readonly owners?: OwnerTable;
}

export class NaiveIndexer implements KvIndexer {
  readonly owners: OwnerTable;
  private readonly ownsTable: boolean;
  private readonly root: Position = newPosition(null, 0n);
  private readonly lookup = new Map<number, Map<bigint, Position>>();
  private entries = 0;
  private nodes = 0;
  private applied = 0;
  private errors = 0;
  private scores: OverlapScores = {
    count: 0,
    owners: new Int32Array(0),
    blocks: new Int32Array(0),
    treeSizes: new Int32Array(0),
  };

  constructor(options: NaiveIndexerOptions = {}) {
    this.ownsTable = options.owners === undefined;
    this.owners = options.owners ?? new OwnerTable();
  }

  get size(): number {
    return this.entries;
  }

  apply(event: RouterEvent): KvEventError | null {
    const error = this.applyInner(event);
    if (error === null) this.applied++;
    else this.errors++;
    return error;
  }

  private applyInner(event: RouterEvent): KvEventError | null {
    const { workerId } = event;
    const { dpRank, data } = event.event;
    if (data.kind === 'cleared') {
      for (const owner of this.owners.ownersOf(workerId)) this.dropOwner(owner);
      return null;
    }
    const owner = this.owners.intern(workerId, dpRank);
    let blocks = this.lookup.get(owner);
    if (blocks === undefined) {
      blocks = new Map();
      this.lookup.set(owner, blocks);
    }
    if (data.kind === 'removed') {
      let firstError: KvEventError | null = null;
      for (const hash of data.blockHashes) {
        const position = blocks.get(hash);
        if (position === undefined) {
          firstError ??= new KvEventError(
            'KV_BLOCK_NOT_FOUND',
            `worker ${workerId} rank ${dpRank}: removed block ${hash} is not indexed`,
          );
          continue;
        }
        blocks.delete(hash);
        this.release(position, owner);
      }
      return firstError;
    }

    let position = this.root;
    if (data.parentHash !== null) {
      const parent = blocks.get(data.parentHash);
      if (parent === undefined)
        return new KvEventError(
          'KV_PARENT_NOT_FOUND',
          `worker ${workerId} rank ${dpRank}: parent block ${data.parentHash} is not indexed`,
        );
      position = parent;
    }
    const seen = new Set<bigint>();
    if (data.parentHash !== null) seen.add(data.parentHash);
    for (const block of data.blocks) {
      if (seen.has(block.blockHash))
        return new KvEventError(
          'KV_INVALID_BLOCK_SEQUENCE',
          `worker ${workerId} rank ${dpRank}: block ${block.blockHash} repeats its parent or an earlier block`,
        );
      seen.add(block.blockHash);
    }
    for (const block of data.blocks) {
      let child = position.children.get(block.tokensHash);
      if (child === undefined) {
        child = newPosition(position, block.tokensHash);
        position.children.set(block.tokensHash, child);
        this.nodes++;
      }
      const previous = blocks.get(block.blockHash);
      if (previous !== child) {
        blocks.set(block.blockHash, child);
        child.holders.set(owner, (child.holders.get(owner) ?? 0) + 1);
        if (previous === undefined) this.entries++;
        else this.release(previous, owner, false);
      }
      position = child;
    }
    return null;
  }

  removeWorker(workerId: WorkerId): void {
    for (const owner of this.owners.ownersOf(workerId)) {
      this.dropOwner(owner);
      this.lookup.delete(owner);
    }
    if (this.ownsTable) this.owners.releaseWorker(workerId);
  }

  removeRank(workerId: WorkerId, dpRank: number): void {
    const owner = this.owners.find(workerId, dpRank);
    if (owner >= 0) this.dropOwner(owner);
  }

  findMatches(localHashes: Uint32Array, options?: FindMatchesOptions): OverlapScores {
    this.scores.count = 0;
    const length = localHashes.length >>> 1;
    let position = this.root;
    let active: number[] = [];
    let depth = 0;
    for (; depth < length; depth++) {
      const tokensHash = (BigInt(localHashes[2 * depth + 1]) << 32n) | BigInt(localHashes[2 * depth]);
      const child = position.children.get(tokensHash);
      if (child === undefined) break;
      if (depth === 0) active = [...child.holders.keys()];
      else {
        const survivors: number[] = [];
        for (const owner of active) {
          if (child.holders.has(owner)) survivors.push(owner);
          else this.pushScore(owner, depth);
        }
        active = survivors;
      }
      if (active.length === 0) break;
      position = child;
      if (options?.earlyExit && active.length === 1) {
        depth++;
        break;
      }
    }
    for (const owner of active) this.pushScore(owner, depth);
    return this.scores;
  }

  treeSize(owner: number): number {
    return this.lookup.get(owner)?.size ?? 0;
  }

  /**
   * Single-block stored events in breadth-first order. Entries an owner holds below a block it no
   * longer holds cannot be chained from the root and are left out (as in Dynamo's dump).
   */
  dump(): RouterEvent[] {
    const hashesAt = new Map<Position, Map<number, bigint[]>>();
    for (const [owner, blocks] of this.lookup) {
      for (const [hash, position] of blocks) {
        let byOwner = hashesAt.get(position);
        if (byOwner === undefined) {
          byOwner = new Map();
          hashesAt.set(position, byOwner);
        }
        const hashes = byOwner.get(owner);
        if (hashes === undefined) byOwner.set(owner, [hash]);
        else hashes.push(hash);
      }
    }
    const events: RouterEvent[] = [];
    let level: Position[] = [...this.root.children.values()];
    while (level.length > 0) {
      const next: Position[] = [];
      for (const position of level) {
        const byOwner = hashesAt.get(position);
        if (byOwner === undefined) continue;
        const parentOwners = position.parent === this.root ? undefined : hashesAt.get(position.parent!);
        for (const [owner, hashes] of byOwner) {
          let parentHash: bigint | null = null;
          if (position.parent !== this.root) {
            const parentHashes = parentOwners?.get(owner);
            if (parentHashes === undefined) {
              byOwner.delete(owner); // unreachable for this owner, and so is everything below
              continue;
            }
            parentHash = minBigint(parentHashes);
          }
          const { workerId, dpRank } = this.owners.pairOf(owner);
          for (const hash of hashes)
            events.push(storedEvent(workerId, dpRank, parentHash, hash, position.tokensHash));
        }
        next.push(...position.children.values());
      }
      level = next;
    }
    return events;
  }

  stats(): IndexerStats {
    let owners = 0;
    for (const _ of this.owners.live()) owners++;
    return {
      entries: this.entries,
      nodes: this.nodes,
      owners,
      eventsApplied: this.applied,
      eventErrors: this.errors,
      // Rough: a Map entry is ~80 bytes, a position ~200 bytes with its two maps.
      bytes: this.entries * 80 + this.nodes * 200,
    };
  }

  private dropOwner(owner: number): void {
    const blocks = this.lookup.get(owner);
    if (blocks === undefined) return;
    for (const position of blocks.values()) this.release(position, owner);
    blocks.clear();
  }

  /** One block hash of `owner` leaves `position`; frees positions nobody holds or needs. */
  private release(position: Position, owner: number, countEntry = true): void {
    if (countEntry) this.entries--;
    const count = position.holders.get(owner)! - 1;
    if (count > 0) position.holders.set(owner, count);
    else position.holders.delete(owner);
    let p: Position | null = position;
    while (p !== null && p !== this.root && p.holders.size === 0 && p.children.size === 0) {
      p.parent!.children.delete(p.tokensHash);
      this.nodes--;
      p = p.parent;
    }
  }

  private pushScore(owner: number, blocks: number): void {
    let scores = this.scores;
    if (scores.count === scores.owners.length) {
      const capacity = Math.max(8, scores.count * 2);
      const grown: OverlapScores = {
        count: scores.count,
        owners: new Int32Array(capacity),
        blocks: new Int32Array(capacity),
        treeSizes: new Int32Array(capacity),
      };
      grown.owners.set(scores.owners);
      grown.blocks.set(scores.blocks);
      grown.treeSizes.set(scores.treeSizes);
      this.scores = grown;
      scores = grown;
    }
    scores.owners[scores.count] = owner;
    scores.blocks[scores.count] = blocks;
    scores.treeSizes[scores.count] = this.treeSize(owner);
    scores.count++;
  }
}

function newPosition(parent: Position | null, tokensHash: bigint): Position {
  return {
    parent,
    tokensHash,
    children: new Map(),
    holders: new Map(),
  };
}

function storedEvent(
  workerId: WorkerId,
  dpRank: number,
  parentHash: bigint | null,
  blockHash: bigint,
  tokensHash: bigint,
): RouterEvent {
  return {
    workerId,
    event: { eventId: 0n, dpRank, data: { kind: 'stored', parentHash, blocks: [{ blockHash, tokensHash }] } },
  };
}

function minBigint(values: readonly bigint[]): bigint {
  let min = values[0];
  for (const v of values) if (v < min) min = v;
  return min;
}
