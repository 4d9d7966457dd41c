/**
 * An open-addressing hash map from a u64 key given as two u32 halves (lo, hi) to a non-negative
 * int32 value. No bigint, no string keys, no allocation per operation (only on growth). Linear
 * probing with backward-shift deletion, so there are no tombstones.
 */
const EMPTY = -1;

export class U64IntMap {
  private keys: Uint32Array;
  private values: Int32Array;
  private mask: number;
  private count = 0;

  constructor(initialCapacity = 1024) {
    let capacity = 16;
    while (capacity < initialCapacity * 2) capacity *= 2;
    this.keys = new Uint32Array(capacity * 2);
    this.values = new Int32Array(capacity).fill(EMPTY);
    this.mask = capacity - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Approximate bytes held by the table's arrays. */
  get bytes(): number {
    return this.keys.byteLength + this.values.byteLength;
  }

  /** The value stored for (lo, hi), or -1. */
  get(lo: number, hi: number): number {
    lo >>>= 0;
    hi >>>= 0;
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let slot = slotOf(lo, hi, mask);
    for (;;) {
      const value = values[slot];
      if (value === EMPTY) return EMPTY;
      if (keys[2 * slot] === lo && keys[2 * slot + 1] === hi) return value;
      slot = (slot + 1) & mask;
    }
  }

  /** Stores value (>= 0) for (lo, hi), replacing any previous value. */
  set(lo: number, hi: number, value: number): void {
    if ((this.count + 1) * 2 > this.values.length) this.grow();
    lo >>>= 0;
    hi >>>= 0;
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let slot = slotOf(lo, hi, mask);
    for (;;) {
      if (values[slot] === EMPTY) {
        keys[2 * slot] = lo;
        keys[2 * slot + 1] = hi;
        values[slot] = value;
        this.count++;
        return;
      }
      if (keys[2 * slot] === lo && keys[2 * slot + 1] === hi) {
        values[slot] = value;
        return;
      }
      slot = (slot + 1) & mask;
    }
  }

  /** Removes (lo, hi); returns whether it was present. */
  delete(lo: number, hi: number): boolean {
    lo >>>= 0;
    hi >>>= 0;
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let slot = slotOf(lo, hi, mask);
    for (;;) {
      if (values[slot] === EMPTY) return false;
      if (keys[2 * slot] === lo && keys[2 * slot + 1] === hi) break;
      slot = (slot + 1) & mask;
    }
    // Backward-shift: move later entries of the probe run into the hole when their home allows it.
    let hole = slot;
    let next = (hole + 1) & mask;
    while (values[next] !== EMPTY) {
      const home = slotOf(keys[2 * next], keys[2 * next + 1], mask);
      const distanceToNext = (next - home) & mask;
      const distanceToHole = (hole - home) & mask;
      if (distanceToHole <= distanceToNext) {
        keys[2 * hole] = keys[2 * next];
        keys[2 * hole + 1] = keys[2 * next + 1];
        values[hole] = values[next];
        hole = next;
      }
      next = (next + 1) & mask;
    }
    values[hole] = EMPTY;
    this.count--;
    return true;
  }

  clear(): void {
    this.values.fill(EMPTY);
    this.count = 0;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    const capacity = oldValues.length * 2;
    this.keys = new Uint32Array(capacity * 2);
    this.values = new Int32Array(capacity).fill(EMPTY);
    this.mask = capacity - 1;
    this.count = 0;
    for (let slot = 0; slot < oldValues.length; slot++) {
      const value = oldValues[slot];
      if (value !== EMPTY) this.set(oldKeys[2 * slot], oldKeys[2 * slot + 1], value);
    }
  }
}

function slotOf(lo: number, hi: number, mask: number): number {
  // Keys are xxh3 outputs (already well mixed); fold both halves so either alone cannot collide.
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 16;
  return h & mask;
}
