/**
 * The children of every node except each node's inline first child, in one open-addressing table
 * keyed by (parent, tokens hash). Slots hold child id + 1 (0 is empty); keys are read from the node
 * arrays. Linear probing, backward-shift deletion, load <= 1/2.
 */
import { hashTriple, powerOfTwoAtLeast } from './hash.ts';
import { NODE_STRIDE, PARENT, type RecordPool, TOKENS_HI, TOKENS_LO } from './record-pool.ts';

export class ChildTable {
  slots: Int32Array;
  count = 0;

  constructor(
    private readonly nodes: RecordPool,
    initialCapacity = 1024,
  ) {
    this.slots = new Int32Array(powerOfTwoAtLeast(initialCapacity));
  }

  find(parent: number, lo: number, hi: number): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    const data = this.nodes.data;
    let i = hashTriple(parent, lo, hi) & mask;
    for (;;) {
      const slot = slots[i];
      if (slot === 0) return -1;
      const child = slot - 1;
      const at = child * NODE_STRIDE;
      if (data[at + TOKENS_LO] === lo && data[at + TOKENS_HI] === hi && data[at + PARENT] === parent)
        return child;
      i = (i + 1) & mask;
    }
  }

  /** Adds a child whose key (parent, lo, hi) is not in the table yet. */
  insert(child: number): void {
    if (2 * (this.count + 1) > this.slots.length) this.rehash(this.slots.length * 2);
    this.place(this.slots, child);
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
        hole = j;
      }
    }
    slots[hole] = 0;
    this.count--;
  }

  get bytes(): number {
    return this.slots.byteLength;
  }

  private place(slots: Int32Array, child: number): void {
    const mask = slots.length - 1;
    const nodes = this.nodes;
    let i =
      hashTriple(
        nodes.data[child * NODE_STRIDE + PARENT],
        nodes.data[child * NODE_STRIDE + TOKENS_LO],
        nodes.data[child * NODE_STRIDE + TOKENS_HI],
      ) & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = child + 1;
  }

  private rehash(capacity: number): void {
    const old = this.slots;
    const slots = new Int32Array(capacity);
    for (let i = 0; i < old.length; i++) if (old[i] !== 0) this.place(slots, old[i] - 1);
    this.slots = slots;
  }
}
