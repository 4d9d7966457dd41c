/**
 * The KV block index as a radix tree in typed arrays (Dynamo's radix_tree.rs, semantics pinned by
 * test/kv/indexer.conformance.ts and the NaiveIndexer reference).
 *
 * Layout (see src/kv/radix/): nodes and (block, owner) entries are 15 x Int32 records in one growable
 * typed array, a node's entry in the node's own record when it can (one record per single-owner
 * block); a node's first child is inline and the others sit in one global
 * open-addressing table keyed by (parent, tokens hash); a node's owners are inline (one) or a
 * contiguous OwnerSlab slice (several); each owner has its own block hash -> entry table. Event bigints
 * become u32 halves once, at the edge; nothing on the store, remove or query paths allocates per block.
 *
 * Removal does not cascade: an owner may keep entries below a block it no longer holds ("stale"
 * entries). Each entry knows the same owner's entry on the parent node, or that it has none, and each
 * node counts its stale entries. A node without stale entries holds a subset of its parent's owners, so
 * findMatches can compare counts: a level whose owner count equals its parent's changes nothing and
 * costs O(1); per-owner work happens only where the set shrinks or below stale entries. A node nobody
 * holds is kept while it has children (re-storing it brings the deeper blocks back, as in the
 * reference; Dynamo itself drops such children) and freed with no children.
 *
 * Divergences from Dynamo on inconsistent engine input, as in the reference: a block hash stored
 * again at another position moves there; two block hashes of one owner on one node are both kept
 * (the second as an alias key); a stored event whose block hash repeats its parent or an earlier block
 * is rejected whole (KV_INVALID_BLOCK_SEQUENCE).
 */
import { KvEventError } from './errors.ts';
import { isDpRank, type RouterEvent, type StoredBlock, type WorkerId } from './events.ts';
import type { FindMatchesOptions, IndexerStats, KvIndexer, OverlapScores } from './indexer.ts';
import { OwnerTable } from './owners.ts';
import {
  blockTableFind,
  blockTablePlace,
  blockTablePlaceAt,
  blockTableRehash,
  blockTableRemove,
  blockTableSizeFor,
  entryMaskFor,
  MIN_BLOCK_TABLE,
  retagSlots,
  slotEntry,
} from './radix/block-table.ts';
import { ChildTable } from './radix/child-table.ts';
import { hashPair, hashTriple, powerOfTwoAtLeast } from './radix/hash.ts';
import { OwnerSlab, sizeClassOf } from './radix/owner-slab.ts';
import {
  ALIAS,
  CHILD_COUNT,
  ENTRY_STRIDE,
  FIRST_CHILD,
  KEY_HI,
  KEY_LO,
  KIDS,
  NO_NODE,
  NO_PARENT,
  NODE,
  NODE_STRIDE,
  OWNER,
  OWNER_COUNT,
  OWNER_START,
  PARENT,
  PARENT_ENTRY,
  POS,
  RecordPool,
  ROOT,
  STALE,
  STALE_COUNT,
  TOKENS_HI,
  TOKENS_LO,
} from './radix/record-pool.ts';

export interface RadixTreeIndexerOptions {
  /** Shared owner numbering (the router's). When absent the indexer creates and manages its own. */
  readonly owners?: OwnerTable;
  /** Initial node and entry capacities (they grow on demand). */
  readonly initialCapacity?: number;
}

const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Slots of the (worker, rank) -> owner cache in front of the OwnerTable (pairs of two ways). */
const OWNER_CACHE = 8192;
/** log2 of the bucket count of repeatsBlockHash's quick pass. */
const SEEN_BITS = 12;
/** Retired block tables kept per size for reuse. */
const SPARE_TABLES = 8;
/** Runs of at least this many owners are emitted with native copy/fill. */
const BULK_RUN = 32;
/** Up to this many survivors of a bulk-emitted level are taken back by position instead of by a scan. */
const FEW_SURVIVORS = 16;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = 1 - LO;

class Scores implements OverlapScores {
  count = 0;
  owners: Int32Array;
  blocks: Int32Array;
  treeSizes: Int32Array;
  constructor(capacity: number) {
    this.owners = new Int32Array(capacity);
    this.blocks = new Int32Array(capacity);
    this.treeSizes = new Int32Array(capacity);
  }
}

function isU64(value: unknown): value is bigint {
  return typeof value === 'bigint' && value >= 0n && value <= U64_MAX;
}

function invalid(message: string): KvEventError {
  return new KvEventError('KV_INVALID_EVENT', message);
}

export class RadixTreeIndexer implements KvIndexer {
  readonly owners: OwnerTable;
  private readonly ownsTable: boolean;
  /** Nodes and entries (see record-pool.ts): a node's entry usually shares its record. */
  private readonly records: RecordPool;
  private readonly children: ChildTable;
  private readonly slab: OwnerSlab;

  /** Per owner: block hash table, live keys (its tree size), slots in use, stale entries. */
  private ownerSlots: Int32Array[] = [];
  /** Block-table slot bits holding entry id + 1 (see block-table.ts); the bits above hold a hash tag. */
  private entryMask: number;
  /** Where the last missed block-table lookup of a stored block would insert it (see blockTableFind). */
  private readonly insertProbe = new Int32Array(2);
  private readonly spareProbe = new Int32Array(2);
  /** Retired block tables for reuse, by clz32(size) (see rehashKeys). */
  private readonly spareTables: Int32Array[][] = Array.from({ length: 32 }, () => []);
  private ownerKeys = new Int32Array(0);
  private ownerUsed = new Int32Array(0);
  private ownerStale = new Int32Array(0);
  /** findMatches scratch: membership stamps and the explicit active list. */
  private mark = new Int32Array(0);
  private active = new Int32Array(0);
  private stamp = 0;
  private readonly positions = new Int32Array(FEW_SURVIVORS);
  private scores = new Scores(0);

  private entryCount = 0;
  private aliasCount = 0;
  private applied = 0;
  private errors = 0;

  /** Edge conversion of bigints to halves, and per-event scratch: [tokLo, tokHi, blkLo, blkHi] per block. */
  private readonly wide = new BigUint64Array(1);
  private readonly halves = new Uint32Array(this.wide.buffer);
  private blockHalves = new Uint32Array(256);
  /** ownerOf's cache: owner id + 1 per slot, 0 when empty. */
  private readonly ownerCache = new Int32Array(OWNER_CACHE);
  /** repeatsBlockHash's bucket stamps (see seenBucket). */
  private readonly seenStamp = new Int32Array(1 << SEEN_BITS);
  private seenGeneration = 0;
  private dupSlots = new Int32Array(64);
  private dupStamp = new Int32Array(64);
  private dupGeneration = 0;

  constructor(options: RadixTreeIndexerOptions = {}) {
    this.ownsTable = options.owners === undefined;
    this.owners = options.owners ?? new OwnerTable();
    const capacity = options.initialCapacity ?? 1024;
    this.records = new RecordPool(capacity);
    this.children = new ChildTable(this.records, capacity);
    this.slab = new OwnerSlab(capacity);
    this.entryMask = entryMaskFor(this.records.capacity);
    this.ensureOwners(this.owners.capacity);
  }

  get size(): number {
    return this.entryCount;
  }

  apply(event: RouterEvent): KvEventError | null {
    const error = this.applyEvent(event);
    if (error === null) this.applied++;
    else this.errors++;
    return error;
  }

  removeWorker(workerId: WorkerId): void {
    for (const owner of this.owners.ownersOf(workerId)) this.clearOwner(owner);
    if (this.ownsTable) this.owners.releaseWorker(workerId);
  }

  removeRank(workerId: WorkerId, dpRank: number): void {
    const owner = this.owners.find(workerId, dpRank);
    if (owner >= 0) this.clearOwner(owner);
  }

  treeSize(owner: number): number {
    return owner >= 0 && owner < this.ownerKeys.length ? this.ownerKeys[owner] : 0;
  }

  findMatches(localHashes: Uint32Array, options?: FindMatchesOptions): OverlapScores {
    const scores = this.scores;
    scores.count = 0;
    const length = localHashes.length >>> 1;
    if (length === 0) return scores;
    let cur = this.childOf(ROOT, localHashes[0] | 0, localHashes[1] | 0);
    if (cur < 0) return scores;
    const records = this.records;
    const data = records.data;
    const slabOwner = this.slab.owner;
    const ownerKeys = this.ownerKeys;
    const outTreeSizes = scores.treeSizes;
    const mark = this.mark;
    const active = this.active;
    const outOwners = scores.owners;
    const outBlocks = scores.blocks;
    const earlyExit = options?.earlyExit === true;
    let count = 0;

    // `full`: the active set is exactly cur's owners; otherwise it is active[0 .. activeCount).
    let full = true;
    let activeCount = data[cur * NODE_STRIDE + OWNER_COUNT];
    let depth = 1;
    if (activeCount === 0) return scores;
    if (!(earlyExit && activeCount === 1)) {
      for (let i = 1; i < length; i++) {
        // The inline first child is checked here; other children are looked up in the child table.
        const lo = localHashes[2 * i] | 0;
        const hi = localHashes[2 * i + 1] | 0;
        const first = data[cur * NODE_STRIDE + FIRST_CHILD];
        let child: number;
        if (
          first !== NO_NODE &&
          data[first * NODE_STRIDE + TOKENS_LO] === lo &&
          data[first * NODE_STRIDE + TOKENS_HI] === hi
        )
          child = first;
        else if (data[cur * NODE_STRIDE + CHILD_COUNT] > (first === NO_NODE ? 0 : 1))
          child = this.children.find(cur, lo, hi);
        else break;
        if (child < 0) break;
        const childOwners = data[child * NODE_STRIDE + OWNER_COUNT];
        if (
          data[child * NODE_STRIDE + STALE_COUNT] !== 0 ||
          childOwners !== data[cur * NODE_STRIDE + OWNER_COUNT]
        ) {
          if (
            full &&
            activeCount >= BULK_RUN &&
            childOwners <= FEW_SURVIVORS &&
            data[child * NODE_STRIDE + STALE_COUNT] === 0
          ) {
            // A wide set shrinks to a few owners (a shared prefix ends): emit all of cur's owners in bulk,
            // then take back the child's, found at their parent entries' positions in cur's slice.
            const base = count;
            count = emitRun(
              slabOwner,
              data[cur * NODE_STRIDE + OWNER_START],
              activeCount,
              depth,
              scores,
              count,
              ownerKeys,
            );
            count = this.takeBackSurvivors(child, childOwners, base, count);
            activeCount = childOwners;
            if (childOwners === 0) break;
            cur = child;
            depth++;
            if (earlyExit && activeCount === 1) break;
            continue;
          }
          // The set changes here: stamp the child's owners, then drop the active ones it lacks.
          const stamp = this.nextStamp();
          if (childOwners === 1)
            mark[data[data[child * NODE_STRIDE + OWNER_START] * ENTRY_STRIDE + OWNER]] = stamp;
          else
            for (let k = data[child * NODE_STRIDE + OWNER_START], end = k + childOwners; k < end; k++)
              mark[slabOwner[k]] = stamp;
          let kept = 0;
          if (full && activeCount === 1) {
            const owner = data[data[cur * NODE_STRIDE + OWNER_START] * ENTRY_STRIDE + OWNER];
            if (mark[owner] !== stamp) {
              outOwners[count] = owner;
              outTreeSizes[count] = ownerKeys[owner];
              outBlocks[count++] = depth;
            } else active[kept++] = owner;
          } else if (full) {
            // Active = cur's owners, contiguous in the slab: emit them all in bulk, then take back the
            // ones the child keeps (listing them only if the child has stale owners).
            const collect = data[child * NODE_STRIDE + STALE_COUNT] !== 0;
            let k = count;
            count = emitRun(
              slabOwner,
              data[cur * NODE_STRIDE + OWNER_START],
              activeCount,
              depth,
              scores,
              count,
              ownerKeys,
            );
            while (k < count) {
              const owner = outOwners[k];
              if (mark[owner] === stamp) {
                if (collect) active[kept] = owner;
                kept++;
                count--;
                outOwners[k] = outOwners[count];
                outTreeSizes[k] = outTreeSizes[count];
              } else k++;
            }
          } else {
            for (let k = 0; k < activeCount; k++) {
              const owner = active[k];
              if (mark[owner] !== stamp) {
                outOwners[count] = owner;
                outTreeSizes[count] = ownerKeys[owner];
                outBlocks[count++] = depth;
              } else active[kept++] = owner;
            }
          }
          activeCount = kept;
          full = kept === childOwners;
          if (kept === 0) break;
        }
        cur = child;
        depth++;
        if (earlyExit && activeCount === 1) break;
      }
    }
    if (full && activeCount === 1) {
      const owner = data[data[cur * NODE_STRIDE + OWNER_START] * ENTRY_STRIDE + OWNER];
      outOwners[count] = owner;
      outTreeSizes[count] = ownerKeys[owner];
      outBlocks[count++] = depth;
    } else if (full) {
      count = emitRun(
        slabOwner,
        data[cur * NODE_STRIDE + OWNER_START],
        activeCount,
        depth,
        scores,
        count,
        ownerKeys,
      );
    } else {
      for (let k = 0; k < activeCount; k++) {
        const owner = active[k];
        outOwners[count] = owner;
        outTreeSizes[count] = ownerKeys[owner];
        outBlocks[count++] = depth;
      }
    }
    scores.count = count;
    return scores;
  }

  /**
   * Single-block stored events, breadth first, that rebuild this index. An owner's parent hash is its
   * (smallest) block hash on the parent node. Stale entries (below a block their owner no longer
   * holds) cannot be chained from the root and are left out, as in Dynamo's dump and the reference.
   */
  dump(): RouterEvent[] {
    const events: RouterEvent[] = [];
    const records = this.records;
    if (records.liveNodes === 0) return events;
    const highWater = records.highWater;
    const firstKid = new Int32Array(highWater).fill(NO_NODE);
    const nextKid = new Int32Array(highWater).fill(NO_NODE);
    for (let id = highWater - 1; id > ROOT; id--) {
      if (!records.isLiveNode(id)) continue;
      const parent = records.data[id * NODE_STRIDE + PARENT];
      nextKid[id] = firstKid[parent];
      firstKid[parent] = id;
    }
    const aliasesOf = this.collectAliases();
    const emitted = new Uint8Array(records.highWater);
    const queue = new Int32Array(records.liveNodes);
    let tail = 0;
    for (let kid = firstKid[ROOT]; kid !== NO_NODE; kid = nextKid[kid]) queue[tail++] = kid;
    for (let head = 0; head < tail; head++) {
      const node = queue[head];
      const atRoot = records.data[node * NODE_STRIDE + PARENT] === ROOT;
      const tokensHash = this.keyOf(
        records.data[node * NODE_STRIDE + TOKENS_LO],
        records.data[node * NODE_STRIDE + TOKENS_HI],
      );
      for (let k = 0; k < records.data[node * NODE_STRIDE + OWNER_COUNT]; k++) {
        const e = this.memberEntry(node, k);
        const parentEntry = records.data[e * ENTRY_STRIDE + PARENT_ENTRY];
        if (!atRoot && (parentEntry < 0 || emitted[parentEntry] === 0)) continue;
        emitted[e] = 1;
        const parentHash = atRoot ? null : minBigint(this.keysOf(parentEntry, aliasesOf));
        const { workerId, dpRank } = this.owners.pairOf(records.data[e * ENTRY_STRIDE + OWNER]);
        for (const blockHash of this.keysOf(e, aliasesOf))
          events.push({
            workerId,
            event: {
              eventId: 0n,
              dpRank,
              data: { kind: 'stored', parentHash, blocks: [{ blockHash, tokensHash }] },
            },
          });
      }
      for (let kid = firstKid[node]; kid !== NO_NODE; kid = nextKid[kid]) queue[tail++] = kid;
    }
    return events;
  }

  stats(): IndexerStats {
    let owners = 0;
    let ownerBytes =
      this.ownerKeys.byteLength +
      this.ownerUsed.byteLength +
      this.ownerStale.byteLength +
      this.mark.byteLength +
      this.active.byteLength +
      3 * this.scores.owners.byteLength;
    for (let owner = 0; owner < this.ownerSlots.length; owner++) {
      if (this.ownerKeys[owner] > 0) owners++;
      ownerBytes += this.ownerSlots[owner].byteLength;
    }
    for (const spares of this.spareTables) for (const spare of spares) ownerBytes += spare.byteLength;
    return {
      entries: this.entryCount,
      nodes: this.records.liveNodes,
      owners,
      eventsApplied: this.applied,
      eventErrors: this.errors,
      bytes:
        this.records.bytes +
        this.children.bytes +
        this.slab.bytes +
        ownerBytes +
        this.blockHalves.byteLength +
        this.ownerCache.byteLength +
        this.seenStamp.byteLength +
        this.dupSlots.byteLength +
        this.dupStamp.byteLength,
    };
  }

  // ---- events -------------------------------------------------------------------------------------

  private applyEvent(event: RouterEvent): KvEventError | null {
    if (typeof event !== 'object' || event === null) return invalid('event is not an object');
    const body = event.event;
    if (typeof body !== 'object' || body === null) return invalid('event body is missing');
    const { workerId } = event;
    const { dpRank, data } = body;
    if (!isU64(workerId)) return invalid('worker id is not a u64');
    if (!isDpRank(dpRank)) return invalid(`dp rank ${String(dpRank)} is not a u32`);
    if (typeof data !== 'object' || data === null) return invalid('event data is missing');
    switch (data.kind) {
      case 'cleared':
        for (const owner of this.owners.ownersOf(workerId)) this.clearOwner(owner);
        return null;
      case 'removed':
        if (!Array.isArray(data.blockHashes)) return invalid('removed block hashes are not a list');
        return this.removeBlocks(workerId, dpRank, data.blockHashes);
      case 'stored':
        if (!Array.isArray(data.blocks)) return invalid('stored blocks are not a list');
        return this.storeBlocks(workerId, dpRank, data.parentHash, data.blocks);
      default:
        return invalid('unknown event kind');
    }
  }

  private storeBlocks(
    workerId: WorkerId,
    dpRank: number,
    parentHash: bigint | null,
    blocks: readonly StoredBlock[],
  ): KvEventError | null {
    const count = blocks.length;
    if (this.blockHalves.length < 4 * count) this.blockHalves = new Uint32Array(powerOfTwoAtLeast(4 * count));
    const halves = this.blockHalves;
    const wide = this.wide;
    const parts = this.halves;
    for (let i = 0; i < count; i++) {
      const block = blocks[i];
      if (typeof block !== 'object' || block === null) return invalid(`stored block ${i} is not an object`);
      const { tokensHash, blockHash } = block;
      if (typeof tokensHash !== 'bigint' || typeof blockHash !== 'bigint')
        return invalid(`stored block ${i} has a hash that is not a u64`);
      // asUintN(64) is the u64 range check (it returns its argument exactly when that is in range),
      // and what it returns goes into the typed array without another conversion.
      const tokens = BigInt.asUintN(64, tokensHash);
      const key = BigInt.asUintN(64, blockHash);
      if (tokens !== tokensHash || key !== blockHash)
        return invalid(`stored block ${i} has a hash that is not a u64`);
      wide[0] = tokens;
      halves[4 * i] = parts[LO];
      halves[4 * i + 1] = parts[HI];
      wide[0] = key;
      halves[4 * i + 2] = parts[LO];
      halves[4 * i + 3] = parts[HI];
    }
    let parentLo = 0;
    let parentHi = 0;
    const hasParent = parentHash !== null;
    if (hasParent) {
      if (!isU64(parentHash)) return invalid('parent hash is not a u64');
      wide[0] = parentHash;
      parentLo = parts[LO] | 0;
      parentHi = parts[HI] | 0;
    }
    const owner = this.ownerOf(workerId, dpRank);
    return this.storeHalves(owner, hasParent, parentLo, parentHi, halves, count);
  }

  /**
   * A stored event for an interned owner with hashes already split into u32 halves: `blocks` holds
   * [tokensLo, tokensHi, blockLo, blockHi] per block (its length / 4 blocks), the parent is
   * (parentLo, parentHi) when `hasParent`, else the root. Same semantics and errors as `apply`.
   */
  applyStoredPacked(
    owner: number,
    hasParent: boolean,
    parentLo: number,
    parentHi: number,
    blocks: Uint32Array,
  ): KvEventError | null {
    const error = this.checkOwner(owner) ?? this.storePacked(owner, hasParent, parentLo, parentHi, blocks);
    if (error === null) this.applied++;
    else this.errors++;
    return error;
  }

  /** A removed event for an interned owner: `blockHashes` holds [lo, hi] per block hash. */
  applyRemovedPacked(owner: number, blockHashes: Uint32Array): KvEventError | null {
    const error = this.checkOwner(owner) ?? this.removePacked(owner, blockHashes);
    if (error === null) this.applied++;
    else this.errors++;
    return error;
  }

  private checkOwner(owner: number): KvEventError | null {
    if (!Number.isInteger(owner) || owner < 0 || !this.owners.isLive(owner))
      return invalid(`owner ${owner} is not interned`);
    if (owner >= this.ownerKeys.length) this.ensureOwners(Math.max(owner + 1, this.owners.capacity));
    return null;
  }

  private storePacked(
    owner: number,
    hasParent: boolean,
    parentLo: number,
    parentHi: number,
    blocks: Uint32Array,
  ): KvEventError | null {
    if ((blocks.length & 3) !== 0) return invalid('packed stored blocks are not 4 u32 per block');
    const count = blocks.length >>> 2;
    return this.storeHalves(owner, hasParent, parentLo | 0, parentHi | 0, blocks, count);
  }

  /** Stores `count` blocks: `halves` holds [tokensLo, tokensHi, blockLo, blockHi] per block. */
  private storeHalves(
    owner: number,
    hasParent: boolean,
    parentLo: number,
    parentHi: number,
    halves: Uint32Array,
    count: number,
  ): KvEventError | null {
    let cur = ROOT;
    let parentEntry = NO_PARENT;
    if (hasParent) {
      const found = blockTableFind(
        this.ownerSlots[owner],
        this.records.data,
        parentLo,
        parentHi,
        this.entryMask,
        this.spareProbe,
      );
      if (found < 0)
        return new KvEventError(
          'KV_PARENT_NOT_FOUND',
          `${this.ownerName(owner)}: parent block ${this.keyOf(parentLo, parentHi)} is not indexed`,
        );
      parentEntry = this.primaryOf(found);
      cur = this.records.data[parentEntry * ENTRY_STRIDE + NODE];
    }
    if (this.repeatsBlockHash(halves, count, hasParent, parentLo, parentHi))
      return new KvEventError(
        'KV_INVALID_BLOCK_SEQUENCE',
        `${this.ownerName(owner)}: a block hash repeats its parent or an earlier block`,
      );
    let curIsNew = false;
    for (let i = 0; i < count; i++) {
      const tokensLo = halves[4 * i] | 0;
      const tokensHi = halves[4 * i + 1] | 0;
      const keyLo = halves[4 * i + 2] | 0;
      const keyHi = halves[4 * i + 3] | 0;
      // A node created for the previous block has no children yet.
      let child: number = curIsNew ? NO_NODE : this.childOf(cur, tokensLo, tokensHi);
      const created = child < 0;
      if (created) child = this.createChild(cur, tokensLo, tokensHi);
      curIsNew = created;
      const previous = blockTableFind(
        this.ownerSlots[owner],
        this.records.data,
        keyLo,
        keyHi,
        this.entryMask,
        this.insertProbe,
      );
      if (created && previous < 0) {
        // The usual case under churn: a new block on a new node.
        parentEntry = this.addSoleOwner(owner, child, keyLo, keyHi, parentEntry);
        cur = child;
        continue;
      }
      if (previous >= 0) {
        const previousPrimary = this.primaryOf(previous);
        if (this.records.data[previousPrimary * ENTRY_STRIDE + NODE] === child) {
          parentEntry = previousPrimary;
          cur = child;
          continue;
        }
        // The engine moved this block hash to another position: the key leaves its old node below.
        this.takeKey(owner, keyLo, keyHi);
      }
      // A missed lookup of this key leaves its insertion slot in insertProbe; primaryOn keeps it intact.
      let primary = this.primaryOn(child, owner, previous < 0, keyLo, keyHi);
      if (primary < 0) primary = this.addPrimary(owner, child, keyLo, keyHi, parentEntry, previous < 0);
      else this.addAlias(owner, primary, keyLo, keyHi);
      if (previous >= 0) this.dropKeyRecord(previous);
      parentEntry = primary;
      cur = child;
    }
    return null;
  }

  private removeBlocks(workerId: WorkerId, dpRank: number, hashes: readonly bigint[]): KvEventError | null {
    // Checked and split in one pass (nothing is removed unless every hash is a u64).
    const count = hashes.length;
    if (this.blockHalves.length < 2 * count) this.blockHalves = new Uint32Array(powerOfTwoAtLeast(2 * count));
    const halves = this.blockHalves;
    const wide = this.wide;
    const parts = this.halves;
    for (let i = 0; i < count; i++) {
      const hash = hashes[i];
      if (typeof hash !== 'bigint') return invalid(`removed block hash ${i} is not a u64`);
      const key = BigInt.asUintN(64, hash);
      if (key !== hash) return invalid(`removed block hash ${i} is not a u64`);
      wide[0] = key;
      halves[2 * i] = parts[LO];
      halves[2 * i + 1] = parts[HI];
    }
    return this.removePacked(this.ownerOf(workerId, dpRank), halves.subarray(0, 2 * count));
  }

  private removePacked(owner: number, hashes: Uint32Array): KvEventError | null {
    if ((hashes.length & 1) !== 0) return invalid('packed removed block hashes are not 2 u32 per hash');
    let firstError: KvEventError | null = null;
    for (let i = 0; i < hashes.length; i += 2) {
      const lo = hashes[i] | 0;
      const hi = hashes[i + 1] | 0;
      if (!this.removeKey(owner, lo, hi)) firstError ??= this.notIndexed(owner, this.keyOf(lo, hi));
    }
    return firstError;
  }

  /** Removes one block hash of the owner; false when it is not indexed. */
  private removeKey(owner: number, lo: number, hi: number): boolean {
    const record = this.takeKey(owner, lo, hi);
    if (record < 0) return false;
    this.dropKeyRecord(record);
    return true;
  }

  private notIndexed(owner: number, blockHash: bigint): KvEventError {
    return new KvEventError(
      'KV_BLOCK_NOT_FOUND',
      `${this.ownerName(owner)}: removed block ${blockHash} is not indexed`,
    );
  }

  private ownerName(owner: number): string {
    const { workerId, dpRank } = this.owners.pairOf(owner);
    return `worker ${workerId} rank ${dpRank}`;
  }

  /** True when a block hash of the event equals the parent hash or an earlier block's. */
  private repeatsBlockHash(
    halves: Uint32Array,
    count: number,
    hasParent: boolean,
    parentLo: number,
    parentHi: number,
  ): boolean {
    if (count <= 8) {
      for (let i = 0; i < count; i++) {
        const lo = halves[4 * i + 2] | 0;
        const hi = halves[4 * i + 3] | 0;
        if (hasParent && lo === parentLo && hi === parentHi) return true;
        for (let j = 0; j < i; j++)
          if ((halves[4 * j + 2] | 0) === lo && (halves[4 * j + 3] | 0) === hi) return true;
      }
      return false;
    }
    // A quick pass over a bitmap of hash buckets (one stamp per bucket, no clearing); only when two
    // hashes share a bucket does the exact check below run.
    if (++this.seenGeneration === 0x7fffffff) {
      this.seenStamp.fill(0);
      this.seenGeneration = 1;
    }
    const seenGeneration = this.seenGeneration;
    const seen = this.seenStamp;
    let clash = false;
    if (hasParent) seen[seenBucket(parentLo, parentHi)] = seenGeneration;
    for (let i = 0; i < count; i++) {
      const bucket = seenBucket(halves[4 * i + 2] | 0, halves[4 * i + 3] | 0);
      if (seen[bucket] === seenGeneration) {
        clash = true;
        break;
      }
      seen[bucket] = seenGeneration;
    }
    if (!clash) return false;
    const size = powerOfTwoAtLeast(2 * (count + 1), 64);
    if (this.dupSlots.length < size) {
      this.dupSlots = new Int32Array(size);
      this.dupStamp = new Int32Array(size);
      this.dupGeneration = 0;
    }
    if (++this.dupGeneration === 0x7fffffff) {
      this.dupStamp.fill(0);
      this.dupGeneration = 1;
    }
    const generation = this.dupGeneration;
    const slots = this.dupSlots;
    const stamps = this.dupStamp;
    const mask = slots.length - 1;
    for (let i = -1; i < count; i++) {
      if (i < 0 && !hasParent) continue;
      const lo = i < 0 ? parentLo : halves[4 * i + 2] | 0;
      const hi = i < 0 ? parentHi : halves[4 * i + 3] | 0;
      let slot = hashPair(lo, hi) & mask;
      while (stamps[slot] === generation) {
        const j = slots[slot];
        const otherLo = j < 0 ? parentLo : halves[4 * j + 2] | 0;
        const otherHi = j < 0 ? parentHi : halves[4 * j + 3] | 0;
        if (otherLo === lo && otherHi === hi) return true;
        slot = (slot + 1) & mask;
      }
      stamps[slot] = generation;
      slots[slot] = i;
    }
    return false;
  }

  // ---- tree structure -----------------------------------------------------------------------------

  private childOf(node: number, lo: number, hi: number): number {
    const records = this.records;
    const first = records.data[node * NODE_STRIDE + FIRST_CHILD];
    if (first !== NO_NODE) {
      if (
        records.data[first * NODE_STRIDE + TOKENS_LO] === lo &&
        records.data[first * NODE_STRIDE + TOKENS_HI] === hi
      )
        return first;
      if (records.data[node * NODE_STRIDE + CHILD_COUNT] === 1) return -1;
    } else if (records.data[node * NODE_STRIDE + CHILD_COUNT] === 0) return -1;
    return this.children.find(node, lo, hi);
  }

  private createChild(parent: number, lo: number, hi: number): number {
    const records = this.records;
    const child = records.allocNode(parent, lo, hi);
    if (records.data[parent * NODE_STRIDE + FIRST_CHILD] === NO_NODE)
      records.data[parent * NODE_STRIDE + FIRST_CHILD] = child;
    else this.children.insert(child);
    records.data[parent * NODE_STRIDE + CHILD_COUNT]++;
    return child;
  }

  /** Frees a node nobody holds and with no children, then its ancestors that become so. */
  private pruneUpward(node: number): void {
    const records = this.records;
    while (
      node !== ROOT &&
      records.data[node * NODE_STRIDE + OWNER_COUNT] === 0 &&
      records.data[node * NODE_STRIDE + CHILD_COUNT] === 0
    ) {
      const parent = records.data[node * NODE_STRIDE + PARENT];
      if (records.data[parent * NODE_STRIDE + FIRST_CHILD] === node)
        records.data[parent * NODE_STRIDE + FIRST_CHILD] = NO_NODE;
      else this.children.remove(node);
      records.data[parent * NODE_STRIDE + CHILD_COUNT]--;
      records.freeNode(node);
      node = parent;
    }
  }

  // ---- entries ------------------------------------------------------------------------------------

  private primaryOf(record: number): number {
    return this.records.data[record * ENTRY_STRIDE + PARENT_ENTRY] === ALIAS
      ? this.records.data[record * ENTRY_STRIDE + KIDS]
      : record;
  }

  /**
   * The owner's primary entry on a node, or -1. `missed`: the owner holds no key (lo, hi), so when the
   * node's head entry has that key, looking it up again is pointless.
   */
  private primaryOn(node: number, owner: number, missed: boolean, lo: number, hi: number): number {
    const records = this.records;
    if (records.data[node * NODE_STRIDE + OWNER_COUNT] === 0) return -1;
    const head = this.memberEntry(node, 0);
    const headLo = records.data[head * ENTRY_STRIDE + KEY_LO];
    const headHi = records.data[head * ENTRY_STRIDE + KEY_HI];
    const found =
      missed && headLo === lo && headHi === hi
        ? -1
        : blockTableFind(
            this.ownerSlots[owner],
            records.data,
            headLo,
            headHi,
            this.entryMask,
            this.spareProbe,
          );
    if (found >= 0) {
      const primary = this.primaryOf(found);
      if (records.data[primary * ENTRY_STRIDE + NODE] === node) return primary;
    }
    // Every key on the node equals the head's unless flagged, and this owner has no entry under it.
    if (!records.hasMixedKeys(node)) return -1;
    for (let k = 0; k < records.data[node * NODE_STRIDE + OWNER_COUNT]; k++) {
      const entry = this.memberEntry(node, k);
      if (records.data[entry * ENTRY_STRIDE + OWNER] === owner) return entry;
    }
    return -1;
  }

  /** `hinted`: insertProbe holds this key's insertion slot from a lookup on the unchanged table. */
  private addPrimary(
    owner: number,
    node: number,
    lo: number,
    hi: number,
    parentEntry: number,
    hinted: boolean,
  ): number {
    const entry = this.records.allocEntry(node, owner, lo, hi);
    if (this.records.capacity > this.entryMask) {
      this.widenEntryMask();
      hinted = false;
    }
    const records = this.records;
    records.data[entry * ENTRY_STRIDE + PARENT_ENTRY] = parentEntry;
    if (parentEntry >= 0) records.data[parentEntry * ENTRY_STRIDE + KIDS]++;
    if (records.data[node * NODE_STRIDE + OWNER_COUNT] > 0) {
      const head = this.memberEntry(node, 0);
      if (
        records.data[head * ENTRY_STRIDE + KEY_LO] !== lo ||
        records.data[head * ENTRY_STRIDE + KEY_HI] !== hi
      )
        records.markMixedKeys(node);
    }
    this.link(entry, node, owner);
    this.insertKey(owner, entry, hinted);
    if (this.ownerStale[owner] > 0 && records.data[node * NODE_STRIDE + CHILD_COUNT] > 0)
      this.adoptChildren(owner, entry);
    return entry;
  }

  /**
   * addPrimary for a node just created (no owners, no children) and a key the owner does not hold,
   * whose insertion slot is in insertProbe: the owner becomes the node's inline single owner.
   */
  private addSoleOwner(owner: number, node: number, lo: number, hi: number, parentEntry: number): number {
    const records = this.records;
    const entry = records.allocEntry(node, owner, lo, hi);
    let hinted = true;
    if (records.capacity > this.entryMask) {
      this.widenEntryMask();
      hinted = false;
    }
    const data = records.data;
    data[entry * ENTRY_STRIDE + PARENT_ENTRY] = parentEntry;
    data[entry * ENTRY_STRIDE + POS] = 0;
    if (parentEntry >= 0) data[parentEntry * ENTRY_STRIDE + KIDS]++;
    data[node * NODE_STRIDE + OWNER_COUNT] = 1;
    data[node * NODE_STRIDE + OWNER_START] = entry;
    this.insertKey(owner, entry, hinted);
    return entry;
  }

  private addAlias(owner: number, primary: number, lo: number, hi: number): void {
    const records = this.records;
    const node = records.data[primary * ENTRY_STRIDE + NODE];
    const alias = records.allocEntry(node, owner, lo, hi);
    if (records.capacity > this.entryMask) this.widenEntryMask();
    records.data[alias * ENTRY_STRIDE + PARENT_ENTRY] = ALIAS;
    records.data[alias * ENTRY_STRIDE + KIDS] = primary;
    this.records.markMixedKeys(node);
    this.aliasCount++;
    this.insertKey(owner, alias, false);
  }

  private insertKey(owner: number, entry: number, hinted: boolean): void {
    this.placeKey(owner, entry, hinted);
    this.ownerKeys[owner]++;
    this.entryCount++;
  }

  /** Removes a key from the owner's table and returns its record (still allocated), or -1. */
  private takeKey(owner: number, lo: number, hi: number): number {
    const record = this.unplaceKey(owner, lo, hi);
    if (record >= 0) {
      const keys = --this.ownerKeys[owner];
      this.entryCount--;
      // Rehashed above 3/4 used, shrunk below 1/5 live: a burst of stores does not pin a large table.
      const slots = this.ownerSlots[owner];
      if (slots.length > MIN_BLOCK_TABLE && 5 * keys < slots.length) this.rehashKeys(owner, keys);
    }
    return record;
  }

  /**
   * Puts an entry's key in the owner's table (its key is absent), rehashing when too full. `hinted`:
   * insertProbe holds the key's slot, from a lookup on the table as it still is.
   */
  private placeKey(owner: number, entry: number, hinted: boolean): void {
    const slots = this.ownerSlots[owner];
    if (hinted && 4 * (this.ownerUsed[owner] + 1) <= 3 * slots.length)
      blockTablePlaceAt(slots, this.insertProbe, entry);
    else this.placeKeyUnhinted(owner, entry);
    this.ownerUsed[owner]++;
  }

  /** placeKey without a usable insertion slot (kept apart so the usual path stays small and inlined). */
  private placeKeyUnhinted(owner: number, entry: number): void {
    if (4 * (this.ownerUsed[owner] + 1) > 3 * this.ownerSlots[owner].length)
      this.rehashKeys(owner, this.ownerKeys[owner] + 1);
    blockTablePlace(this.ownerSlots[owner], this.records.data, entry, this.entryMask);
  }

  private unplaceKey(owner: number, lo: number, hi: number): number {
    const entry = blockTableRemove(this.ownerSlots[owner], this.records.data, lo, hi, this.entryMask);
    if (entry >= 0) this.ownerUsed[owner]--;
    return entry;
  }

  /**
   * Rebuilds the owner's table (grown or shrunk) for `keys` keys. Under churn owners grow and shrink
   * their tables all the time, so a few retired arrays per size are kept for reuse.
   */
  private rehashKeys(owner: number, keys: number): void {
    const old = this.ownerSlots[owner];
    const size = blockTableSizeFor(keys);
    const spares = this.spareTables[Math.clz32(size)];
    const slots = spares.length > 0 ? (spares.pop() as Int32Array) : new Int32Array(size);
    this.ownerUsed[owner] = blockTableRehash(old, old.length, slots, this.records.data, this.entryMask);
    this.ownerSlots[owner] = slots;
    const retired = this.spareTables[Math.clz32(old.length)];
    if (retired.length < SPARE_TABLES) retired.push(old);
  }

  /** The record pool outgrew the entry id bits of the slots: widen them (homes stay, tags shrink). */
  private widenEntryMask(): void {
    const mask = entryMaskFor(this.records.capacity);
    for (const slots of this.ownerSlots) retagSlots(slots, this.entryMask, mask);
    this.entryMask = mask;
  }

  /** Disposes of a record whose key has left the table: the owner may leave the node. */
  private dropKeyRecord(record: number): void {
    if (this.aliasCount === 0 || !this.dropAliasedKeyRecord(record)) this.removePrimary(record);
  }

  /**
   * dropKeyRecord while alias entries exist: frees an alias record, or hands a primary's membership
   * to another key of the same owner on the node. False when the record is a primary with no alias.
   */
  private dropAliasedKeyRecord(record: number): boolean {
    const records = this.records;
    if (records.data[record * ENTRY_STRIDE + PARENT_ENTRY] === ALIAS) {
      records.freeEntry(record);
      this.aliasCount--;
      return true;
    }
    const owner = records.data[record * ENTRY_STRIDE + OWNER];
    if (!records.hasMixedKeys(records.data[record * ENTRY_STRIDE + NODE])) return false;
    const alias = this.findAliasOf(owner, record);
    if (alias < 0) return false;
    // Another key of this owner still maps here: the primary takes it over, membership stays.
    this.unplaceKey(
      owner,
      records.data[alias * ENTRY_STRIDE + KEY_LO],
      records.data[alias * ENTRY_STRIDE + KEY_HI],
    );
    records.data[record * ENTRY_STRIDE + KEY_LO] = records.data[alias * ENTRY_STRIDE + KEY_LO];
    records.data[record * ENTRY_STRIDE + KEY_HI] = records.data[alias * ENTRY_STRIDE + KEY_HI];
    this.placeKey(owner, record, false);
    records.freeEntry(alias);
    this.aliasCount--;
    return true;
  }

  private removePrimary(entry: number): void {
    const records = this.records;
    const owner = records.data[entry * ENTRY_STRIDE + OWNER];
    const node = records.data[entry * ENTRY_STRIDE + NODE];
    const parentEntry = records.data[entry * ENTRY_STRIDE + PARENT_ENTRY];
    if (parentEntry === STALE) {
      records.data[node * NODE_STRIDE + STALE_COUNT]--;
      this.ownerStale[owner]--;
    } else if (parentEntry >= 0) records.data[parentEntry * ENTRY_STRIDE + KIDS]--;
    if (records.data[entry * ENTRY_STRIDE + KIDS] > 0) this.orphanChildren(owner, entry);
    this.unlink(entry, node);
    records.freeEntry(entry);
    if (
      records.data[node * NODE_STRIDE + OWNER_COUNT] === 0 &&
      records.data[node * NODE_STRIDE + CHILD_COUNT] === 0
    )
      this.pruneUpward(node);
  }

  /**
   * Adds a primary entry to the node's owners. A single owner is kept inline (ownerStart is then the
   * entry id); from two owners on they live in an OwnerSlab slice, moved to a larger one when full.
   */
  private link(entry: number, node: number, owner: number): void {
    const records = this.records;
    const slab = this.slab;
    const count = records.data[node * NODE_STRIDE + OWNER_COUNT];
    records.data[node * NODE_STRIDE + OWNER_COUNT] = count + 1;
    if (count === 0) {
      records.data[node * NODE_STRIDE + OWNER_START] = entry;
      records.data[entry * ENTRY_STRIDE + POS] = 0;
      return;
    }
    let start: number;
    if (count === 1) {
      const first = records.data[node * NODE_STRIDE + OWNER_START];
      start = slab.alloc(1);
      records.setOwnerClass(node, 1);
      slab.entry[start] = first;
      slab.owner[start] = records.data[first * ENTRY_STRIDE + OWNER];
    } else if (count === 1 << records.ownerClass(node)) {
      start = this.moveSlice(node, count, records.ownerClass(node) + 1);
    } else start = records.data[node * NODE_STRIDE + OWNER_START];
    records.data[node * NODE_STRIDE + OWNER_START] = start;
    slab.entry[start + count] = entry;
    slab.owner[start + count] = owner;
    records.data[entry * ENTRY_STRIDE + POS] = count;
  }

  /** Removes a primary entry from the node's owners (swap-remove); shrinks a slice at a quarter full. */
  private unlink(entry: number, node: number): void {
    const data = this.records.data;
    const count = data[node * NODE_STRIDE + OWNER_COUNT] - 1;
    data[node * NODE_STRIDE + OWNER_COUNT] = count;
    if (count === 0) data[node * NODE_STRIDE + OWNER_START] = -1;
    else this.unlinkFromSlice(entry, node, count);
  }

  /** unlink for a node that keeps `count` >= 1 owners in its OwnerSlab slice. */
  private unlinkFromSlice(entry: number, node: number, count: number): void {
    const records = this.records;
    const slab = this.slab;
    const start = records.data[node * NODE_STRIDE + OWNER_START];
    const pos = records.data[entry * ENTRY_STRIDE + POS];
    const sizeClass = records.ownerClass(node);
    if (count === 1) {
      const remaining = slab.entry[start + 1 - pos];
      slab.free(start, sizeClass);
      records.data[node * NODE_STRIDE + OWNER_START] = remaining;
      records.data[remaining * ENTRY_STRIDE + POS] = 0;
      return;
    }
    if (pos !== count) {
      const moved = slab.entry[start + count];
      slab.entry[start + pos] = moved;
      slab.owner[start + pos] = slab.owner[start + count];
      records.data[moved * ENTRY_STRIDE + POS] = pos;
    }
    if (sizeClass >= 3 && count <= 1 << (sizeClass - 2))
      records.data[node * NODE_STRIDE + OWNER_START] = this.moveSlice(node, count, sizeClassOf(count));
  }

  /** The entry id of the node's k-th owner. */
  private memberEntry(node: number, k: number): number {
    const records = this.records;
    return records.data[node * NODE_STRIDE + OWNER_COUNT] === 1
      ? records.data[node * NODE_STRIDE + OWNER_START]
      : this.slab.entry[records.data[node * NODE_STRIDE + OWNER_START] + k];
  }

  private moveSlice(node: number, count: number, sizeClass: number): number {
    const records = this.records;
    const slab = this.slab;
    const start = slab.alloc(sizeClass);
    const old = records.data[node * NODE_STRIDE + OWNER_START];
    slab.entry.copyWithin(start, old, old + count);
    slab.owner.copyWithin(start, old, old + count);
    slab.free(old, records.ownerClass(node));
    records.setOwnerClass(node, sizeClass);
    return start;
  }

  /** The owner left `entry`'s node: its entries on the children become stale. Rare (non-LRU removal). */
  private orphanChildren(owner: number, entry: number): void {
    const records = this.records;
    const slots = this.ownerSlots[owner];
    let remaining = records.data[entry * ENTRY_STRIDE + KIDS];
    for (let i = 0; i < slots.length && remaining > 0; i++) {
      const slot = slots[i];
      if (slot <= 0) continue;
      const child = slotEntry(slot, this.entryMask);
      if (records.data[child * ENTRY_STRIDE + PARENT_ENTRY] !== entry) continue;
      records.data[child * ENTRY_STRIDE + PARENT_ENTRY] = STALE;
      this.records.data[records.data[child * ENTRY_STRIDE + NODE] * NODE_STRIDE + STALE_COUNT]++;
      this.ownerStale[owner]++;
      remaining--;
    }
    records.data[entry * ENTRY_STRIDE + KIDS] = 0;
  }

  /** The owner holds `entry`'s node again: its stale entries on the children count again. */
  private adoptChildren(owner: number, entry: number): void {
    const records = this.records;
    const node = records.data[entry * ENTRY_STRIDE + NODE];
    const slots = this.ownerSlots[owner];
    for (let i = 0; i < slots.length && this.ownerStale[owner] > 0; i++) {
      const slot = slots[i];
      if (slot <= 0) continue;
      const child = slotEntry(slot, this.entryMask);
      if (
        records.data[child * ENTRY_STRIDE + PARENT_ENTRY] !== STALE ||
        records.data[records.data[child * ENTRY_STRIDE + NODE] * NODE_STRIDE + PARENT] !== node
      )
        continue;
      records.data[child * ENTRY_STRIDE + PARENT_ENTRY] = entry;
      records.data[entry * ENTRY_STRIDE + KIDS]++;
      records.data[records.data[child * ENTRY_STRIDE + NODE] * NODE_STRIDE + STALE_COUNT]--;
      this.ownerStale[owner]--;
    }
  }

  private findAliasOf(owner: number, primary: number): number {
    const records = this.records;
    const slots = this.ownerSlots[owner];
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i];
      if (slot <= 0) continue;
      const alias = slotEntry(slot, this.entryMask);
      if (
        records.data[alias * ENTRY_STRIDE + PARENT_ENTRY] === ALIAS &&
        records.data[alias * ENTRY_STRIDE + KIDS] === primary
      )
        return alias;
    }
    return -1;
  }

  /** Drops every entry of one owner. */
  private clearOwner(owner: number): void {
    if (owner >= this.ownerKeys.length || this.ownerKeys[owner] === 0) return;
    const records = this.records;
    const slots = this.ownerSlots[owner];
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i];
      if (slot <= 0) continue;
      const entry = slotEntry(slot, this.entryMask);
      if (records.data[entry * ENTRY_STRIDE + PARENT_ENTRY] === ALIAS) {
        records.freeEntry(entry);
        this.aliasCount--;
        continue;
      }
      // All of this owner's entries go, so parent/child links between them need no upkeep.
      const node = records.data[entry * ENTRY_STRIDE + NODE];
      if (records.data[entry * ENTRY_STRIDE + PARENT_ENTRY] === STALE)
        records.data[node * NODE_STRIDE + STALE_COUNT]--;
      this.unlink(entry, node);
      records.freeEntry(entry);
      if (
        records.data[node * NODE_STRIDE + OWNER_COUNT] === 0 &&
        records.data[node * NODE_STRIDE + CHILD_COUNT] === 0
      )
        this.pruneUpward(node);
    }
    this.entryCount -= this.ownerKeys[owner];
    this.ownerKeys[owner] = 0;
    this.ownerUsed[owner] = 0;
    this.ownerStale[owner] = 0;
    this.ownerSlots[owner] = new Int32Array(MIN_BLOCK_TABLE);
  }

  // ---- owners and results -------------------------------------------------------------------------

  /**
   * intern() behind a small two-way cache keyed by (worker id halves, rank): the OwnerTable's Map
   * lookups hash the bigint on every event. A cached id is used only while the table still maps it to
   * this very pair, so releases and id reuse (also by others sharing the table) are safe.
   */
  private ownerOf(workerId: WorkerId, dpRank: number): number {
    this.wide[0] = workerId;
    const cache = this.ownerCache;
    const slot = hashTriple(dpRank, this.halves[LO], this.halves[HI]) & (OWNER_CACHE - 2);
    const first = cache[slot] - 1;
    if (this.isOwnerOf(first, workerId, dpRank)) return first;
    const second = cache[slot + 1] - 1;
    if (this.isOwnerOf(second, workerId, dpRank)) return second;
    const owner = this.intern(workerId, dpRank);
    cache[slot + 1] = first + 1;
    cache[slot] = owner + 1;
    return owner;
  }

  /** True when `owner` (-1: none) is the live owner id of (workerId, dpRank) and has per-owner state. */
  private isOwnerOf(owner: number, workerId: WorkerId, dpRank: number): boolean {
    const owners = this.owners;
    return (
      owner >= 0 &&
      owner < this.ownerKeys.length &&
      owners.isLive(owner) &&
      owners.rankOf(owner) === dpRank &&
      owners.workerOf(owner) === workerId
    );
  }

  private intern(workerId: WorkerId, dpRank: number): number {
    const owner = this.owners.intern(workerId, dpRank);
    if (owner >= this.ownerKeys.length) this.ensureOwners(Math.max(owner + 1, this.owners.capacity));
    return owner;
  }

  private ensureOwners(count: number): void {
    const capacity = powerOfTwoAtLeast(count, 16);
    if (capacity <= this.ownerKeys.length) return;
    const keys = new Int32Array(capacity);
    keys.set(this.ownerKeys);
    this.ownerKeys = keys;
    const stale = new Int32Array(capacity);
    stale.set(this.ownerStale);
    this.ownerStale = stale;
    const used = new Int32Array(capacity);
    used.set(this.ownerUsed);
    this.ownerUsed = used;
    const mark = new Int32Array(capacity);
    mark.set(this.mark);
    this.mark = mark;
    this.active = new Int32Array(capacity);
    this.scores = new Scores(capacity);
    for (let owner = this.ownerSlots.length; owner < capacity; owner++)
      this.ownerSlots.push(new Int32Array(MIN_BLOCK_TABLE));
  }

  /**
   * Removes from scores[base, count) the owners of `child` (all of them also own its parent, whose
   * owners were emitted there in slice order) and returns the new count. Positions are removed in
   * descending order, so swapping in the last element never moves one still to be removed.
   */
  private takeBackSurvivors(child: number, survivors: number, base: number, count: number): number {
    const data = this.records.data;
    const positions = this.positions;
    const start = data[child * NODE_STRIDE + OWNER_START];
    for (let j = 0; j < survivors; j++) {
      const entry = survivors === 1 ? start : this.slab.entry[start + j];
      const position = base + data[data[entry * ENTRY_STRIDE + PARENT_ENTRY] * ENTRY_STRIDE + POS];
      let k = j;
      while (k > 0 && positions[k - 1] < position) {
        positions[k] = positions[k - 1];
        k--;
      }
      positions[k] = position;
    }
    const owners = this.scores.owners;
    const treeSizes = this.scores.treeSizes;
    for (let j = 0; j < survivors; j++) {
      const position = positions[j];
      count--;
      owners[position] = owners[count];
      treeSizes[position] = treeSizes[count];
    }
    return count;
  }

  private nextStamp(): number {
    if (this.stamp === 0x7fffffff) {
      this.mark.fill(0);
      this.stamp = 0;
    }
    return ++this.stamp;
  }

  // ---- dump helpers -------------------------------------------------------------------------------

  private keyOf(lo: number, hi: number): bigint {
    this.halves[LO] = lo;
    this.halves[HI] = hi;
    return this.wide[0];
  }

  /** Alias keys grouped by primary entry (empty unless an engine reported several hashes per node). */
  private collectAliases(): Map<number, bigint[]> {
    const aliasesOf = new Map<number, bigint[]>();
    if (this.aliasCount === 0) return aliasesOf;
    const records = this.records;
    for (const slots of this.ownerSlots)
      for (let i = 0; i < slots.length; i++) {
        if (slots[i] <= 0) continue;
        const entry = slotEntry(slots[i], this.entryMask);
        if (records.data[entry * ENTRY_STRIDE + PARENT_ENTRY] !== ALIAS) continue;
        const key = this.keyOf(
          records.data[entry * ENTRY_STRIDE + KEY_LO],
          records.data[entry * ENTRY_STRIDE + KEY_HI],
        );
        const list = aliasesOf.get(records.data[entry * ENTRY_STRIDE + KIDS]);
        if (list === undefined) aliasesOf.set(records.data[entry * ENTRY_STRIDE + KIDS], [key]);
        else list.push(key);
      }
    return aliasesOf;
  }

  private keysOf(primary: number, aliasesOf: Map<number, bigint[]>): bigint[] {
    const own = this.keyOf(
      this.records.data[primary * ENTRY_STRIDE + KEY_LO],
      this.records.data[primary * ENTRY_STRIDE + KEY_HI],
    );
    const aliases = aliasesOf.get(primary);
    return aliases === undefined ? [own] : [own, ...aliases];
  }
}

/**
 * Appends `n` owners read from `source` at `start`, all scoring `depth`; returns the new count.
 * Long runs (a prefix many owners hold) are copied and filled natively, which is ~2x faster than an
 * element loop, at the price of one subarray view.
 */
function emitRun(
  source: Int32Array,
  start: number,
  n: number,
  depth: number,
  scores: Scores,
  count: number,
  ownerKeys: Int32Array,
): number {
  const owners = scores.owners;
  const treeSizes = scores.treeSizes;
  const end = count + n;
  if (n >= BULK_RUN) {
    owners.set(source.subarray(start, start + n), count);
    scores.blocks.fill(depth, count, end);
    for (let k = count; k < end; k++) treeSizes[k] = ownerKeys[owners[k]];
    return end;
  }
  const blocks = scores.blocks;
  for (let k = 0; k < n; k++) {
    const owner = source[start + k];
    owners[count + k] = owner;
    treeSizes[count + k] = ownerKeys[owner];
    blocks[count + k] = depth;
  }
  return end;
}

/** A block hash's bucket in repeatsBlockHash's quick pass: the top bits of a multiplicative hash. */
function seenBucket(lo: number, hi: number): number {
  return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> (32 - SEEN_BITS);
}

function minBigint(values: readonly bigint[]): bigint {
  let min = values[0];
  for (const value of values) if (value < min) min = value;
  return min;
}
