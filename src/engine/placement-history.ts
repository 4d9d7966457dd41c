/**
 * The last N finished requests' placements. Recording runs once per request and is a ring write;
 * a lookup scans the ring, newest first: lookups are for tests and diagnostics. (A Map by request
 * id cost ~1 µs per request at 10,000 entries, and evicting its oldest entry through
 * `keys().next()` ~10 µs: the iteration walks every deleted entry still in the table.)
 */
export class PlacementHistory<P extends { readonly requestId: string }> {
  private readonly ring: (P | undefined)[];
  /** The slot the next entry goes to (the oldest entry once the ring is full). */
  private next = 0;

  constructor(readonly limit: number) {
    this.ring = new Array<P | undefined>(limit).fill(undefined);
  }

  /** The newest entry recorded for `requestId`. */
  get(requestId: string): P | undefined {
    const ring = this.ring;
    for (let i = 1; i <= ring.length; i++) {
      const entry = ring[(this.next - i + ring.length) % ring.length];
      if (entry === undefined) return undefined;
      if (entry.requestId === requestId) return entry;
    }
    return undefined;
  }

  /** Records `entry` as the newest (the oldest goes once `limit` are held). */
  add(entry: P): void {
    if (this.limit === 0) return;
    const slot = this.next;
    this.ring[slot] = entry;
    this.next = slot + 1 === this.limit ? 0 : slot + 1;
  }
}
