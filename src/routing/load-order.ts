/**
 * Owners sorted by a per-owner load key, ascending. A changed key moves its owner by insertion
 * (shifting the owners in between), so an update costs O(distance moved) and the least loaded owners
 * are read from the front without scanning every owner. Typed arrays only.
 */
export class LoadOrder {
  private order = new Int32Array(64);
  private size = 0;
  /** Index of each owner in `order`, or -1. */
  private position = new Int32Array(0);
  private keys = new Float64Array(0);

  get count(): number {
    return this.size;
  }

  /** Owners in key order: entries [0, count) (read-only view, valid until the next change). */
  get owners(): Int32Array {
    return this.order;
  }

  /** Keys by owner id (read-only view; meaningful for owners in the order). */
  get keyByOwner(): Float64Array {
    return this.keys;
  }

  has(owner: number): boolean {
    return owner >= 0 && owner < this.position.length && this.position[owner] >= 0;
  }

  /** Adds the owner with this key, or moves it when present. */
  set(owner: number, key: number): void {
    this.ensureOwner(owner);
    if (this.position[owner] < 0) {
      if (this.size === this.order.length) {
        const grown = new Int32Array(this.order.length * 2);
        grown.set(this.order);
        this.order = grown;
      }
      this.order[this.size] = owner;
      this.position[owner] = this.size++;
      this.keys[owner] = Number.POSITIVE_INFINITY;
    }
    this.move(owner, key);
  }

  delete(owner: number): void {
    if (!this.has(owner)) return;
    const order = this.order;
    const position = this.position;
    for (let i = position[owner] + 1; i < this.size; i++) {
      order[i - 1] = order[i];
      position[order[i - 1]] = i - 1;
    }
    this.size--;
    position[owner] = -1;
  }

  private move(owner: number, key: number): void {
    const order = this.order;
    const position = this.position;
    const keys = this.keys;
    if (keys[owner] === key) return;
    let i = position[owner];
    keys[owner] = key;
    while (i > 0 && keys[order[i - 1]] > key) {
      order[i] = order[i - 1];
      position[order[i]] = i;
      i--;
    }
    while (i + 1 < this.size && keys[order[i + 1]] < key) {
      order[i] = order[i + 1];
      position[order[i]] = i;
      i++;
    }
    order[i] = owner;
    position[owner] = i;
  }

  private ensureOwner(owner: number): void {
    if (owner < this.position.length) return;
    let capacity = Math.max(64, this.position.length);
    while (capacity <= owner) capacity *= 2;
    const position = new Int32Array(capacity).fill(-1);
    position.set(this.position);
    this.position = position;
    const keys = new Float64Array(capacity);
    keys.set(this.keys);
    this.keys = keys;
  }
}
