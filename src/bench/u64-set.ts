/**
 * A set of u64 values given as (lo, hi) u32 halves: open addressing with linear probing over one
 * Uint32Array, so a million block hashes cost no per-entry objects and no bigint maths.
 */
export class U64Set {
  private slots: Uint32Array;
  /** 1 where a slot is used (a hash may be 0, so emptiness cannot live in the slot itself). */
  private used: Uint8Array;
  private mask: number;
  private count = 0;

  constructor(initialCapacity = 1024) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap *= 2;
    this.slots = new Uint32Array(cap * 2);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  private slotOf(lo: number, hi: number): number {
    let h = (lo ^ Math.imul(hi, 0x9e3779b1)) >>> 0;
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    return h & this.mask;
  }

  has(lo: number, hi: number): boolean {
    lo >>>= 0;
    hi >>>= 0;
    for (let i = this.slotOf(lo, hi); this.used[i] === 1; i = (i + 1) & this.mask) {
      if (this.slots[2 * i] === lo && this.slots[2 * i + 1] === hi) return true;
    }
    return false;
  }

  /** Adds the value; returns false when it was already present. */
  add(lo: number, hi: number): boolean {
    lo >>>= 0;
    hi >>>= 0;
    let i = this.slotOf(lo, hi);
    for (; this.used[i] === 1; i = (i + 1) & this.mask) {
      if (this.slots[2 * i] === lo && this.slots[2 * i + 1] === hi) return false;
    }
    this.used[i] = 1;
    this.slots[2 * i] = lo;
    this.slots[2 * i + 1] = hi;
    if (++this.count * 2 > this.mask + 1) this.grow();
    return true;
  }

  private grow(): void {
    const oldSlots = this.slots;
    const oldUsed = this.used;
    const cap = (this.mask + 1) * 2;
    this.slots = new Uint32Array(cap * 2);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
    for (let j = 0; j < oldUsed.length; j++) {
      if (oldUsed[j] !== 1) continue;
      const lo = oldSlots[2 * j];
      const hi = oldSlots[2 * j + 1];
      let i = this.slotOf(lo, hi);
      while (this.used[i] === 1) i = (i + 1) & this.mask;
      this.used[i] = 1;
      this.slots[2 * i] = lo;
      this.slots[2 * i + 1] = hi;
    }
  }
}
