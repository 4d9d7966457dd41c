/**
 * Rank-based byte-pair encoding with tiktoken's exact semantics (`_byte_pair_merge`): start from
 * single bytes, repeatedly merge the adjacent pair whose concatenation has the lowest rank (the
 * leftmost one on ties) until no adjacent concatenation is in the vocabulary.
 *
 * Short pieces use tiktoken's own scan; long ones use a heap over a linked list of parts, so a
 * piece of n bytes costs O(n log n) instead of O(n²). (gpt-tokenizer's scan takes ~30 s for a
 * 100 kB run of one letter, which would let one request freeze the gateway.)
 *
 * Byte strings are handled as latin1 strings (one char per byte) so they can key a Map.
 */

const HEAP_THRESHOLD = 64;
/** Slots of the pair-rank cache (direct-mapped: a colliding pair overwrites the slot). */
const PAIR_SLOT_BITS = 18;

export class RankBpe {
  /** Rank of each single byte (-1: none); undefined when ranks cannot be read as ids (see below). */
  private readonly byteRanks: Int32Array | undefined;
  /** Rank → its byte string (ranks are token ids, one per byte string). */
  private readonly rankBytes: readonly string[] = [];
  /**
   * Cache of the rank of two tokens joined, direct-mapped by a hash of the pair: typed arrays, so
   * it costs no allocation and nothing for the GC to trace. pairRankOf -1 = the pair does not merge.
   */
  private readonly pairLeft = new Int32Array(1 << PAIR_SLOT_BITS).fill(-1);
  private readonly pairRight = new Int32Array(1 << PAIR_SLOT_BITS);
  private readonly pairRankOf = new Int32Array(1 << PAIR_SLOT_BITS);

  /** @param ranks latin1 byte string of each token → its rank (= token id). */
  constructor(private readonly ranks: ReadonlyMap<string, number>) {
    let bound = 0;
    for (const rank of ranks.values()) bound = Math.max(bound, rank + 1);
    const rankBytes: string[] = new Array(bound);
    let ids = bound < 2 ** 31; // ranks fit the Int32Array cache
    for (const [bytes, rank] of ranks) {
      if (!ids) break;
      if (!Number.isInteger(rank) || rank < 0 || rankBytes[rank] !== undefined) ids = false;
      else rankBytes[rank] = bytes;
    }
    if (ids) {
      this.rankBytes = rankBytes;
      this.byteRanks = new Int32Array(256);
      for (let b = 0; b < 256; b++) this.byteRanks[b] = ranks.get(String.fromCharCode(b)) ?? -1;
    }
  }

  /** Token ids of one pre-tokenized piece (latin1 bytes). */
  encodePiece(bytes: string): number[] {
    const whole = this.ranks.get(bytes);
    if (whole !== undefined) return [whole];
    if (bytes.length > HEAP_THRESHOLD) return this.mergeByHeap(bytes);
    return this.mergeIdsByScan(bytes) ?? this.mergeByScan(bytes);
  }

  /**
   * tiktoken's loop on token ids: a part is always a token, so the rank of two adjacent parts
   * joined can be cached by their ids (no byte-string slicing per candidate pair). Undefined when
   * a byte has no rank (mergeByScan reports it).
   */
  private mergeIdsByScan(bytes: string): number[] | undefined {
    const byteRanks = this.byteRanks;
    if (byteRanks === undefined) return undefined;
    const n = bytes.length;
    const ids: number[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const id = byteRanks[bytes.charCodeAt(i)];
      if (id < 0) return undefined;
      ids[i] = id;
    }
    const ranks: number[] = new Array(n - 1);
    for (let i = 0; i + 1 < n; i++) ranks[i] = this.idPairRank(ids[i], ids[i + 1]);
    for (;;) {
      let best = Number.POSITIVE_INFINITY;
      let at = -1;
      for (let i = 0; i < ranks.length; i++) {
        if (ranks[i] < best) {
          best = ranks[i];
          at = i;
        }
      }
      if (at < 0) break;
      ids[at] = best; // the joined part's id is its rank
      ids.splice(at + 1, 1);
      ranks.splice(at, 1);
      if (at < ranks.length) ranks[at] = this.idPairRank(ids[at], ids[at + 1]);
      if (at > 0) ranks[at - 1] = this.idPairRank(ids[at - 1], ids[at]);
    }
    return ids;
  }

  private idPairRank(left: number, right: number): number {
    const slot = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca77)) >>> (32 - PAIR_SLOT_BITS);
    if (this.pairLeft[slot] !== left || this.pairRight[slot] !== right) {
      this.pairLeft[slot] = left;
      this.pairRight[slot] = right;
      this.pairRankOf[slot] = this.ranks.get(this.rankBytes[left] + this.rankBytes[right]) ?? -1;
    }
    const rank = this.pairRankOf[slot];
    return rank < 0 ? Number.POSITIVE_INFINITY : rank;
  }

  private pairRank(bytes: string, start: number, end: number): number {
    return this.ranks.get(bytes.slice(start, end)) ?? Number.POSITIVE_INFINITY;
  }

  /** tiktoken's loop: parts[i] = start offset of part i, ranks[i] = rank of parts i and i+1 joined. */
  private mergeByScan(bytes: string): number[] {
    const starts: number[] = [];
    for (let i = 0; i <= bytes.length; i++) starts.push(i);
    const ranks: number[] = [];
    for (let i = 0; i + 2 < starts.length; i++) ranks.push(this.pairRank(bytes, starts[i], starts[i + 2]));
    for (;;) {
      let best = Number.POSITIVE_INFINITY;
      let at = -1;
      for (let i = 0; i < ranks.length; i++) {
        if (ranks[i] < best) {
          best = ranks[i];
          at = i;
        }
      }
      if (at < 0) break;
      starts.splice(at + 1, 1);
      ranks.splice(at, 1);
      if (at < ranks.length) ranks[at] = this.pairRank(bytes, starts[at], starts[at + 2]);
      if (at > 0) ranks[at - 1] = this.pairRank(bytes, starts[at - 1], starts[at + 1]);
    }
    return this.partsToIds(bytes, starts);
  }

  /** The same merges in O(n log n): parts are a linked list, candidate pairs sit in a min-heap. */
  private mergeByHeap(bytes: string): number[] {
    const n = bytes.length;
    // Part i starts at byte i; next[i] / prev[i] link live parts; n is the end sentinel.
    const next = new Int32Array(n + 1);
    const prev = new Int32Array(n + 1);
    const version = new Int32Array(n + 1);
    for (let i = 0; i <= n; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap();
    const push = (left: number) => {
      version[left]++; // whatever was queued for this part is stale now
      const right = next[left];
      if (right >= n) return;
      const rank = this.pairRank(bytes, left, next[right]);
      if (rank !== Number.POSITIVE_INFINITY) heap.push(rank, left, version[left]);
    };
    for (let i = 0; i < n - 1; i++) push(i);
    while (heap.size > 0) {
      const { start, stamp } = heap.pop();
      if (stamp !== version[start]) continue; // stale: that pair changed since it was queued
      const right = next[start];
      const after = next[right];
      next[start] = after;
      if (after <= n) prev[after] = start;
      version[right]++; // the right part no longer exists: drop its queued pair
      push(start);
      if (prev[start] >= 0) push(prev[start]);
    }
    const starts: number[] = [];
    for (let i = 0; i <= n; i = next[i]) starts.push(i);
    return this.partsToIds(bytes, starts);
  }

  private partsToIds(bytes: string, starts: readonly number[]): number[] {
    const ids: number[] = [];
    for (let i = 0; i + 1 < starts.length; i++) {
      const id = this.ranks.get(bytes.slice(starts[i], starts[i + 1]));
      if (id === undefined) throw new Error(`byte ${bytes.charCodeAt(starts[i])} has no rank`);
      ids.push(id);
    }
    return ids;
  }
}

/**
 * Merge-list BPE (Hugging Face semantics) in O(n log n): `symbols` are token ids; repeatedly merge
 * the adjacent pair with the lowest `pairRank` (leftmost on ties) into `mergedId(rank)`.
 * `pairRank` returns Infinity for pairs that do not merge.
 */
export function mergeByRank(
  symbols: readonly number[],
  pairRank: (left: number, right: number) => number,
  mergedId: (rank: number) => number,
): number[] {
  const n = symbols.length;
  const ids = Int32Array.from(symbols);
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const version = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap();
  const push = (left: number) => {
    version[left]++;
    const right = next[left];
    if (right >= n) return;
    const rank = pairRank(ids[left], ids[right]);
    if (rank !== Number.POSITIVE_INFINITY) heap.push(rank, left, version[left]);
  };
  for (let i = 0; i + 1 < n; i++) push(i);
  while (heap.size > 0) {
    const { rank, start, stamp } = heap.pop();
    if (stamp !== version[start]) continue;
    const right = next[start];
    ids[start] = mergedId(rank);
    next[start] = next[right];
    if (next[right] < n) prev[next[right]] = start;
    version[right]++;
    push(start);
    if (prev[start] >= 0) push(prev[start]);
  }
  const out: number[] = [];
  for (let i = 0; i < n; i = next[i]) out.push(ids[i]);
  return out;
}

/** Binary min-heap of (rank, start, stamp), ordered by rank then start (leftmost first). */
class PairHeap {
  private ranks: number[] = [];
  private starts: number[] = [];
  private stamps: number[] = [];

  get size(): number {
    return this.ranks.length;
  }

  push(rank: number, start: number, stamp: number): void {
    this.ranks.push(rank);
    this.starts.push(start);
    this.stamps.push(stamp);
    let i = this.ranks.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { rank: number; start: number; stamp: number } {
    const top = { rank: this.ranks[0], start: this.starts[0], stamp: this.stamps[0] };
    const last = this.ranks.length - 1;
    this.swap(0, last);
    this.ranks.pop();
    this.starts.pop();
    this.stamps.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < this.ranks.length && this.less(l, smallest)) smallest = l;
      if (r < this.ranks.length && this.less(r, smallest)) smallest = r;
      if (smallest === i) break;
      this.swap(i, smallest);
      i = smallest;
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    return (
      this.ranks[a] < this.ranks[b] || (this.ranks[a] === this.ranks[b] && this.starts[a] < this.starts[b])
    );
  }

  private swap(a: number, b: number): void {
    [this.ranks[a], this.ranks[b]] = [this.ranks[b], this.ranks[a]];
    [this.starts[a], this.starts[b]] = [this.starts[b], this.starts[a]];
    [this.stamps[a], this.stamps[b]] = [this.stamps[b], this.stamps[a]];
  }
}
