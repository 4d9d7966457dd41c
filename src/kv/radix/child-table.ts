/**
 * The children of every node except each node's inline first child, in one open-addressing table
 * keyed by (parent, tokens hash). Linear probing, backward-shift deletion, load <= 1/2.
 *
 * A slot holds `tag | (child id + 1)`, 0 when empty: the id in the low bits (`idMask`, as wide as the
 * record pool's capacity needs) and above them a tag, the key hash's bits there. Keys are read from
 * the records, but only where the tags agree, so a lookup that misses (most queries' first block) reads
 * no record at all. Homes come from the hash's low bits, so when the pool outgrows the mask, clearing
 * the tag bits that become id bits (`widen`) leaves every slot in place.
 */
import { entryMaskFor, retagSlots, slotEntry } from './block-table.ts';
import { hashTriple, powerOfTwoAtLeast } from './hash.ts';
import { NODE_STRIDE, PARENT, type RecordPool, TOKENS_HI, TOKENS_LO } from './record-pool.ts';

export class ChildTable {
  slots: Int32Array;
  count = 0;
  private idMask: number;

  constructor(
    private readonly records: RecordPool,
    initialCapacity = 1024,
  ) {
    this.slots = new Int32Array(powerOfTwoAtLeast(initialCapacity));
    this.idMask = entryMaskFor(records.capacity);
  }

  find(parent: number, lo: number, hi: number): number {
    const slots = this.slots;
    const mask = slots.length - 1;
    const data = this.records.data;
    const idMask = this.idMask;
    const hash = hashTriple(parent, lo, hi);
    const tag = this.tagOf(hash);
    let i = hash & mask;
    for (;;) {
      const slot = slots[i];
      if (slot === 0) return -1;
      if ((slot & ~idMask) === tag) {
        const child = slotEntry(slot, idMask);
        const at = child * NODE_STRIDE;
        if (data[at + TOKENS_LO] === lo && data[at + TOKENS_HI] === hi && data[at + PARENT] === parent)
          return child;
      }
      i = (i + 1) & mask;
    }
  }

  /** Adds a child whose key (parent, lo, hi) is not in the table yet. */
  insert(child: number): void {
    if (this.records.capacity > this.idMask) this.widen(entryMaskFor(this.records.capacity));
    if (2 * (this.count + 1) > this.slots.length) this.rehash(this.slots.length * 2);
    this.place(this.slots, child);
    this.count++;
  }

  remove(child: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    const idMask = this.idMask;
    const hash = this.hashOf(child);
    const wanted = this.tagOf(hash) | (child + 1);
    let i = hash & mask;
    while (slots[i] !== wanted) {
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
      const home = this.hashOf(slotEntry(slot, idMask)) & mask;
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

  private hashOf(child: number): number {
    const data = this.records.data;
    const at = child * NODE_STRIDE;
    return hashTriple(data[at + PARENT], data[at + TOKENS_LO], data[at + TOKENS_HI]);
  }

  private place(slots: Int32Array, child: number): void {
    const mask = slots.length - 1;
    const hash = this.hashOf(child);
    let i = hash & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = this.tagOf(hash) | (child + 1);
  }

  /** A slot's tag: the key hash's bits above the id bits (below the sign bit). */
  private tagOf(hash: number): number {
    return hash & ~this.idMask & 0x7fffffff;
  }

  private rehash(capacity: number): void {
    const old = this.slots;
    const slots = new Int32Array(capacity);
    for (let i = 0; i < old.length; i++) if (old[i] !== 0) this.place(slots, slotEntry(old[i], this.idMask));
    this.slots = slots;
  }

  /** Child ids now need the bits of `idMask`: the tag bits under it clear, slots stay where they are. */
  private widen(idMask: number): void {
    retagSlots(this.slots, this.idMask, idMask);
    this.idMask = idMask;
  }
}
