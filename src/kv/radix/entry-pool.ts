/**
 * (block, owner) entries as structure-of-arrays. Each entry is one block hash an owner holds.
 *
 * A primary entry is an owner's membership of a node: it sits at index `pos` of the node's owner
 * slice (see OwnerSlab), `parentEntry` is the same owner's primary entry on the parent node (NO_PARENT at the
 * root's children, STALE when the owner no longer holds the parent) and `kids` counts the
 * same owner's primary entries on child nodes whose parentEntry is this one.
 *
 * An alias entry (rare: an engine reporting two block hashes for one node) only adds a key:
 * parentEntry is ALIAS and `kids` holds its primary entry.
 *
 * A free entry has owner -1 and threads the free list through `node`.
 */
import { grow, grownCapacity } from './node-pool.ts';

export const NO_ENTRY = -1;
export const NO_PARENT = -1;
export const STALE = -2;
export const ALIAS = -3;

const INITIAL_CAPACITY = 1024;

export class EntryPool {
  capacity = 0;
  live = 0;
  node = new Int32Array(0);
  owner = new Int32Array(0);
  pos = new Int32Array(0);
  keyLo = new Int32Array(0);
  keyHi = new Int32Array(0);
  parentEntry = new Int32Array(0);
  kids = new Int32Array(0);
  private freeHead = NO_ENTRY;
  private bump = 0;

  constructor(initialCapacity = INITIAL_CAPACITY) {
    this.resize(Math.max(1, initialCapacity));
  }

  alloc(node: number, owner: number, lo: number, hi: number): number {
    let id = this.freeHead;
    if (id !== NO_ENTRY) this.freeHead = this.node[id];
    else {
      if (this.bump === this.capacity) this.resize(grownCapacity(this.capacity));
      id = this.bump++;
    }
    this.node[id] = node;
    this.owner[id] = owner;
    this.pos[id] = -1;
    this.keyLo[id] = lo;
    this.keyHi[id] = hi;
    this.parentEntry[id] = NO_PARENT;
    this.kids[id] = 0;
    this.live++;
    return id;
  }

  free(id: number): void {
    this.owner[id] = -1;
    this.node[id] = this.freeHead;
    this.freeHead = id;
    this.live--;
  }

  get highWater(): number {
    return this.bump;
  }

  get bytes(): number {
    return this.capacity * 7 * 4;
  }

  private resize(capacity: number): void {
    this.node = grow(this.node, capacity);
    this.owner = grow(this.owner, capacity);
    this.pos = grow(this.pos, capacity);
    this.keyLo = grow(this.keyLo, capacity);
    this.keyHi = grow(this.keyHi, capacity);
    this.parentEntry = grow(this.parentEntry, capacity);
    this.kids = grow(this.kids, capacity);
    this.capacity = capacity;
  }
}
