/**
 * Radix-tree nodes as structure-of-arrays. Node 0 is the root. A free node has parent FREE_NODE and
 * threads the free list through `firstChild`.
 *
 * Per node: parent, tokens hash halves, the first child kept inline (later children live in the
 * ChildTable), the number of children, the start, size class and length of its owner slice in the
 * OwnerSlab (one primary entry per owner), and `staleCount`: entries whose owner does not hold the parent node (left behind by a
 * removed parent block; findMatches must intersect explicitly below such nodes).
 */
export const ROOT = 0;
export const NO_NODE = -1;
export const FREE_NODE = -2;

/** Flag: some owner's entry here uses a block hash that differs from the list head's. */
export const FLAG_MIXED_KEYS = 1;

const INITIAL_CAPACITY = 1024;

export class NodePool {
  capacity = 0;
  /** Live nodes, root excluded. */
  live = 0;
  parent = new Int32Array(0);
  tokensLo = new Int32Array(0);
  tokensHi = new Int32Array(0);
  firstChild = new Int32Array(0);
  childCount = new Int32Array(0);
  ownerStart = new Int32Array(0);
  ownerCount = new Int32Array(0);
  staleCount = new Int32Array(0);
  flags = new Uint8Array(0);
  ownerClass = new Uint8Array(0);
  private freeHead = NO_NODE;
  private bump = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.resize(Math.max(2, initialCapacity));
    this.bump = 1;
    this.init(ROOT, NO_NODE, 0, 0);
  }

  alloc(parent: number, lo: number, hi: number): number {
    let id = this.freeHead;
    if (id !== NO_NODE) this.freeHead = this.firstChild[id];
    else {
      if (this.bump === this.capacity) this.resize(grownCapacity(this.capacity));
      id = this.bump++;
    }
    this.init(id, parent, lo, hi);
    this.live++;
    return id;
  }

  free(id: number): void {
    this.parent[id] = FREE_NODE;
    this.firstChild[id] = this.freeHead;
    this.freeHead = id;
    this.live--;
  }

  isLive(id: number): boolean {
    return id < this.bump && this.parent[id] !== FREE_NODE;
  }

  /** One past the largest id ever allocated. */
  get highWater(): number {
    return this.bump;
  }

  get bytes(): number {
    return this.capacity * (8 * 4 + 2);
  }

  private init(id: number, parent: number, lo: number, hi: number): void {
    this.parent[id] = parent;
    this.tokensLo[id] = lo;
    this.tokensHi[id] = hi;
    this.firstChild[id] = NO_NODE;
    this.childCount[id] = 0;
    this.ownerStart[id] = -1;
    this.ownerCount[id] = 0;
    this.staleCount[id] = 0;
    this.flags[id] = 0;
    this.ownerClass[id] = 0;
  }

  private resize(capacity: number): void {
    this.parent = grow(this.parent, capacity);
    this.tokensLo = grow(this.tokensLo, capacity);
    this.tokensHi = grow(this.tokensHi, capacity);
    this.firstChild = grow(this.firstChild, capacity);
    this.childCount = grow(this.childCount, capacity);
    this.ownerStart = grow(this.ownerStart, capacity);
    this.ownerCount = grow(this.ownerCount, capacity);
    this.staleCount = grow(this.staleCount, capacity);
    this.flags = growBytes(this.flags, capacity);
    this.ownerClass = growBytes(this.ownerClass, capacity);
    this.capacity = capacity;
  }
}

export function grownCapacity(capacity: number): number {
  return capacity < 65536 ? capacity * 2 : Math.ceil((capacity * 1.125) / 1024) * 1024;
}

function growBytes(array: Uint8Array, capacity: number): Uint8Array<ArrayBuffer> {
  const next = new Uint8Array(capacity);
  next.set(array);
  return next;
}

export function grow(array: Int32Array, capacity: number): Int32Array<ArrayBuffer> {
  const next = new Int32Array(capacity);
  next.set(array);
  return next;
}
