/**
 * The last N finished requests' placements, by request id. A ring of slots says which entry goes
 * next: evicting the oldest by iterating a Map (`keys().next()`) would walk every deleted entry
 * still in its table, ~10 µs per request at 10,000 entries.
 */
export class PlacementHistory<P> {
  private readonly byId = new Map<string, { readonly value: P; readonly slot: number }>();
  /** Request id recorded in each slot (the oldest at `next` once the ring is full). */
  private readonly ring: (string | undefined)[];
  private next = 0;

  constructor(readonly limit: number) {
    this.ring = new Array<string | undefined>(limit).fill(undefined);
  }

  get size(): number {
    return this.byId.size;
  }

  get(requestId: string): P | undefined {
    return this.byId.get(requestId)?.value;
  }

  /** Remembers `value` as the newest entry (replacing an older one of the same id); evicts the oldest. */
  set(requestId: string, value: P): void {
    if (this.limit === 0) return;
    const slot = this.next;
    const evicted = this.ring[slot];
    // A slot whose id was recorded again later no longer owns that id's entry.
    if (evicted !== undefined && this.byId.get(evicted)?.slot === slot) this.byId.delete(evicted);
    this.ring[slot] = requestId;
    this.byId.set(requestId, { value, slot });
    this.next = slot + 1 === this.limit ? 0 : slot + 1;
  }
}
