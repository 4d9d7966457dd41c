/**
 * Active-sequence load tracking (Dynamo's `sequence.rs`): for every owner (worker, dp_rank) the
 * prefill tokens still to compute and the deduplicated KV blocks held by its in-flight requests.
 *
 * Each owner has its own counters (typed arrays indexed by owner id). A request's blocks are its
 * rolling sequence hashes, so they form a chain from the root, and a hash identifies its whole
 * prefix: the active blocks of an owner are a tree (the union of its requests' chains). Each tree
 * node is one (block, owner) with a parent link, a child count and the number of requests ending
 * there. Hence:
 * - add costs O(log n + new blocks): a binary search finds how much of the chain the owner already
 *   holds, and only the rest is inserted;
 * - free costs O(blocks released): from the request's last block upward while nothing else uses it;
 * - the overlap of a candidate request with every owner's active blocks costs a few binary searches
 *   over the per-block owner counts (which can only shrink along a chain), not one probe per block
 *   per owner.
 * Hashes are packed [lo, hi] u32 pairs; nothing here uses bigint.
 */
import type { Clock } from '../util/clock.ts';
import { realClock } from '../util/clock.ts';
import { U64IntMap } from './u64-int-map.ts';

export interface AddRequestInput {
  /** Prompt tokens this request still has to prefill there: max(0, isl − overlap·bs). */
  readonly prefillTokens: number;
  /**
   * Packed [lo, hi] rolling sequence hashes of the request's blocks (a chain from the first block),
   * deduplicated per owner; null = none.
   */
  readonly blocks?: Uint32Array | null;
  /** How many pairs of `blocks` to use (default: all). */
  readonly blockCount?: number;
  /** Blocks counted without deduplication (no KV reuse assumed, or hashing not done). */
  readonly unsharedBlocks?: number;
  /**
   * Leading blocks of `blocks` the owner already holds, as matchChain reported with no change
   * since; saves searching for it. Absent: searched.
   */
  readonly heldBlocks?: number;
}

interface ActiveRequest {
  readonly owner: number;
  readonly prefillTokens: number;
  prefillDone: boolean;
  /** Tree node of the request's last block, or NONE. */
  readonly leaf: number;
  unshared: number;
  /** Weight of this request's unshared blocks (output-block decay; 1 = full). */
  unsharedWeight: number;
  readonly addedAt: number;
}

export interface ActiveSequencesOptions {
  readonly clock?: Clock;
  /** Requests tracked for longer than this are freed (default 300 s). */
  readonly staleRequestSecs?: number;
}

const NONE = -1;

// Node layout: hash halves, owner, parent node, child count, requests ending here, next node of
// the same hash (another owner), and (valid on the list head) the length of that list.
const LO = 0;
const HI = 1;
const OWNER = 2;
const PARENT = 3;
const CHILDREN = 4;
const ENDS = 5;
const NEXT = 6;
const LENGTH = 7;
const NODE_STRIDE = 8;

export class ActiveSequences {
  private readonly clock: Clock;
  private readonly staleMs: number;
  private nextStaleCheck: number;
  private readonly requests = new Map<string, ActiveRequest>();

  // Per-owner counters.
  private capacity = 0;
  private uniqueBlocks = new Int32Array(0);
  private unsharedBlocks = new Int32Array(0);
  /** Σ (1 − weight) over fractional blocks (output-block decay). */
  private deficit = new Float64Array(0);
  private prefillTokens = new Float64Array(0);
  private requestCounts = new Int32Array(0);
  /** activeBlocks(owner), refreshed on every change, so scoring reads one array. */
  private blockCache = new Float64Array(0);

  // Tree nodes, one per (block, owner), found through the list of their block hash.
  /** Node fields, NODE_STRIDE int32 words per node (one cache line): see LO..LENGTH. */
  private node = new Int32Array(4096 * NODE_STRIDE);
  /** Weight of each node (1 unless output-block decay lowered it); reset to 1 when a node is freed. */
  private nodeWeight = new Float64Array(4096).fill(1);
  private nodeCapacity = 4096;
  /** Per block hash, the head of the list of its nodes (one per owner holding it). */
  private readonly headOf = new U64IntMap(4096);
  private nodeTop = 0;
  private nodeCount = 0;
  private readonly freeNodes: number[] = [];

  // Scratch for potential loads.
  private depthOf = new Int32Array(0);
  private stamp = new Int32Array(0);
  private stampValue = 0;
  private alive = new Int32Array(0);
  private matched = 0;

  constructor(options: ActiveSequencesOptions = {}) {
    this.clock = options.clock ?? realClock;
    this.staleMs = (options.staleRequestSecs ?? 300) * 1000;
    this.nextStaleCheck = this.clock.now() + this.staleCheckInterval();
  }

  /** Makes room for owner ids below `ownerCapacity`. */
  ensureOwners(ownerCapacity: number): void {
    if (ownerCapacity <= this.capacity) return;
    let next = Math.max(8, this.capacity);
    while (next < ownerCapacity) next *= 2;
    this.uniqueBlocks = growInt32(this.uniqueBlocks, next);
    this.unsharedBlocks = growInt32(this.unsharedBlocks, next);
    this.deficit = growFloat64(this.deficit, next);
    this.prefillTokens = growFloat64(this.prefillTokens, next);
    this.requestCounts = growInt32(this.requestCounts, next);
    this.blockCache = growFloat64(this.blockCache, next);
    this.depthOf = growInt32(this.depthOf, next);
    this.stamp = growInt32(this.stamp, next);
    this.alive = growInt32(this.alive, next);
    this.capacity = next;
  }

  get requestCount(): number {
    return this.requests.size;
  }

  has(requestId: string): boolean {
    return this.requests.has(requestId);
  }

  /** The owner a request is tracked on, or -1. */
  ownerOf(requestId: string): number {
    return this.requests.get(requestId)?.owner ?? -1;
  }

  /** Starts tracking a request on an owner. Returns false (and changes nothing) for a known id. */
  add(requestId: string, owner: number, input: AddRequestInput): boolean {
    this.expireStaleIfDue();
    if (this.requests.has(requestId)) return false;
    this.ensureOwners(owner + 1);
    const blocks = input.blocks ?? null;
    const blockCount =
      blocks === null ? 0 : Math.min(input.blockCount ?? blocks.length >>> 1, blocks.length >>> 1);
    const prefill = Math.max(0, input.prefillTokens);
    const unshared = Math.max(0, input.unsharedBlocks ?? 0);
    const leaf = blockCount > 0 ? this.insertChain(blocks!, blockCount, owner, input.heldBlocks) : NONE;
    if (leaf !== NONE) this.node[leaf * NODE_STRIDE + ENDS]++;
    this.requests.set(requestId, {
      owner,
      prefillTokens: prefill,
      prefillDone: false,
      leaf,
      unshared,
      unsharedWeight: 1,
      addedAt: this.clock.now(),
    });
    this.prefillTokens[owner] += prefill;
    this.unsharedBlocks[owner] += unshared;
    this.requestCounts[owner]++;
    this.refresh(owner);
    return true;
  }

  /** The request's prompt is computed: its prefill tokens stop counting. Idempotent. */
  markPrefillCompleted(requestId: string): boolean {
    const request = this.requests.get(requestId);
    if (request === undefined) return false;
    if (!request.prefillDone) {
      request.prefillDone = true;
      const owner = request.owner;
      this.prefillTokens[owner] = Math.max(0, this.prefillTokens[owner] - request.prefillTokens);
    }
    return true;
  }

  /** Stops tracking a request (finished, failed or cancelled). Idempotent. */
  free(requestId: string): boolean {
    const request = this.requests.get(requestId);
    if (request === undefined) return false;
    this.markPrefillCompleted(requestId);
    this.requests.delete(requestId);
    const owner = request.owner;
    if (request.leaf !== NONE) {
      this.node[request.leaf * NODE_STRIDE + ENDS]--;
      this.releaseUpward(request.leaf);
    }
    this.unsharedBlocks[owner] -= request.unshared;
    this.deficit[owner] -= (1 - request.unsharedWeight) * request.unshared;
    if (--this.requestCounts[owner] === 0) {
      // Nothing left on this owner: drop floating-point residue.
      this.prefillTokens[owner] = 0;
      this.deficit[owner] = 0;
    }
    this.refresh(owner);
    return true;
  }

  /**
   * Output tracking (Dynamo's add_output_block): one more generated block, and every block only this
   * request holds now weighs `decay` = max(0, 1 − osl/expected_output_tokens).
   */
  addOutputBlock(requestId: string, decay = 1): boolean {
    const request = this.requests.get(requestId);
    if (request === undefined) return false;
    const weight = Math.min(1, Math.max(0, decay));
    const owner = request.owner;
    this.deficit[owner] +=
      (1 - weight) * (request.unshared + 1) - (1 - request.unsharedWeight) * request.unshared;
    request.unshared++;
    request.unsharedWeight = weight;
    this.unsharedBlocks[owner]++;
    // The request's own blocks: from its last block up, while no other request shares them.
    let node = request.leaf;
    if (
      node !== NONE &&
      this.node[node * NODE_STRIDE + ENDS] === 1 &&
      this.node[node * NODE_STRIDE + CHILDREN] === 0
    ) {
      while (node !== NONE) {
        this.deficit[owner] += this.nodeWeight[node] - weight;
        this.nodeWeight[node] = weight;
        const parent = this.node[node * NODE_STRIDE + PARENT];
        if (
          parent === NONE ||
          this.node[parent * NODE_STRIDE + CHILDREN] !== 1 ||
          this.node[parent * NODE_STRIDE + ENDS] !== 0
        )
          break;
        node = parent;
      }
    }
    this.refresh(owner);
    return true;
  }

  /** Frees every request of an owner (its worker left); returns their ids. */
  removeOwner(owner: number): string[] {
    const freed: string[] = [];
    for (const [id, request] of this.requests) if (request.owner === owner) freed.push(id);
    for (const id of freed) this.free(id);
    if (owner < this.capacity) {
      this.uniqueBlocks[owner] = 0;
      this.unsharedBlocks[owner] = 0;
      this.deficit[owner] = 0;
      this.prefillTokens[owner] = 0;
      this.requestCounts[owner] = 0;
      this.blockCache[owner] = 0;
    }
    return freed;
  }

  /** Frees requests older than the stale limit; returns how many. */
  expireStale(): number {
    const now = this.clock.now();
    this.nextStaleCheck = now + this.staleCheckInterval();
    const cutoff = now - this.staleMs;
    const stale: string[] = [];
    for (const [id, request] of this.requests) {
      if (request.addedAt > cutoff) break; // insertion order is time order
      stale.push(id);
    }
    for (const id of stale) this.free(id);
    return stale.length;
  }

  /** Deduplicated active blocks of an owner (fractional output blocks rounded, as Dynamo). */
  activeBlocks(owner: number): number {
    return owner < this.capacity ? this.blockCache[owner] : 0;
  }

  /** activeBlocks of every owner id below ensureOwners' capacity (read-only view). */
  get blocksByOwner(): Float64Array {
    return this.blockCache;
  }

  /** Active prefill tokens of every owner id below ensureOwners' capacity (read-only view). */
  get prefillByOwner(): Float64Array {
    return this.prefillTokens;
  }

  private refresh(owner: number): void {
    const value = Math.round(this.uniqueBlocks[owner] + this.unsharedBlocks[owner] - this.deficit[owner]);
    this.blockCache[owner] = Math.max(value, 0);
    if (this.prefillTokens[owner] < 0) this.prefillTokens[owner] = 0;
  }

  activePrefillTokens(owner: number): number {
    if (owner >= this.capacity) return 0;
    return Math.max(this.prefillTokens[owner], 0);
  }

  activeRequests(owner: number): number {
    return owner < this.capacity ? this.requestCounts[owner] : 0;
  }

  /**
   * How many leading blocks of the chain each owner holds: entry `owner` of the returned view
   * (0 for owners not holding the first block). Call releaseMatch() once done reading.
   */
  matchChain(hashes: Uint32Array, blockCount: number): Int32Array {
    this.matched = blockCount > 0 ? this.matchDepths(hashes, blockCount) : 0;
    return this.depthOf;
  }

  releaseMatch(): void {
    const depthOf = this.depthOf;
    const alive = this.alive;
    for (let i = 0; i < this.matched; i++) depthOf[alive[i]] = 0;
    this.matched = 0;
  }

  /**
   * Potential decode blocks of a candidate request on each listed owner:
   * `blocks not already active there + unsharedBlocks + that owner's active blocks`.
   * `hashes` is the request's chain of sequence hashes. Writes out[i] for owners[i], i < count.
   */
  potentialDecodeBlocks(
    hashes: Uint32Array | null,
    blockCount: number,
    unsharedBlocks: number,
    owners: Int32Array,
    count: number,
    out: Float64Array,
  ): void {
    const depthOf = hashes !== null ? this.matchChain(hashes, blockCount) : this.depthOf;
    const requestBlocks = (hashes === null ? 0 : blockCount) + unsharedBlocks;
    for (let i = 0; i < count; i++) {
      const owner = owners[i];
      const held = owner < this.capacity ? depthOf[owner] : 0;
      out[i] = requestBlocks - held + this.activeBlocks(owner);
    }
    this.releaseMatch();
  }

  /** Number of tree nodes (distinct (block, owner) pairs held). */
  get nodes(): number {
    return this.nodeCount;
  }

  /** Approximate bytes held by the block structures. */
  get bytes(): number {
    return this.headOf.bytes + this.node.byteLength + this.nodeWeight.byteLength;
  }

  // ---- internals ------------------------------------------------------------------------------

  /**
   * Sets depthOf[owner] = how many leading blocks of the chain the owner holds, for every owner
   * holding at least the first one. Owners holding block i are a subset of those holding block
   * i − 1, so the owner count along the chain only shrinks: binary searches find where it drops,
   * and only there is a list of owners walked. Returns how many owners were set; they are listed
   * in this.alive[0..n) (the caller resets their depth).
   */
  private matchDepths(hashes: Uint32Array, n: number): number {
    const firstHead = this.headOf.get(hashes[0], hashes[1]);
    if (firstHead === NONE) return 0;
    const alive = this.alive;
    const depthOf = this.depthOf;
    let aliveCount = 0;
    for (let node = firstHead; node !== NONE; node = this.node[node * NODE_STRIDE + NEXT])
      alive[aliveCount++] = this.node[node * NODE_STRIDE + OWNER];
    const total = aliveCount;
    let from = 0;
    let countAt = aliveCount;
    // Invariant: the `aliveCount` owners in alive[0..aliveCount) hold blocks 0..from.
    for (;;) {
      // Last index whose owner count still equals countAt (counts never grow along the chain).
      let low = from;
      let high = n - 1;
      while (low < high) {
        const mid = (low + high + 1) >>> 1;
        if (this.ownerCount(hashes, mid) === countAt) low = mid;
        else high = mid - 1;
      }
      const end = low + 1; // the alive owners hold exactly blocks 0..low
      if (end === n) {
        for (let i = 0; i < aliveCount; i++) depthOf[alive[i]] = n;
        return total;
      }
      // Some owners stop at `end`: mark who holds block `end`, the others end there.
      const head = this.headOf.get(hashes[2 * end], hashes[2 * end + 1]);
      const stamp = ++this.stampValue;
      let stillCount = 0;
      for (let node = head; node !== NONE; node = this.node[node * NODE_STRIDE + NEXT]) {
        this.stamp[this.node[node * NODE_STRIDE + OWNER]] = stamp;
        stillCount++;
      }
      // Partition alive[0..aliveCount): holders first, stopped owners after (keeping all in alive).
      let write = 0;
      for (let i = 0; i < aliveCount; i++) {
        const owner = alive[i];
        if (this.stamp[owner] === stamp) {
          alive[i] = alive[write];
          alive[write++] = owner;
        } else {
          depthOf[owner] = end;
        }
      }
      aliveCount = write;
      if (aliveCount === 0 || stillCount === 0) return total;
      from = end;
      countAt = stillCount;
    }
  }

  private ownerCount(hashes: Uint32Array, index: number): number {
    const head = this.headOf.get(hashes[2 * index], hashes[2 * index + 1]);
    return head === NONE ? 0 : this.node[head * NODE_STRIDE + LENGTH];
  }

  /** The owner's node for a block hash, or NONE (walks the block's list: one node per owner). */
  private findNode(lo: number, hi: number, owner: number): number {
    let node = this.headOf.get(lo, hi);
    while (node !== NONE && this.node[node * NODE_STRIDE + OWNER] !== owner)
      node = this.node[node * NODE_STRIDE + NEXT];
    return node;
  }

  /**
   * Inserts the part of the chain the owner does not hold yet; returns the node of its last block.
   * Relies on the chain property (a block's hash identifies its whole prefix): if the owner does not
   * hold block `held`, it holds no later block of the chain either, so those are created unchecked.
   */
  private insertChain(hashes: Uint32Array, n: number, owner: number, held: number | undefined): number {
    // Longest held prefix: holding block i implies holding every block before it.
    let low = held === undefined ? 0 : Math.min(Math.max(0, held), n);
    let high = held === undefined ? n : low;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.findNode(hashes[2 * mid], hashes[2 * mid + 1], owner) !== NONE) low = mid + 1;
      else high = mid;
    }
    let parent = low > 0 ? this.findNode(hashes[2 * low - 2], hashes[2 * low - 1], owner) : NONE;
    // A held first "new" block means the input is not a rolling-hash chain (or `held` was stale):
    // keep the consistent part rather than corrupt the tree.
    if (low < n && this.findNode(hashes[2 * low], hashes[2 * low + 1], owner) !== NONE) return parent;
    for (let i = low; i < n; i++) parent = this.createNode(hashes[2 * i], hashes[2 * i + 1], owner, parent);
    return parent;
  }

  private createNode(lo: number, hi: number, owner: number, parent: number): number {
    const node = this.peekNode();
    this.takeNode(node);
    this.uniqueBlocks[owner]++;
    this.nodeCount++;
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    const head = this.headOf.exchange(lo, hi, node);
    nodes[at + LO] = lo;
    nodes[at + HI] = hi;
    nodes[at + OWNER] = owner;
    nodes[at + PARENT] = parent;
    nodes[at + CHILDREN] = 0;
    nodes[at + ENDS] = 0;
    nodes[at + NEXT] = head;
    nodes[at + LENGTH] = head === NONE ? 1 : nodes[head * NODE_STRIDE + LENGTH] + 1;
    if (parent !== NONE) nodes[parent * NODE_STRIDE + CHILDREN]++;
    return node;
  }

  /** Removes nodes from `node` upward while no request ends at or passes through them. */
  private releaseUpward(node: number): void {
    const nodes = this.node;
    while (
      node !== NONE &&
      nodes[node * NODE_STRIDE + ENDS] === 0 &&
      nodes[node * NODE_STRIDE + CHILDREN] === 0
    ) {
      const parent = nodes[node * NODE_STRIDE + PARENT];
      this.removeNode(node);
      if (parent !== NONE) nodes[parent * NODE_STRIDE + CHILDREN]--;
      node = parent;
    }
  }

  private removeNode(node: number): void {
    const nodes = this.node;
    const at = node * NODE_STRIDE;
    const lo = nodes[at + LO];
    const hi = nodes[at + HI];
    const owner = nodes[at + OWNER];
    const next = nodes[at + NEXT];
    this.nodeCount--;
    const head = this.headOf.get(lo, hi);
    if (head === node) {
      if (next === NONE) this.headOf.delete(lo, hi);
      else {
        nodes[next * NODE_STRIDE + LENGTH] = nodes[at + LENGTH] - 1;
        this.headOf.set(lo, hi, next);
      }
    } else {
      // Singly linked: find the predecessor (lists hold one node per owner caching this block).
      let previous = head;
      while (nodes[previous * NODE_STRIDE + NEXT] !== node) previous = nodes[previous * NODE_STRIDE + NEXT];
      nodes[previous * NODE_STRIDE + NEXT] = next;
      nodes[head * NODE_STRIDE + LENGTH]--;
    }
    this.uniqueBlocks[owner]--;
    const weight = this.nodeWeight[node];
    if (weight !== 1) {
      this.deficit[owner] -= 1 - weight;
      this.nodeWeight[node] = 1;
    }
    this.freeNodes.push(node);
  }

  /** The node id the next allocation returns (growing the arrays when full). */
  private peekNode(): number {
    if (this.freeNodes.length > 0) return this.freeNodes[this.freeNodes.length - 1];
    if (this.nodeTop === this.nodeCapacity) {
      this.nodeCapacity *= 2;
      this.node = growInt32(this.node, this.nodeCapacity * NODE_STRIDE);
      this.nodeWeight = growFloat64(this.nodeWeight, this.nodeCapacity);
      this.nodeWeight.fill(1, this.nodeTop);
    }
    return this.nodeTop;
  }

  private takeNode(node: number): void {
    if (this.freeNodes.length > 0) this.freeNodes.pop();
    else this.nodeTop = node + 1;
  }

  private staleCheckInterval(): number {
    return Math.min(this.staleMs, 1000);
  }

  private expireStaleIfDue(): void {
    if (this.clock.now() >= this.nextStaleCheck) this.expireStale();
  }
}

function growInt32(array: Int32Array, length: number): Int32Array<ArrayBuffer> {
  const next = new Int32Array(length);
  next.set(array);
  return next;
}

function growFloat64(array: Float64Array, length: number): Float64Array<ArrayBuffer> {
  const next = new Float64Array(length);
  next.set(array);
  return next;
}
