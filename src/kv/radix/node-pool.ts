/**
 * Radix-tree nodes, one 8 x Int32 record each in a single array (`data`), so one tree level of a walk
 * touches one cache line. Node 0 is the root. A free node has parent FREE_NODE and sits on a LIFO
 * free list threaded through its first-child field, so allocating and freeing touch no other record.
 * Removals free a chain leaf first, so the next allocations take its ids back root first, in
 * ascending order: stored chains stay adjacent in memory under churn.
 *
 * Record fields (offsets below): parent; tokens hash halves; the first child, kept inline (later
 * children live in the ChildTable); the number of children; the owners: count, and start (the entry id
 * itself for a single owner, else the start of an OwnerSlab slice whose size class is `ownerClass(id)`);
 * `staleCount`: entries whose owner does not hold the parent node (left behind by a removed parent
 * block; findMatches must intersect explicitly below such nodes).
 */
export const ROOT = 0;
export const NO_NODE = -1;
export const FREE_NODE = -2;

export const NODE_STRIDE = 8;
export const PARENT = 0;
export const TOKENS_LO = 1;
export const TOKENS_HI = 2;
export const FIRST_CHILD = 3;
export const CHILD_COUNT = 4;
export const OWNER_START = 5;
export const OWNER_COUNT = 6;
export const STALE_COUNT = 7;

/** In `meta`: the owner slice's size class (low bits) and flags. */
const OWNER_CLASS_MASK = 0x3f;
/** Flag: some owner's entry here uses a block hash that differs from the first owner's. */
const FLAG_MIXED_KEYS = 0x80;

const INITIAL_CAPACITY = 1024;

export class NodePool {
  capacity = 0;
  /** Live nodes, root excluded. */
  live = 0;
  data = new Int32Array(0);
  /** Per node, one byte: the OwnerSlab size class of its owners and the mixed-keys flag. */
  meta = new Uint8Array(0);
  private freeHead = NO_NODE;
  private bump = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.resize(Math.max(2, initialCapacity));
    this.bump = 1;
    this.init(ROOT, NO_NODE, 0, 0);
  }

  /** A new node: the most recently freed id, else the next never used one. */
  alloc(parent: number, lo: number, hi: number): number {
    let id = this.freeHead;
    if (id !== NO_NODE) this.freeHead = this.data[id * NODE_STRIDE + FIRST_CHILD];
    else {
      if (this.bump === this.capacity) this.resize(grownCapacity(this.capacity));
      id = this.bump++;
    }
    this.init(id, parent, lo, hi);
    this.live++;
    return id;
  }

  free(id: number): void {
    const data = this.data;
    const at = id * NODE_STRIDE;
    data[at + PARENT] = FREE_NODE;
    data[at + FIRST_CHILD] = this.freeHead;
    this.freeHead = id;
    this.live--;
  }

  ownerClass(id: number): number {
    return this.meta[id] & OWNER_CLASS_MASK;
  }

  setOwnerClass(id: number, sizeClass: number): void {
    this.meta[id] = (this.meta[id] & ~OWNER_CLASS_MASK) | sizeClass;
  }

  hasMixedKeys(id: number): boolean {
    return (this.meta[id] & FLAG_MIXED_KEYS) !== 0;
  }

  markMixedKeys(id: number): void {
    this.meta[id] |= FLAG_MIXED_KEYS;
  }

  isLive(id: number): boolean {
    return id < this.bump && this.data[id * NODE_STRIDE + PARENT] !== FREE_NODE;
  }

  /** One past the largest id ever allocated. */
  get highWater(): number {
    return this.bump;
  }

  get bytes(): number {
    return this.data.byteLength + this.meta.byteLength;
  }

  private init(id: number, parent: number, lo: number, hi: number): void {
    const data = this.data;
    const at = id * NODE_STRIDE;
    data[at + PARENT] = parent;
    data[at + TOKENS_LO] = lo;
    data[at + TOKENS_HI] = hi;
    data[at + FIRST_CHILD] = NO_NODE;
    data[at + CHILD_COUNT] = 0;
    data[at + OWNER_START] = -1;
    data[at + OWNER_COUNT] = 0;
    data[at + STALE_COUNT] = 0;
    this.meta[id] = 0;
  }

  private resize(capacity: number): void {
    this.data = grow(this.data, capacity * NODE_STRIDE);
    this.meta = growBytes(this.meta, capacity);
    this.capacity = capacity;
  }
}

export function grownCapacity(capacity: number): number {
  return capacity < 65536 ? capacity * 2 : Math.ceil((capacity * 1.125) / 1024) * 1024;
}

export function grow(array: Int32Array, capacity: number): Int32Array<ArrayBuffer> {
  const next = new Int32Array(capacity);
  next.set(array);
  return next;
}

function growBytes(array: Uint8Array, capacity: number): Uint8Array<ArrayBuffer> {
  const next = new Uint8Array(capacity);
  next.set(array);
  return next;
}
