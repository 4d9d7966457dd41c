/**
 * The radix tree's storage: 15 x Int32 records (60 bytes) in one growable array (`data`). A record
 * holds a node (fields PARENT..STALE_COUNT, META), a (block, owner) entry (fields NODE..KIDS), or both:
 * a node's entry goes into the node's own record whenever that part is free, so a block held by one
 * owner (the usual case) is one record, and storing, removing or matching it touches one place instead
 * of a node record and an entry record elsewhere. Further entries of a node (other owners, alias keys)
 * take records of their own whose node part is unused. Node 0 is the root.
 *
 * Node fields: parent; tokens hash halves; the first child, kept inline (later children live in the
 * ChildTable); the number of children; the owners: count, and start (the entry id itself for a single
 * owner, else the start of an OwnerSlab slice whose size class is `ownerClass(id)`); `staleCount`:
 * entries whose owner does not hold the parent node (left behind by a removed parent block;
 * findMatches must intersect explicitly below such nodes). `meta` holds the owner slice's size class
 * and flags, one byte per record.
 *
 * Entry fields: a primary entry is an owner's membership of a node: it sits at index POS of the node's
 * owners, PARENT_ENTRY is the same owner's primary entry on the parent node (NO_PARENT at the root's
 * children, STALE when the owner no longer holds the parent) and KIDS counts the same owner's primary
 * entries on child nodes whose PARENT_ENTRY is this one. An alias entry (rare: an engine reporting two
 * block hashes for one node) only adds a key: PARENT_ENTRY is ALIAS and KIDS holds its primary entry.
 *
 * A record whose node part is unused has PARENT FREE_NODE; one whose entry part is unused has OWNER -1.
 * A record with neither sits on a LIFO free list threaded through FIRST_CHILD, so allocating and
 * freeing touch no other record. Removals free a chain leaf first, so the next allocations take its
 * ids back root first, in ascending order: stored chains stay adjacent in memory under churn.
 */
export const ROOT = 0;
export const NO_NODE = -1;
export const FREE_NODE = -2;

export const NO_PARENT = -1;
export const STALE = -2;
export const ALIAS = -3;

export const RECORD_STRIDE = 15;
export const NODE_STRIDE = RECORD_STRIDE;
export const ENTRY_STRIDE = RECORD_STRIDE;

export const PARENT = 0;
export const TOKENS_LO = 1;
export const TOKENS_HI = 2;
export const FIRST_CHILD = 3;
export const CHILD_COUNT = 4;
export const OWNER_START = 5;
export const OWNER_COUNT = 6;
export const STALE_COUNT = 7;

export const NODE = 8;
export const OWNER = 9;
export const POS = 10;
export const KEY_LO = 11;
export const KEY_HI = 12;
export const PARENT_ENTRY = 13;
export const KIDS = 14;

/** In `meta`: the owner slice's size class (low bits) and flags. */
const OWNER_CLASS_MASK = 0x3f;
/** Flag: some owner's entry here uses a block hash that differs from the first owner's. */
const FLAG_MIXED_KEYS = 0x80;
const NO_OWNER = -1;

const INITIAL_CAPACITY = 1024;

export class RecordPool {
  capacity = 0;
  /** Live nodes, root excluded. */
  liveNodes = 0;
  data = new Int32Array(0);
  /** Per record, one byte: the OwnerSlab size class of its node's owners and the mixed-keys flag. */
  meta = new Uint8Array(0);
  private freeHead = NO_NODE;
  private bump = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.resize(Math.max(2, initialCapacity));
    this.bump = 1;
    this.initNode(ROOT, NO_NODE, 0, 0);
  }

  allocNode(parent: number, lo: number, hi: number): number {
    const id = this.take();
    this.initNode(id, parent, lo, hi);
    this.liveNodes++;
    return id;
  }

  freeNode(id: number): void {
    this.data[id * RECORD_STRIDE + PARENT] = FREE_NODE;
    this.liveNodes--;
    if (this.data[id * RECORD_STRIDE + OWNER] === NO_OWNER) this.release(id);
  }

  /** A new entry on `node`: in the node's own record when its entry part is free. */
  allocEntry(node: number, owner: number, lo: number, hi: number): number {
    let id = node;
    if (this.data[node * RECORD_STRIDE + OWNER] !== NO_OWNER) {
      id = this.take();
      this.data[id * RECORD_STRIDE + PARENT] = FREE_NODE;
    }
    const data = this.data;
    const at = id * RECORD_STRIDE;
    data[at + NODE] = node;
    data[at + OWNER] = owner;
    data[at + POS] = -1;
    data[at + KEY_LO] = lo;
    data[at + KEY_HI] = hi;
    data[at + PARENT_ENTRY] = NO_PARENT;
    data[at + KIDS] = 0;
    return id;
  }

  freeEntry(id: number): void {
    this.data[id * RECORD_STRIDE + OWNER] = NO_OWNER;
    if (this.data[id * RECORD_STRIDE + PARENT] === FREE_NODE) this.release(id);
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

  isLiveNode(id: number): boolean {
    return id < this.bump && this.data[id * RECORD_STRIDE + PARENT] !== FREE_NODE;
  }

  /** One past the largest record id ever allocated. */
  get highWater(): number {
    return this.bump;
  }

  get bytes(): number {
    return this.data.byteLength + this.meta.byteLength;
  }

  /** A record with both parts unused: the most recently freed one, else the next never used one. */
  private take(): number {
    let id = this.freeHead;
    if (id !== NO_NODE) this.freeHead = this.data[id * RECORD_STRIDE + FIRST_CHILD];
    else {
      if (this.bump === this.capacity) this.resize(grownCapacity(this.capacity));
      id = this.bump++;
    }
    return id;
  }

  private release(id: number): void {
    this.data[id * RECORD_STRIDE + FIRST_CHILD] = this.freeHead;
    this.freeHead = id;
  }

  private initNode(id: number, parent: number, lo: number, hi: number): void {
    const data = this.data;
    const at = id * RECORD_STRIDE;
    data[at + PARENT] = parent;
    data[at + TOKENS_LO] = lo;
    data[at + TOKENS_HI] = hi;
    data[at + FIRST_CHILD] = NO_NODE;
    data[at + CHILD_COUNT] = 0;
    data[at + OWNER_START] = -1;
    data[at + OWNER_COUNT] = 0;
    data[at + STALE_COUNT] = 0;
    this.meta[id] = 0;
    data[at + OWNER] = NO_OWNER;
  }

  private resize(capacity: number): void {
    const next = new Int32Array(capacity * RECORD_STRIDE);
    next.set(this.data);
    this.data = next;
    const meta = new Uint8Array(capacity);
    meta.set(this.meta);
    this.meta = meta;
    this.capacity = capacity;
  }
}

function grownCapacity(capacity: number): number {
  return capacity < 65536 ? capacity * 2 : Math.ceil((capacity * 1.125) / 1024) * 1024;
}
