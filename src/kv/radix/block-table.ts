/**
 * Per-owner block hash -> entry lookup: an open-addressing table of entry id + 1 (0 is empty, TOMBSTONE
 * a removed key), keys read from the entry records. Linear probing. A parallel byte array holds a tag
 * per slot (the top 8 bits of the key's hash, independent of its home slot), so a probe reads an entry
 * record (a likely cache miss) only when the tag matches: 1 time in 256 for another key.
 * Removal leaves a tombstone unless the next slot is empty; then the tombstones before it are emptied
 * too. Neither reads other entries (backward shifting would, one cache miss each). The caller keeps
 * live keys + tombstones <= 3/4 of the slots and rehashes past that.
 * Functions over caller-held arrays so one owner's table is two typed arrays.
 */
import { ENTRY_STRIDE, type EntryPool, KEY_HI, KEY_LO } from './entry-pool.ts';
import { hashPair } from './hash.ts';

export const MIN_BLOCK_TABLE = 8;
export const TOMBSTONE = -1;

export function blockTableFind(
  slots: Int32Array,
  tags: Uint8Array,
  entries: EntryPool,
  lo: number,
  hi: number,
): number {
  const mask = slots.length - 1;
  const data = entries.data;
  const hash = hashPair(lo, hi);
  const tag = hash >>> 24;
  let i = hash & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    if (slot > 0 && tags[i] === tag) {
      const at = (slot - 1) * ENTRY_STRIDE;
      if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) return slot - 1;
    }
    i = (i + 1) & mask;
  }
}

/** Places an entry whose key is absent. Returns 1 when it took an empty slot, 0 for a tombstone. */
export function blockTablePlace(
  slots: Int32Array,
  tags: Uint8Array,
  entries: EntryPool,
  entry: number,
): number {
  const at = entry * ENTRY_STRIDE;
  return placeHashed(slots, tags, hashPair(entries.data[at + KEY_LO], entries.data[at + KEY_HI]), entry);
}

function placeHashed(slots: Int32Array, tags: Uint8Array, hash: number, entry: number): number {
  const mask = slots.length - 1;
  let i = hash & mask;
  while (slots[i] > 0) i = (i + 1) & mask;
  const empty = slots[i] === 0 ? 1 : 0;
  slots[i] = entry + 1;
  tags[i] = hash >>> 24;
  return empty;
}

/**
 * Removes the key (lo, hi). Returns its entry, or -1 when absent; freed[0] is then the number of slots
 * that became empty (the key's, and the tombstones before it, when the next slot is empty) or 0.
 */
export function blockTableRemove(
  slots: Int32Array,
  tags: Uint8Array,
  entries: EntryPool,
  lo: number,
  hi: number,
  freed: Int32Array,
): number {
  const mask = slots.length - 1;
  const data = entries.data;
  const hash = hashPair(lo, hi);
  const tag = hash >>> 24;
  let i = hash & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    if (slot > 0 && tags[i] === tag) {
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

/** Tables of `capacity` slots holding the live keys of `old` (tombstones dropped). */
export function blockTableRehash(
  old: Int32Array,
  entries: EntryPool,
  capacity: number,
): { slots: Int32Array; tags: Uint8Array } {
  const slots = new Int32Array(capacity);
  const tags = new Uint8Array(capacity);
  for (let i = 0; i < old.length; i++) if (old[i] > 0) blockTablePlace(slots, tags, entries, old[i] - 1);
  return { slots, tags };
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
