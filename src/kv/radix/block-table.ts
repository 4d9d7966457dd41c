/**
 * Per-owner block hash -> entry lookup: an open-addressing table of entry id + 1 (0 is empty, TOMBSTONE
 * a removed key), keys read from the entry records. Linear probing. (Tag bytes per slot, to skip entry
 * reads on collisions, measured no faster in bench:indexer: the tag array is one more cache line.)
 * Removal leaves a tombstone unless the next slot is empty; then the tombstones before it are emptied
 * too. Neither reads other entries (backward shifting would, one cache miss each). The caller keeps
 * live keys + tombstones <= 3/4 of the slots and rehashes past that.
 * Functions over a caller-held Int32Array so one owner's table is one typed array.
 */
import { ENTRY_STRIDE, type EntryPool, KEY_HI, KEY_LO } from './entry-pool.ts';
import { hashPair } from './hash.ts';

export const MIN_BLOCK_TABLE = 8;
export const TOMBSTONE = -1;

export function blockTableFind(slots: Int32Array, entries: EntryPool, lo: number, hi: number): number {
  const mask = slots.length - 1;
  const data = entries.data;
  let i = hashPair(lo, hi) & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    if (slot > 0) {
      const at = (slot - 1) * ENTRY_STRIDE;
      if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) return slot - 1;
    }
    i = (i + 1) & mask;
  }
}

/** Places an entry whose key is absent. Returns 1 when it took an empty slot, 0 for a tombstone. */
export function blockTablePlace(slots: Int32Array, entries: EntryPool, entry: number): number {
  const mask = slots.length - 1;
  const at = entry * ENTRY_STRIDE;
  let i = hashPair(entries.data[at + KEY_LO], entries.data[at + KEY_HI]) & mask;
  while (slots[i] > 0) i = (i + 1) & mask;
  const empty = slots[i] === 0 ? 1 : 0;
  slots[i] = entry + 1;
  return empty;
}

/**
 * Removes the key (lo, hi). Returns its entry, or -1 when absent; freed[0] is then the number of slots
 * that became empty (the key's, and the tombstones before it, when the next slot is empty) or 0.
 */
export function blockTableRemove(
  slots: Int32Array,
  entries: EntryPool,
  lo: number,
  hi: number,
  freed: Int32Array,
): number {
  const mask = slots.length - 1;
  const data = entries.data;
  let i = hashPair(lo, hi) & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    if (slot > 0) {
      const at = (slot - 1) * ENTRY_STRIDE;
      if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) {
        if (slots[(i + 1) & mask] !== 0) {
          slots[i] = TOMBSTONE;
          freed[0] = 0;
          return slot - 1;
        }
        // The cluster ends here: this slot and the tombstones just before it are on no probe path.
        let emptied = 1;
        slots[i] = 0;
        for (let j = (i - 1) & mask; slots[j] === TOMBSTONE; j = (j - 1) & mask) {
          slots[j] = 0;
          emptied++;
        }
        freed[0] = emptied;
        return slot - 1;
      }
    }
    i = (i + 1) & mask;
  }
}

/** A table of `capacity` slots holding the live keys of `old` (tombstones dropped). */
export function blockTableRehash(old: Int32Array, entries: EntryPool, capacity: number): Int32Array {
  const slots = new Int32Array(capacity);
  for (let i = 0; i < old.length; i++) if (old[i] > 0) blockTablePlace(slots, entries, old[i] - 1);
  return slots;
}

/**
 * The smallest table that holds `keys` live keys at most 5/8 full. (At most half full, an owner near a
 * power of two, e.g. a 200-block cache that briefly holds 300 while a request's blocks are stored before
 * older ones are evicted, would double and halve its table over and over, each time reading every entry.)
 */
export function blockTableSizeFor(keys: number): number {
  let size = MIN_BLOCK_TABLE;
  while (8 * keys > 5 * size) size *= 2;
  return size;
}
