/**
 * Active-sequence load tracking (Dynamo's `sequence.rs`): for every owner (worker, dp_rank) the
 * prefill tokens still to compute and the deduplicated KV blocks held by its in-flight requests.
 *
 * Each owner has its own counters (typed arrays indexed by owner id). Block references live in one
 * table keyed by sequence hash whose entries are per-owner reference counts, so a candidate
 * request's overlap with every owner's active blocks costs one probe per block instead of one per
 * block per owner. Hashes are packed [lo, hi] u32 pairs; nothing on these paths uses bigint.
 */
import type { Clock } from '../util/clock.ts';
import { realClock } from '../util/clock.ts';
import { U64IntMap } from './u64-int-map.ts';

export interface AddRequestInput {
  /** Prompt tokens this request still has to prefill there: max(0, isl − overlap·bs). */
  readonly prefillTokens: number;
  /** Packed [lo, hi] sequence hashes of the request's blocks, deduplicated per owner; null = none. */
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
  readonly blocks: Uint32Array | null;
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

const NO_ENTRY = -1;

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

  // Block table: sequence hash -> first entry of a list of (owner, refcount) entries.
  private readonly table = new U64IntMap(4096);
  private entryOwner = new Int32Array(4096);
  private entryCount = new Int32Array(4096);
  private entryNext = new Int32Array(4096);
  private entryWeight = new Float64Array(4096);
  private entryTop = 0;
  private readonly freeEntries: number[] = [];

  // Scratch for potential loads: per-owner overlap with active blocks, and which owners were touched.
  private overlapScratch = new Int32Array(0);
  private touchedScratch = new Int32Array(0);

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
    this.overlapScratch = growInt32(this.overlapScratch, next);
    this.touchedScratch = growInt32(this.touchedScratch, next);
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
    const blockCount = input.blocks ? (input.blockCount ?? input.blocks.length >>> 1) : 0;
    const blocks = input.blocks && blockCount > 0 ? input.blocks.slice(0, 2 * blockCount) : null;
    const prefill = Math.max(0, input.prefillTokens);
    const unshared = Math.max(0, input.unsharedBlocks ?? 0);
    const request: ActiveRequest = {
      owner,
      prefillTokens: prefill,
      prefillDone: false,
      blocks,
      unshared,
      unsharedWeight: 1,
      addedAt: this.clock.now(),
    };
    this.requests.set(requestId, request);
    this.prefillTokens[owner] += prefill;
    this.unsharedBlocks[owner] += unshared;
    this.requestCounts[owner]++;
    if (blocks) for (let i = 0; i < blockCount; i++) this.reference(blocks[2 * i], blocks[2 * i + 1], owner);
    return true;
  }

  /** The request's prompt is computed: its prefill tokens stop counting. Idempotent. */
  markPrefillCompleted(requestId: string): boolean {
    const request = this.requests.get(requestId);
    if (request === undefined) return false;
    if (!request.prefillDone) {
      request.prefillDone = true;
      this.prefillTokens[request.owner] -= request.prefillTokens;
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
    const blocks = request.blocks;
    if (blocks) for (let i = 0; i < blocks.length; i += 2) this.dereference(blocks[i], blocks[i + 1], owner);
    this.unsharedBlocks[owner] -= request.unshared;
    this.deficit[owner] -= (1 - request.unsharedWeight) * request.unshared;
    if (--this.requestCounts[owner] === 0) {
      // Nothing left on this owner: drop floating-point residue.
      this.prefillTokens[owner] = 0;
      this.deficit[owner] = 0;
    }
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
    const blocks = request.blocks;
    if (blocks) {
      for (let i = 0; i < blocks.length; i += 2) {
        const entry = this.findEntry(blocks[i], blocks[i + 1], owner);
        if (entry !== NO_ENTRY && this.entryCount[entry] === 1) {
          this.deficit[owner] += this.entryWeight[entry] - weight;
          this.entryWeight[entry] = weight;
        }
      }
    }
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
    if (owner >= this.capacity) return 0;
    const value = Math.round(this.uniqueBlocks[owner] + this.unsharedBlocks[owner] - this.deficit[owner]);
    return Math.max(value, 0);
  }

  activePrefillTokens(owner: number): number {
    if (owner >= this.capacity) return 0;
    const value = this.prefillTokens[owner];
    return Math.max(value, 0);
  }

  activeRequests(owner: number): number {
    return owner < this.capacity ? this.requestCounts[owner] : 0;
  }

  /**
   * Potential decode blocks of a candidate request on each listed owner:
   * `blocks not already active there + unsharedBlocks + that owner's active blocks`.
   * Writes out[i] for owners[i], i < count.
   */
  potentialDecodeBlocks(
    hashes: Uint32Array | null,
    blockCount: number,
    unsharedBlocks: number,
    owners: Int32Array,
    count: number,
    out: Float64Array,
  ): void {
    const overlap = this.overlapScratch;
    const touched = this.touchedScratch;
    let touchedCount = 0;
    if (hashes !== null && this.table.size > 0) {
      for (let i = 0; i < blockCount; i++) {
        let entry = this.table.get(hashes[2 * i], hashes[2 * i + 1]);
        while (entry !== NO_ENTRY) {
          const owner = this.entryOwner[entry];
          if (overlap[owner]++ === 0) touched[touchedCount++] = owner;
          entry = this.entryNext[entry];
        }
      }
    }
    const requestBlocks = (hashes === null ? 0 : blockCount) + unsharedBlocks;
    for (let i = 0; i < count; i++) {
      const owner = owners[i];
      const held = owner < this.capacity ? overlap[owner] : 0;
      out[i] = requestBlocks - held + this.activeBlocks(owner);
    }
    for (let i = 0; i < touchedCount; i++) overlap[touched[i]] = 0;
  }

  /** Approximate bytes held by the block table. */
  get bytes(): number {
    return this.table.bytes + this.entryOwner.byteLength * 3 + this.entryWeight.byteLength;
  }

  private staleCheckInterval(): number {
    return Math.min(this.staleMs, 1000);
  }

  private expireStaleIfDue(): void {
    if (this.clock.now() >= this.nextStaleCheck) this.expireStale();
  }

  private findEntry(lo: number, hi: number, owner: number): number {
    let entry = this.table.get(lo, hi);
    while (entry !== NO_ENTRY && this.entryOwner[entry] !== owner) entry = this.entryNext[entry];
    return entry;
  }

  private reference(lo: number, hi: number, owner: number): void {
    const head = this.table.get(lo, hi);
    for (let entry = head; entry !== NO_ENTRY; entry = this.entryNext[entry]) {
      if (this.entryOwner[entry] === owner) {
        this.entryCount[entry]++;
        return;
      }
    }
    const entry = this.allocateEntry();
    this.entryOwner[entry] = owner;
    this.entryCount[entry] = 1;
    this.entryWeight[entry] = 1;
    this.entryNext[entry] = head;
    this.table.set(lo, hi, entry);
    this.uniqueBlocks[owner]++;
  }

  private dereference(lo: number, hi: number, owner: number): void {
    const head = this.table.get(lo, hi);
    let previous = NO_ENTRY;
    let entry = head;
    while (entry !== NO_ENTRY && this.entryOwner[entry] !== owner) {
      previous = entry;
      entry = this.entryNext[entry];
    }
    if (entry === NO_ENTRY || --this.entryCount[entry] > 0) return;
    const next = this.entryNext[entry];
    if (previous !== NO_ENTRY) this.entryNext[previous] = next;
    else if (next !== NO_ENTRY) this.table.set(lo, hi, next);
    else this.table.delete(lo, hi);
    this.uniqueBlocks[owner]--;
    this.deficit[owner] -= 1 - this.entryWeight[entry];
    this.freeEntries.push(entry);
  }

  private allocateEntry(): number {
    if (this.freeEntries.length > 0) return this.freeEntries.pop()!;
    if (this.entryTop === this.entryOwner.length) {
      const next = this.entryOwner.length * 2;
      this.entryOwner = growInt32(this.entryOwner, next);
      this.entryCount = growInt32(this.entryCount, next);
      this.entryNext = growInt32(this.entryNext, next);
      this.entryWeight = growFloat64(this.entryWeight, next);
    }
    return this.entryTop++;
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
