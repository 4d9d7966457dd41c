/**
 * The blocks of in-flight requests, for every owner at once: one compressed trie (radix tree) of
 * packed [lo, hi] block hashes shared by all owners. A node is a run of consecutive blocks that every
 * request passing through it shares; it carries the set of owners with a request through it and, per
 * owner, how many (plus a decay weight for output-block tracking). A request's blocks are the path
 * from the root to its leaf node.
 *
 * Costs, with n = request blocks and s = nodes on its path (a few: paths only split where in-flight
 * requests diverge):
 * - match (every owner's held prefix of a request, for scoring): s child probes, a binary search
 *   per node (sequence hashes are rolling: a block that matches implies its whole prefix does) and
 *   the owner sets along the path;
 * - insert: the same walk, then s owner-count updates, at most one split and one new node holding
 *   the new blocks (copied in one go);
 * - release: s owner-count updates, then removal / merging of the nodes nobody uses any more.
 * Children are found in one open-addressing table keyed by (first block hash, parent node). A block
 * list that is not a rolling-hash chain is still tracked consistently (every request releases exactly
 * what it added), only its overlap counts may be off. Owner entries of a node sit
 * contiguously in a slab (size classes of 2^k), found through a (node, owner) table.
 * No bigint, no per-block or per-owner allocation; typed arrays grow by doubling.
 */
import { U64IntMap } from './u64-int-map.ts';

const NONE = -1;
/** The root holds no blocks; its children start every path. */
const ROOT = 0;

// Node fields (NODE_STRIDE int32 words per node).
const PARENT = 0;
/** Depth of the node's first block (blocks above it on the path). */
const START = 1;
/** Blocks in the node; -1 marks a free node id. */
const LENGTH = 2;
/** Word offset of the node's [lo, hi] pairs in the arena. */
const OFFSET = 3;
const CHILDREN = 4;
/** Requests whose last block is the node's last block. */
const ENDS = 5;
/** XOR of the children's ids: the child itself when there is exactly one. */
const CHILD_XOR = 6;
/** 1 once some owner entry got a weight below 1 (such nodes are not merged). */
const DECAYED = 7;
const SET_BASE = 8;
const SET_SIZE = 9;
const SET_CLASS = 10;
const NODE_STRIDE = 12;
/** Owner sets up to this size are scanned instead of looked up in slotOf. */
const SCAN_SET = 8;

export class ActiveBlockTrie {
  /** Distinct blocks held per owner. */
  blocksOf = new Int32Array(0);
  /** Σ (1 − weight) × blocks over the owner's decayed entries. */
  deficitOf = new Float64Array(0);
  private ownerCapacity = 0;
  private pairs = 0;

  private node = new Int32Array(1024 * NODE_STRIDE);
  private nodeCapacity = 1024;
  private nodeTop = 1; // node 0 is the root
  private freeNodes = new Int32Array(256);
  private freeNodeCount = 0;
  private readonly children = new U64IntMap(1024);

  private arena = new Uint32Array(1 << 16);
  private arenaTop = 0;
  private arenaLive = 0;

  private setOwner = new Int32Array(4096);
  private setCount = new Int32Array(4096);
  private setWeight = new Float64Array(4096).fill(1);
  private slabTop = 0;
  private readonly freeSets: number[][] = [];
  private readonly slotOf = new U64IntMap(4096);

  // Walk scratch: the path of the last walk() and how many blocks of each node matched.
  private path = new Int32Array(64);
  private used = new Int32Array(64);
  /**
   * The query of the last match() while its path is still valid (nothing changed since): an insert
   * of the same chain right after reuses the path instead of walking again.
   */
  private walkedHashes: Uint32Array | null = null;
  private walkedCount = 0;
  private walkedSteps = 0;

  constructor() {
    this.node[ROOT * NODE_STRIDE + PARENT] = NONE;
    this.node[ROOT * NODE_STRIDE + LENGTH] = 0;
  }

  /** Makes room for owner ids below `capacity`. */
  ensureOwners(capacity: number): void {
    if (capacity <= this.ownerCapacity) return;
    let next = Math.max(8, this.ownerCapacity);
    while (next < capacity) next *= 2;
    const blocks = new Int32Array(next);
    blocks.set(this.blocksOf);
    this.blocksOf = blocks;
    const deficit = new Float64Array(next);
    deficit.set(this.deficitOf);
    this.deficitOf = deficit;
    this.ownerCapacity = next;
  }

  /** Distinct (block, owner) pairs held. */
  get pairCount(): number {
    return this.pairs;
  }

  get bytes(): number {
    return (
      this.node.byteLength +
      this.freeNodes.byteLength +
      this.children.bytes +
      this.arena.byteLength +
      this.setOwner.byteLength +
      this.setCount.byteLength +
      this.setWeight.byteLength +
      this.slotOf.bytes
    );
  }

  /**
   * For every owner holding at least the first block of `hashes[0..n)`: depthOf[owner] = how many
   * leading blocks it holds. Those owners are listed in alive[0..returned count); the caller resets
   * their depthOf entries. Both arrays must cover every owner id.
   */
  match(hashes: Uint32Array, n: number, depthOf: Int32Array, alive: Int32Array): number {
    const steps = this.walk(hashes, n);
    this.walkedHashes = hashes;
    this.walkedCount = n;
    this.walkedSteps = steps;
    if (steps === 0) return 0;
    const nodes = this.node;
    const owners = this.setOwner;
    // Owner sets only shrink along a path: the first node lists every owner involved.
    let at = this.path[0] * NODE_STRIDE;
    let base = nodes[at + SET_BASE];
    let size = nodes[at + SET_SIZE];
    let depth = nodes[at + START] + this.used[0];
    for (let k = 0; k < size; k++) {
      const owner = owners[base + k];
      alive[k] = owner;
      depthOf[owner] = depth;
    }
    const aliveCount = size;
    for (let s = 1; s < steps; s++) {
      at = this.path[s] * NODE_STRIDE;
      base = nodes[at + SET_BASE];
      size = nodes[at + SET_SIZE];
      depth = nodes[at + START] + this.used[s];
      for (let k = 0; k < size; k++) depthOf[owners[base + k]] = depth;
    }
    return aliveCount;
  }

  /**
   * Adds one request of `owner` with blocks `hashes[0..n)` (n ≥ 1); returns its leaf node (pass it
   * to release). Blocks the owner did not hold yet are counted in blocksOf.
   */
  insert(hashes: Uint32Array, n: number, owner: number): number {
    const steps =
      hashes === this.walkedHashes && n === this.walkedCount ? this.walkedSteps : this.walk(hashes, n);
    this.walkedHashes = null;
    let parent = ROOT;
    let depth = 0;
    for (let s = 0; s < steps; s++) {
      let node = this.path[s];
      const used = this.used[s];
      if (used < this.node[node * NODE_STRIDE + LENGTH]) node = this.split(node, used);
      this.addOwner(node, owner);
      parent = node;
      depth += used;
    }
    if (depth < n) {
      parent = this.createNode(parent, hashes, depth, n);
      this.addOwner(parent, owner);
    }
    this.node[parent * NODE_STRIDE + ENDS]++;
    return parent;
  }

  /** Ends one request of `owner` whose leaf is `leaf`; nodes nobody uses any more are freed. */
  release(leaf: number, owner: number): void {
    this.walkedHashes = null;
    const nodes = this.node;
    nodes[leaf * NODE_STRIDE + ENDS]--;
    for (let node = leaf; node !== ROOT; node = nodes[node * NODE_STRIDE + PARENT]) {
      const position = this.positionOf(node, owner);
      if (position < 0) continue; // unreachable while the trie is consistent
      const slot = nodes[node * NODE_STRIDE + SET_BASE] + position;
      if (--this.setCount[slot] === 0) this.removeOwner(node, owner, position);
    }
    let node = leaf;
    while (node !== ROOT) {
      const at = node * NODE_STRIDE;
      if (nodes[at + SET_SIZE] !== 0 || nodes[at + CHILDREN] !== 0 || nodes[at + ENDS] !== 0) {
        this.mergeWithChild(node);
        return;
      }
      const parent = nodes[at + PARENT];
      this.deleteNode(node);
      node = parent;
    }
  }

  /**
   * Output-block decay: from `leaf` upward, while `owner` has exactly one request through a node
   * (the one ending at `leaf`), that node's blocks weigh `weight` for the owner.
   */
  decay(leaf: number, owner: number, weight: number): void {
    this.walkedHashes = null;
    const nodes = this.node;
    for (let node = leaf; node !== ROOT; node = nodes[node * NODE_STRIDE + PARENT]) {
      const position = this.positionOf(node, owner);
      if (position < 0) return;
      const at = node * NODE_STRIDE;
      const slot = nodes[at + SET_BASE] + position;
      if (this.setCount[slot] !== 1) return;
      this.deficitOf[owner] += (this.setWeight[slot] - weight) * nodes[at + LENGTH];
      this.setWeight[slot] = weight;
      if (weight !== 1) nodes[at + DECAYED] = 1;
    }
  }

  /**
   * Forgets the path of the last match(): call when the hashes it walked may change (the next
   * insert of that array then walks again).
   */
  forgetWalk(): void {
    this.walkedHashes = null;
  }

  // ---- internals ------------------------------------------------------------------------------

  /**
   * Follows hashes[0..n) from the root; path[0..steps) are the nodes reached and used[s] how many
   * of node s's blocks match (only the last one can match partially). Returns steps.
   */
  private walk(hashes: Uint32Array, n: number): number {
    const nodes = this.node;
    const arena = this.arena;
    let parent = ROOT;
    let depth = 0;
    let steps = 0;
    while (depth < n) {
      const child = this.children.get(hashes[2 * depth], hashes[2 * depth + 1], parent);
      if (child < 0) break;
      const at = child * NODE_STRIDE;
      const length = nodes[at + LENGTH];
      const limit = Math.min(length, n - depth);
      // The first block matched through the table key. Sequence hashes are rolling, so a matching
      // block implies a matching prefix: check the last block, else binary-search the first miss.
      const offset = nodes[at + OFFSET] - 2 * depth;
      let j = limit;
      if (limit > 1 && !sameBlock(arena, hashes, offset, depth + limit - 1)) {
        let low = 1;
        let high = limit - 1; // known to differ
        while (low < high) {
          const mid = (low + high) >>> 1;
          if (sameBlock(arena, hashes, offset, depth + mid)) low = mid + 1;
          else high = mid;
        }
        j = low;
      }
      if (steps === this.path.length) this.growPath();
      this.path[steps] = child;
      this.used[steps] = j;
      steps++;
      depth += j;
      if (j < length) break;
      parent = child;
    }
    return steps;
  }

  /**
   * The owner's position in the node's set, or -1: a scan of a small set (one cache line, no probe
   * into the large (node, owner) table), else the table. Both give the same answer.
   */
  private positionOf(node: number, owner: number): number {
    const at = node * NODE_STRIDE;
    const size = this.node[at + SET_SIZE];
    if (size <= SCAN_SET) {
      const base = this.node[at + SET_BASE];
      const owners = this.setOwner;
      for (let k = 0; k < size; k++) if (owners[base + k] === owner) return k;
      return -1;
    }
    return this.slotOf.get(node, owner);
  }

  private growPath(): void {
    const path = new Int32Array(this.path.length * 2);
    path.set(this.path);
    this.path = path;
    const used = new Int32Array(this.used.length * 2);
    used.set(this.used);
    this.used = used;
  }

  /** Adds one request of `owner` to the node's set (a new entry counts the node's blocks). */
  private addOwner(node: number, owner: number): void {
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    const position = this.positionOf(node, owner);
    if (position >= 0) {
      this.setCount[nodes[at + SET_BASE] + position]++;
      return;
    }
    let size = nodes[at + SET_SIZE];
    if (size === 1 << nodes[at + SET_CLASS]) this.growSet(node);
    const slot = nodes[at + SET_BASE] + size;
    this.setOwner[slot] = owner;
    this.setCount[slot] = 1;
    this.setWeight[slot] = 1;
    this.slotOf.set(node, owner, size);
    nodes[at + SET_SIZE] = ++size;
    const length = nodes[at + LENGTH];
    this.blocksOf[owner] += length;
    this.pairs += length;
  }

  /** Drops the owner's entry at `position` (count 0) from the node's set. */
  private removeOwner(node: number, owner: number, position: number): void {
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    const base = nodes[at + SET_BASE];
    const length = nodes[at + LENGTH];
    const weight = this.setWeight[base + position];
    this.blocksOf[owner] -= length;
    if (weight !== 1) this.deficitOf[owner] -= (1 - weight) * length;
    this.pairs -= length;
    const last = nodes[at + SET_SIZE] - 1;
    if (position !== last) {
      const moved = this.setOwner[base + last];
      this.setOwner[base + position] = moved;
      this.setCount[base + position] = this.setCount[base + last];
      this.setWeight[base + position] = this.setWeight[base + last];
      this.slotOf.set(node, moved, position);
    }
    this.setWeight[base + last] = 1;
    nodes[at + SET_SIZE] = last;
    this.slotOf.delete(node, owner);
  }

  /** Cuts `node` after its first `length` blocks: returns the new node holding them (node keeps the rest). */
  private split(node: number, length: number): number {
    const top = this.allocNode();
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    const to = top * NODE_STRIDE;
    const parent = nodes[at + PARENT];
    const offset = nodes[at + OFFSET];
    nodes[to + PARENT] = parent;
    nodes[to + START] = nodes[at + START];
    nodes[to + LENGTH] = length;
    nodes[to + OFFSET] = offset;
    nodes[to + CHILDREN] = 1;
    nodes[to + ENDS] = 0;
    nodes[to + CHILD_XOR] = node;
    nodes[to + DECAYED] = nodes[at + DECAYED];
    nodes[at + PARENT] = top;
    nodes[at + START] += length;
    nodes[at + LENGTH] -= length;
    nodes[at + OFFSET] = offset + 2 * length;
    nodes[parent * NODE_STRIDE + CHILD_XOR] ^= node ^ top;
    const arena = this.arena;
    this.children.set(arena[offset], arena[offset + 1], top, parent);
    this.children.set(arena[offset + 2 * length], arena[offset + 2 * length + 1], node, top);
    // Same requests pass through both halves: copy the owner set.
    const size = nodes[at + SET_SIZE];
    const sizeClass = nodes[at + SET_CLASS];
    const base = this.allocSet(sizeClass);
    const from = this.node[at + SET_BASE];
    this.node[to + SET_BASE] = base;
    this.node[to + SET_SIZE] = size;
    this.node[to + SET_CLASS] = sizeClass;
    this.setOwner.copyWithin(base, from, from + size);
    this.setCount.copyWithin(base, from, from + size);
    this.setWeight.copyWithin(base, from, from + size);
    for (let k = 0; k < size; k++) this.slotOf.set(top, this.setOwner[base + k], k);
    return top;
  }

  /** A child of `parent` holding hashes[from..to). */
  private createNode(parent: number, hashes: Uint32Array, from: number, to: number): number {
    const length = to - from;
    const offset = this.allocArena(2 * length);
    const arena = this.arena;
    for (let w = 2 * from, a = offset; w < 2 * to; w++, a++) arena[a] = hashes[w];
    const node = this.allocNode();
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    nodes[at + PARENT] = parent;
    nodes[at + START] = from;
    nodes[at + LENGTH] = length;
    nodes[at + OFFSET] = offset;
    nodes[at + CHILDREN] = 0;
    nodes[at + ENDS] = 0;
    nodes[at + CHILD_XOR] = 0;
    nodes[at + DECAYED] = 0;
    nodes[at + SET_BASE] = this.allocSet(1);
    nodes[at + SET_SIZE] = 0;
    nodes[at + SET_CLASS] = 1;
    const p = parent * NODE_STRIDE;
    nodes[p + CHILDREN]++;
    nodes[p + CHILD_XOR] ^= node;
    this.children.set(hashes[2 * from], hashes[2 * from + 1], node, parent);
    return node;
  }

  /** Removes an unused leaf node (no owners, children or ends). */
  private deleteNode(node: number): void {
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    const parent = nodes[at + PARENT];
    const offset = nodes[at + OFFSET];
    this.children.delete(this.arena[offset], this.arena[offset + 1], parent);
    const p = parent * NODE_STRIDE;
    nodes[p + CHILDREN]--;
    nodes[p + CHILD_XOR] ^= node;
    this.arenaLive -= 2 * nodes[at + LENGTH];
    this.freeSet(nodes[at + SET_BASE], nodes[at + SET_CLASS]);
    this.freeNode(node);
  }

  /**
   * Joins a node with its only child when no request ends at the node (then the same requests pass
   * through both, so their owner sets are equal). The child's id survives (requests ending there and
   * its children's table keys stay valid). Keeps paths as short as the divergences in flight.
   */
  private mergeWithChild(node: number): void {
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    if (node === ROOT || nodes[at + CHILDREN] !== 1 || nodes[at + ENDS] !== 0) return;
    const child = nodes[at + CHILD_XOR];
    const c = child * NODE_STRIDE;
    if (nodes[at + DECAYED] !== 0 || nodes[c + DECAYED] !== 0) return; // weights may differ per block
    const parent = nodes[at + PARENT];
    const length = nodes[at + LENGTH];
    const childLength = nodes[c + LENGTH];
    let offset = nodes[at + OFFSET];
    const arena = this.arena;
    this.children.delete(arena[nodes[c + OFFSET]], arena[nodes[c + OFFSET] + 1], node);
    this.children.set(arena[offset], arena[offset + 1], child, parent);
    if (offset + 2 * length !== nodes[c + OFFSET]) {
      // Not adjacent in the arena: copy both runs to a fresh place.
      const total = 2 * (length + childLength);
      const fresh = this.allocArena(total);
      offset = nodes[at + OFFSET]; // allocArena may have compacted
      const childOffset = nodes[c + OFFSET];
      this.arena.copyWithin(fresh, offset, offset + 2 * length);
      this.arena.copyWithin(fresh + 2 * length, childOffset, childOffset + 2 * childLength);
      this.arenaLive -= total;
      offset = fresh;
    }
    nodes[c + OFFSET] = offset;
    nodes[c + START] = nodes[at + START];
    nodes[c + LENGTH] = length + childLength;
    nodes[c + PARENT] = parent;
    nodes[parent * NODE_STRIDE + CHILD_XOR] ^= node ^ child;
    const base = nodes[at + SET_BASE];
    const size = nodes[at + SET_SIZE];
    for (let k = 0; k < size; k++) this.slotOf.delete(node, this.setOwner[base + k]);
    for (let k = 0; k < size; k++) this.setWeight[base + k] = 1;
    this.freeSet(base, nodes[at + SET_CLASS]);
    this.freeNode(node);
  }

  private allocNode(): number {
    let node: number;
    if (this.freeNodeCount > 0) node = this.freeNodes[--this.freeNodeCount];
    else {
      if (this.nodeTop === this.nodeCapacity) {
        this.nodeCapacity *= 2;
        const grown = new Int32Array(this.nodeCapacity * NODE_STRIDE);
        grown.set(this.node);
        this.node = grown;
      }
      node = this.nodeTop++;
    }
    return node;
  }

  private freeNode(node: number): void {
    this.node[node * NODE_STRIDE + LENGTH] = -1;
    if (this.freeNodeCount === this.freeNodes.length) {
      const grown = new Int32Array(this.freeNodes.length * 2);
      grown.set(this.freeNodes);
      this.freeNodes = grown;
    }
    this.freeNodes[this.freeNodeCount++] = node;
  }

  /** Reserves `words` arena words (compacting or growing when the end is reached). */
  private allocArena(words: number): number {
    if (this.arenaTop + words > this.arena.length) {
      if (2 * (this.arenaLive + words) <= this.arena.length) this.compactArena(this.arena.length);
      else {
        let capacity = this.arena.length * 2;
        while (capacity < 2 * (this.arenaLive + words)) capacity *= 2;
        this.compactArena(capacity);
      }
    }
    const offset = this.arenaTop;
    this.arenaTop += words;
    this.arenaLive += words;
    return offset;
  }

  /** Copies every live node's run into a fresh arena of `capacity` words. */
  private compactArena(capacity: number): void {
    const old = this.arena;
    const next = new Uint32Array(capacity);
    const nodes = this.node;
    let top = 0;
    for (let node = 1; node < this.nodeTop; node++) {
      const at = node * NODE_STRIDE;
      const length = nodes[at + LENGTH];
      if (length < 0) continue;
      const offset = nodes[at + OFFSET];
      next.set(old.subarray(offset, offset + 2 * length), top);
      nodes[at + OFFSET] = top;
      top += 2 * length;
    }
    this.arena = next;
    this.arenaTop = top;
    this.arenaLive = top;
  }

  /** A slab run of 2^sizeClass entries. */
  private allocSet(sizeClass: number): number {
    const free = this.freeSets[sizeClass];
    if (free !== undefined && free.length > 0) return free.pop()!;
    const size = 1 << sizeClass;
    if (this.slabTop + size > this.setOwner.length) {
      let capacity = this.setOwner.length * 2;
      while (capacity < this.slabTop + size) capacity *= 2;
      const owners = new Int32Array(capacity);
      owners.set(this.setOwner);
      this.setOwner = owners;
      const counts = new Int32Array(capacity);
      counts.set(this.setCount);
      this.setCount = counts;
      const weights = new Float64Array(capacity).fill(1);
      weights.set(this.setWeight);
      this.setWeight = weights;
    }
    const base = this.slabTop;
    this.slabTop += size;
    return base;
  }

  private freeSet(base: number, sizeClass: number): void {
    while (this.freeSets.length <= sizeClass) this.freeSets.push([]);
    this.freeSets[sizeClass].push(base);
  }

  /** Moves a full owner set to a run twice as large. */
  private growSet(node: number): void {
    const at = node * NODE_STRIDE;
    const sizeClass = this.node[at + SET_CLASS];
    const base = this.allocSet(sizeClass + 1);
    const from = this.node[at + SET_BASE];
    const size = this.node[at + SET_SIZE];
    this.setOwner.copyWithin(base, from, from + size);
    this.setCount.copyWithin(base, from, from + size);
    this.setWeight.copyWithin(base, from, from + size);
    this.setWeight.fill(1, from, from + size);
    this.freeSet(from, sizeClass);
    this.node[at + SET_BASE] = base;
    this.node[at + SET_CLASS] = sizeClass + 1;
  }
}

/** Whether query block `i` equals the arena pair at word `offset + 2i`. */
function sameBlock(arena: Uint32Array, hashes: Uint32Array, offset: number, i: number): boolean {
  const a = offset + 2 * i;
  return arena[a] === hashes[2 * i] && arena[a + 1] === hashes[2 * i + 1];
}
