/**
 * Active-sequence load tracking (Dynamo's `sequence.rs`): for every owner (worker, dp_rank) the
 * prefill tokens still to compute and the deduplicated KV blocks held by its in-flight requests.
 *
 * Per-owner counters live in typed arrays indexed by owner id. The blocks themselves are in one
 * ActiveBlockTrie shared by all owners (a compressed trie of the requests' packed [lo, hi] sequence
 * hashes, each node carrying the owners with a request through it), so:
 * - add and free cost one walk of the request's path (a few nodes) plus, on add, one copy of the
 *   blocks no in-flight request had yet;
 * - the overlap of a candidate request with every owner's active blocks is one walk too, whatever
 *   the number of owners (only owners holding the first block are touched).
 * Nothing here uses bigint.
 */
import type { Clock } from '../util/clock.ts';
import { realClock } from '../util/clock.ts';
import { ActiveBlockTrie } from './active-trie.ts';

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
}

interface ActiveRequest {
  readonly owner: number;
  readonly prefillTokens: number;
  prefillDone: boolean;
  /** Trie node of the request's last block, or NONE. */
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

export class ActiveSequences {
  private readonly clock: Clock;
  private readonly staleMs: number;
  private nextStaleCheck: number;
  private readonly requests = new Map<string, ActiveRequest>();

  // Per-owner counters.
  private capacity = 0;
  private unsharedBlocks = new Int32Array(0);
  /** Σ (1 − weight) over fractional unshared blocks (output-block decay). */
  private deficit = new Float64Array(0);
  private prefillTokens = new Float64Array(0);
  private requestCounts = new Int32Array(0);
  /** activeBlocks(owner), refreshed on every change, so scoring reads one array. */
  private blockCache = new Float64Array(0);

  private readonly trie = new ActiveBlockTrie();

  /** Owners whose load changed since the last clearChanged(), each listed once. */
  private changed = new Int32Array(0);
  private changedCount = 0;
  private isChanged = new Uint8Array(0);

  // Scratch for potential loads.
  private depthOf = new Int32Array(0);
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
    this.unsharedBlocks = growInt32(this.unsharedBlocks, next);
    this.deficit = growFloat64(this.deficit, next);
    this.prefillTokens = growFloat64(this.prefillTokens, next);
    this.requestCounts = growInt32(this.requestCounts, next);
    this.blockCache = growFloat64(this.blockCache, next);
    this.depthOf = growInt32(this.depthOf, next);
    this.alive = growInt32(this.alive, next);
    this.changed = growInt32(this.changed, next);
    const isChanged = new Uint8Array(next);
    isChanged.set(this.isChanged);
    this.isChanged = isChanged;
    this.trie.ensureOwners(next);
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
    const now = this.clock.now();
    if (now >= this.nextStaleCheck) this.expireStale();
    if (this.requests.has(requestId)) return false;
    this.ensureOwners(owner + 1);
    const blocks = input.blocks ?? null;
    const blockCount =
      blocks === null ? 0 : Math.min(input.blockCount ?? blocks.length >>> 1, blocks.length >>> 1);
    const prefill = Math.max(0, input.prefillTokens);
    const unshared = Math.max(0, input.unsharedBlocks ?? 0);
    const leaf = blockCount > 0 ? this.trie.insert(blocks!, blockCount, owner) : NONE;
    this.requests.set(requestId, {
      owner,
      prefillTokens: prefill,
      prefillDone: false,
      leaf,
      unshared,
      unsharedWeight: 1,
      addedAt: now,
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
    this.completePrefill(request);
    return true;
  }

  private completePrefill(request: ActiveRequest): void {
    if (request.prefillDone) return;
    request.prefillDone = true;
    const owner = request.owner;
    this.noteChange(owner);
    this.prefillTokens[owner] = Math.max(0, this.prefillTokens[owner] - request.prefillTokens);
  }

  /** Stops tracking a request (finished, failed or cancelled). Idempotent. */
  free(requestId: string): boolean {
    const request = this.requests.get(requestId);
    if (request === undefined) return false;
    this.completePrefill(request);
    this.requests.delete(requestId);
    const owner = request.owner;
    if (request.leaf !== NONE) this.trie.release(request.leaf, owner);
    this.unsharedBlocks[owner] -= request.unshared;
    this.deficit[owner] -= (1 - request.unsharedWeight) * request.unshared;
    if (--this.requestCounts[owner] === 0) {
      // Nothing left on this owner: drop floating-point residue.
      this.prefillTokens[owner] = 0;
      this.deficit[owner] = 0;
      this.trie.deficitOf[owner] = 0;
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
    if (request.leaf !== NONE) this.trie.decay(request.leaf, owner, weight);
    this.refresh(owner);
    return true;
  }

  /** Frees every request of an owner (its worker left); returns their ids. */
  removeOwner(owner: number): string[] {
    const freed: string[] = [];
    for (const [id, request] of this.requests) if (request.owner === owner) freed.push(id);
    for (const id of freed) this.free(id);
    if (owner < this.capacity) {
      this.unsharedBlocks[owner] = 0;
      this.deficit[owner] = 0;
      this.trie.deficitOf[owner] = 0;
      this.prefillTokens[owner] = 0;
      this.requestCounts[owner] = 0;
      this.blockCache[owner] = 0;
      this.noteChange(owner);
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

  /** Owners whose activeBlocks or activePrefillTokens changed since clearChanged(): [0, changedOwnerCount). */
  get changedOwners(): Int32Array {
    return this.changed;
  }

  get changedOwnerCount(): number {
    return this.changedCount;
  }

  clearChanged(): void {
    for (let i = 0; i < this.changedCount; i++) this.isChanged[this.changed[i]] = 0;
    this.changedCount = 0;
  }

  /** Owners holding the first block of the last matchChain: [0, matchedOwnerCount) (until releaseMatch). */
  get matchedOwners(): Int32Array {
    return this.alive;
  }

  get matchedOwnerCount(): number {
    return this.matched;
  }

  private noteChange(owner: number): void {
    if (this.isChanged[owner] !== 0) return;
    this.isChanged[owner] = 1;
    this.changed[this.changedCount++] = owner;
  }

  private refresh(owner: number): void {
    this.noteChange(owner);
    const trie = this.trie;
    const value = Math.round(
      trie.blocksOf[owner] - trie.deficitOf[owner] + this.unsharedBlocks[owner] - this.deficit[owner],
    );
    this.blockCache[owner] = Math.max(value, 0);
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
   * (0 for owners not holding the first block). Call releaseMatch() once done reading. An add() of
   * the same `hashes` before releaseMatch() reuses this walk: keep their contents unchanged until then.
   */
  matchChain(hashes: Uint32Array, blockCount: number): Int32Array {
    this.matched = blockCount > 0 ? this.trie.match(hashes, blockCount, this.depthOf, this.alive) : 0;
    return this.depthOf;
  }

  releaseMatch(): void {
    this.trie.forgetWalk();
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

  /** Distinct (block, owner) pairs held. */
  get nodes(): number {
    return this.trie.pairCount;
  }

  /** Approximate bytes held by the block structures. */
  get bytes(): number {
    return this.trie.bytes;
  }

  // ---- internals ------------------------------------------------------------------------------

  private staleCheckInterval(): number {
    return Math.min(this.staleMs, 1000);
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
