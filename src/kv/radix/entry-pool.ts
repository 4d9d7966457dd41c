/**
 * (block, owner) entries, one 7 x Int32 record each in a single array (`data`), so a block-table probe
 * reads the key and node from one cache line. Each entry is one block hash an owner holds.
 *
 * A primary entry is an owner's membership of a node: it sits at index POS of the node's owners (see
 * NodePool and OwnerSlab), PARENT_ENTRY is the same owner's primary entry on the parent node (NO_PARENT
 * at the root's children, STALE when the owner no longer holds the parent) and KIDS counts the same
 * owner's primary entries on child nodes whose PARENT_ENTRY is this one.
 *
 * An alias entry (rare: an engine reporting two block hashes for one node) only adds a key:
 * PARENT_ENTRY is ALIAS and KIDS holds its primary entry.
 *
 * A free entry has OWNER -1 and threads the free list through NODE.
 */
import { grow, grownCapacity } from './node-pool.ts';

export const NO_ENTRY = -1;
export const NO_PARENT = -1;
export const STALE = -2;
export const ALIAS = -3;

export const ENTRY_STRIDE = 7;
export const NODE = 0;
export const OWNER = 1;
export const POS = 2;
export const KEY_LO = 3;
export const KEY_HI = 4;
export const PARENT_ENTRY = 5;
export const KIDS = 6;

const INITIAL_CAPACITY = 1024;

export class EntryPool {
  capacity = 0;
  live = 0;
  data = new Int32Array(0);
  private freeHead = NO_ENTRY;
  private bump = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.resize(Math.max(1, initialCapacity));
  }

  alloc(node: number, owner: number, lo: number, hi: number): number {
    let id = this.freeHead;
    if (id !== NO_ENTRY) this.freeHead = this.data[id * ENTRY_STRIDE + NODE];
    else {
      if (this.bump === this.capacity) this.resize(grownCapacity(this.capacity));
      id = this.bump++;
    }
    const data = this.data;
    const at = id * ENTRY_STRIDE;
    data[at + NODE] = node;
    data[at + OWNER] = owner;
    data[at + POS] = -1;
    data[at + KEY_LO] = lo;
    data[at + KEY_HI] = hi;
    data[at + PARENT_ENTRY] = NO_PARENT;
    data[at + KIDS] = 0;
    this.live++;
    return id;
  }

  free(id: number): void {
    this.data[id * ENTRY_STRIDE + OWNER] = -1;
    this.data[id * ENTRY_STRIDE + NODE] = this.freeHead;
    this.freeHead = id;
    this.live--;
  }

  get highWater(): number {
    return this.bump;
  }

  get bytes(): number {
    return this.data.byteLength;
  }

  private resize(capacity: number): void {
    this.data = grow(this.data, capacity * ENTRY_STRIDE);
    this.capacity = capacity;
  }
}
