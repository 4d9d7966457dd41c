/**
 * Owners sorted by a per-owner load key, ascending (equal keys by owner id, so every owner has one
 * exact place). The least loaded owners are read from the front without scanning every owner.
 *
 * The order and the keys in that order sit in two parallel typed arrays: a changed key finds the
 * owner's place and its new place by binary search and moves the owners in between with one
 * `copyWithin` per array, so an update costs O(log n) compares plus a memmove (no per-owner
 * position index to rewrite). Typed arrays only.
 */
/** Moves up to this many places shift in a loop (cheaper than two copyWithin calls). */
const SHORT_MOVE = 16;

export class LoadOrder {
  private order = new Int32Array(64);
  /** sorted[i] = keys[order[i]]. */
  private sorted = new Float64Array(64);
  private size = 0;
  /** 1 for owners in the order. */
  private member = new Uint8Array(0);
  private keys = new Float64Array(0);

  get count(): number {
    return this.size;
  }

  /** Owners in key order: entries [0, count) (read-only view, valid until the next change). */
  get owners(): Int32Array {
    return this.order;
  }

  /** Keys in key order, aligned with `owners` (read-only view, valid until the next change). */
  get sortedKeys(): Float64Array {
    return this.sorted;
  }

  /** Keys by owner id (read-only view; meaningful for owners in the order). */
  get keyByOwner(): Float64Array {
    return this.keys;
  }

  has(owner: number): boolean {
    return owner >= 0 && owner < this.member.length && this.member[owner] !== 0;
  }

  /** Adds the owner with this key, or moves it when present. */
  set(owner: number, key: number): void {
    this.ensureOwner(owner);
    const order = this.order;
    const sorted = this.sorted;
    if (this.member[owner] === 0) {
      if (this.size === order.length) this.grow();
      const at = this.placeOf(key, owner, 0, this.size);
      this.order.copyWithin(at + 1, at, this.size);
      this.sorted.copyWithin(at + 1, at, this.size);
      this.order[at] = owner;
      this.sorted[at] = key;
      this.size++;
      this.member[owner] = 1;
      this.keys[owner] = key;
      return;
    }
    const old = this.keys[owner];
    if (old === key) return;
    const from = this.placeOf(old, owner, 0, this.size);
    this.keys[owner] = key;
    if (key > old) {
      // Owners after `from` that sort before (key, owner) move one place forward.
      const to = this.placeOf(key, owner, from + 1, this.size) - 1;
      if (to - from <= SHORT_MOVE) {
        for (let i = from; i < to; i++) {
          order[i] = order[i + 1];
          sorted[i] = sorted[i + 1];
        }
      } else {
        order.copyWithin(from, from + 1, to + 1);
        sorted.copyWithin(from, from + 1, to + 1);
      }
      order[to] = owner;
      sorted[to] = key;
    } else {
      // Owners before `from` that sort after (key, owner) move one place back.
      const to = this.placeOf(key, owner, 0, from);
      if (from - to <= SHORT_MOVE) {
        for (let i = from; i > to; i--) {
          order[i] = order[i - 1];
          sorted[i] = sorted[i - 1];
        }
      } else {
        order.copyWithin(to + 1, to, from);
        sorted.copyWithin(to + 1, to, from);
      }
      order[to] = owner;
      sorted[to] = key;
    }
  }

  delete(owner: number): void {
    if (!this.has(owner)) return;
    const at = this.placeOf(this.keys[owner], owner, 0, this.size);
    this.order.copyWithin(at, at + 1, this.size);
    this.sorted.copyWithin(at, at + 1, this.size);
    this.size--;
    this.member[owner] = 0;
  }

  /** The first index in [low, high) whose (key, owner) does not sort before (key, owner). */
  private placeOf(key: number, owner: number, low: number, high: number): number {
    const order = this.order;
    const sorted = this.sorted;
    while (low < high) {
      const mid = (low + high) >>> 1;
      const k = sorted[mid];
      if (k < key || (k === key && order[mid] < owner)) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  private grow(): void {
    const order = new Int32Array(this.order.length * 2);
    order.set(this.order);
    this.order = order;
    const sorted = new Float64Array(this.sorted.length * 2);
    sorted.set(this.sorted);
    this.sorted = sorted;
  }

  private ensureOwner(owner: number): void {
    if (owner < this.member.length) return;
    let capacity = Math.max(64, this.member.length);
    while (capacity <= owner) capacity *= 2;
    const member = new Uint8Array(capacity);
    member.set(this.member);
    this.member = member;
    const keys = new Float64Array(capacity);
    keys.set(this.keys);
    this.keys = keys;
  }
}
