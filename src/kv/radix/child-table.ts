/**
 * The children of every node except each node's inline first child, in one open-addressing table
 * keyed by (parent, tokens hash). Slots hold child id + 1 (0 is empty); keys are read from the node
 * arrays. Linear probing, backward-shift deletion, load <= 1/2. A parallel byte array tags each slot
 * with the top 8 bits of its key's hash, so a probe reads a node record (a likely cache miss) only on a
 * tag match: misses at the root (most queries' first block) then cost no node reads.
 */
import { hashTriple, powerOfTwoAtLeast } from './hash.ts';
import { NODE_STRIDE, type NodePool, PARENT, TOKENS_HI, TOKENS_LO } from './node-pool.ts';

export class ChildTable {
  slots: Int32Array;
  tags: Uint8Array;
  count = 0;

  constructor(
    private readonly nodes: NodePool,
    initialCapacity = 1024,
  ) {
    this.slots = new Int32Array(powerOfTwoAtLeast(initialCapacity));
    this.tags = new Uint8Array(this.slots.length);
  }

  find(parent: number, lo: number, hi: number): number {
    const slots = this.slots;
    const tags = this.tags;
    const mask = slots.length - 1;
    const data = this.nodes.data;
    const hash = hashTriple(parent, lo, hi);
    const tag = hash >>> 24;
    let i = hash & mask;
    for (;;) {
      const slot = slots[i];
      if (slot === 0) return -1;
      if (tags[i] === tag) {
        const at = (slot - 1) * NODE_STRIDE;
        if (data[at + TOKENS_LO] === lo && data[at + TOKENS_HI] === hi && data[at + PARENT] === parent)
          return slot - 1;
      }
      i = (i + 1) & mask;
    }
  }

  /** Adds a child whose key (parent, lo, hi) is not in the table yet. */
  insert(child: number): void {
    if (2 * (this.count + 1) > this.slots.length) this.rehash(this.slots.length * 2);
    this.place(this.slots, this.tags, child);
    this.count++;
  }

  remove(child: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    const nodes = this.nodes;
    let i =
      hashTriple(
        nodes.data[child * NODE_STRIDE + PARENT],
        nodes.data[child * NODE_STRIDE + TOKENS_LO],
        nodes.data[child * NODE_STRIDE + TOKENS_HI],
      ) & mask;
    while (slots[i] !== child + 1) {
      if (slots[i] === 0) return;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull later members of the cluster into the hole when their home allows.
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const slot = slots[j];
      if (slot === 0) break;
      const c = slot - 1;
      const home =
        hashTriple(
          nodes.data[c * NODE_STRIDE + PARENT],
          nodes.data[c * NODE_STRIDE + TOKENS_LO],
          nodes.data[c * NODE_STRIDE + TOKENS_HI],
        ) & mask;
      // It may move back unless its home lies cyclically within (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        slots[hole] = slot;
        this.tags[hole] = this.tags[j];
        hole = j;
      }
    }
    slots[hole] = 0;
    this.count--;
  }

  get bytes(): number {
    return this.slots.byteLength + this.tags.byteLength;
  }

  private place(slots: Int32Array, tags: Uint8Array, child: number): void {
    const mask = slots.length - 1;
    const nodes = this.nodes;
    const hash = hashTriple(
      nodes.data[child * NODE_STRIDE + PARENT],
      nodes.data[child * NODE_STRIDE + TOKENS_LO],
      nodes.data[child * NODE_STRIDE + TOKENS_HI],
    );
    let i = hash & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = child + 1;
    tags[i] = hash >>> 24;
  }

  private rehash(capacity: number): void {
    const old = this.slots;
    const slots = new Int32Array(capacity);
    const tags = new Uint8Array(capacity);
    for (let i = 0; i < old.length; i++) if (old[i] !== 0) this.place(slots, tags, old[i] - 1);
    this.slots = slots;
    this.tags = tags;
  }
}
