/**
 * Each node's owners as a contiguous slice of one slab: parallel arrays of entry ids and owner ids,
 * so a query scans a node's owners sequentially instead of chasing list pointers (a prefix held by
 * 1,024 owners is 4 KB of owner ids). Slices have power-of-two capacities (size class c holds 2^c
 * members); freed slices go to per-class free lists threaded through `entry`.
 */
const MAX_CLASSES = 32;

export class OwnerSlab {
  entry: Int32Array<ArrayBuffer>;
  owner: Int32Array<ArrayBuffer>;
  private readonly freeHeads = new Int32Array(MAX_CLASSES).fill(-1);
  private bump = 0;

  constructor(initialCapacity = 1024) {
    this.entry = new Int32Array(Math.max(2, initialCapacity));
    this.owner = new Int32Array(Math.max(2, initialCapacity));
  }

  alloc(sizeClass: number): number {
    const head = this.freeHeads[sizeClass];
    const size = 1 << sizeClass;
    if (head !== -1) {
      this.freeHeads[sizeClass] = this.entry[head];
      return head;
    }
    const start = this.bump;
    if (start + size > this.entry.length) this.resize(Math.max(start + size, growSlab(this.entry.length)));
    this.bump = start + size;
    return start;
  }

  free(start: number, sizeClass: number): void {
    this.entry[start] = this.freeHeads[sizeClass];
    this.freeHeads[sizeClass] = start;
  }

  get bytes(): number {
    return this.entry.byteLength + this.owner.byteLength;
  }

  private resize(capacity: number): void {
    const entry = new Int32Array(capacity);
    entry.set(this.entry);
    this.entry = entry;
    const owner = new Int32Array(capacity);
    owner.set(this.owner);
    this.owner = owner;
  }
}

/** The size class whose capacity is the smallest power of two >= count (count >= 1). */
export function sizeClassOf(count: number): number {
  return 32 - Math.clz32(count - 1);
}

function growSlab(capacity: number): number {
  return capacity < 65536 ? capacity * 2 : Math.ceil((capacity * 1.125) / 1024) * 1024;
}
