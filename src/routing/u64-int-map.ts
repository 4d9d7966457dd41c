/**
 * An open-addressing hash map from a key of a u64 (two u32 halves, lo and hi) plus an optional u32
 * tag to a non-negative int32 value. No bigint, no string keys, no allocation per operation (only
 * on growth). Each slot is four int32 words [lo, hi, tag, value] (halves stored as their int32 bit
 * patterns, so every load stays a small integer) and a probe touches one cache line.
 * Linear probing with backward-shift deletion (no tombstones).
 */
const EMPTY = -1;
const STRIDE = 4;

export class U64IntMap {
  private slots: Int32Array;
  private mask: number;
  private count = 0;

  constructor(initialCapacity = 1024) {
    let capacity = 16;
    while (capacity < initialCapacity * 2) capacity *= 2;
    this.slots = emptySlots(capacity);
    this.mask = capacity - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Approximate bytes held by the table. */
  get bytes(): number {
    return this.slots.byteLength;
  }

  /** The value stored for (lo, hi, tag), or -1. */
  get(lo: number, hi: number, tag = 0): number {
    lo |= 0;
    hi |= 0;
    tag |= 0;
    const slots = this.slots;
    const mask = this.mask;
    let at = slotOf(lo, hi, tag, mask) * STRIDE;
    for (;;) {
      const value = slots[at + 3];
      if (value === EMPTY) return -1;
      if (slots[at] === lo && slots[at + 1] === hi && slots[at + 2] === tag) return value;
      at = (at + STRIDE) & (mask * STRIDE + STRIDE - 1);
    }
  }

  /** Stores value (in [0, 2^31)) for (lo, hi, tag), replacing any previous value. */
  set(lo: number, hi: number, value: number, tag = 0): void {
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    this.insert(lo | 0, hi | 0, tag | 0, value);
  }

  /** Removes (lo, hi, tag); returns whether it was present. */
  delete(lo: number, hi: number, tag = 0): boolean {
    lo |= 0;
    hi |= 0;
    tag |= 0;
    const slots = this.slots;
    const mask = this.mask;
    let slot = slotOf(lo, hi, tag, mask);
    for (;;) {
      const at = slot * STRIDE;
      if (slots[at + 3] === EMPTY) return false;
      if (slots[at] === lo && slots[at + 1] === hi && slots[at + 2] === tag) break;
      slot = (slot + 1) & mask;
    }
    // Backward shift: move later entries of the probe run into the hole when their home allows it.
    let hole = slot;
    let next = (hole + 1) & mask;
    while (slots[next * STRIDE + 3] !== EMPTY) {
      const n = next * STRIDE;
      const home = slotOf(slots[n], slots[n + 1], slots[n + 2], mask);
      if (((hole - home) & mask) <= ((next - home) & mask)) {
        const h = hole * STRIDE;
        slots[h] = slots[n];
        slots[h + 1] = slots[n + 1];
        slots[h + 2] = slots[n + 2];
        slots[h + 3] = slots[n + 3];
        hole = next;
      }
      next = (next + 1) & mask;
    }
    this.slots[hole * STRIDE + 3] = EMPTY;
    this.count--;
    return true;
  }

  clear(): void {
    this.slots.fill(EMPTY);
    this.count = 0;
  }

  private insert(lo: number, hi: number, tag: number, value: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let at = slotOf(lo, hi, tag, mask) * STRIDE;
    for (;;) {
      if (slots[at + 3] === EMPTY) {
        slots[at] = lo;
        slots[at + 1] = hi;
        slots[at + 2] = tag;
        slots[at + 3] = value;
        this.count++;
        return;
      }
      if (slots[at] === lo && slots[at + 1] === hi && slots[at + 2] === tag) {
        slots[at + 3] = value;
        return;
      }
      at = (at + STRIDE) & (mask * STRIDE + STRIDE - 1);
    }
  }

  private grow(): void {
    const old = this.slots;
    const capacity = (this.mask + 1) * 2;
    this.slots = emptySlots(capacity);
    this.mask = capacity - 1;
    this.count = 0;
    for (let at = 0; at < old.length; at += STRIDE)
      if (old[at + 3] !== EMPTY) this.insert(old[at], old[at + 1], old[at + 2], old[at + 3]);
  }
}

function emptySlots(capacity: number): Int32Array {
  return new Int32Array(capacity * STRIDE).fill(EMPTY);
}

function slotOf(lo: number, hi: number, tag: number, mask: number): number {
  // Keys are xxh3 outputs (already well mixed); fold every word so none alone decides the slot.
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1) ^ Math.imul(tag + 1, 0x27d4eb2f), 0x85ebca6b);
  h ^= h >>> 15;
  return h & mask;
}
