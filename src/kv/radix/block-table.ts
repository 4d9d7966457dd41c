/**
 * Per-owner block hash -> entry lookup: an open-addressing table (linear probing) whose slots hold
 * `tag | (entry id + 1)`: 0 is empty, TOMBSTONE a removed key. Keys live in the entry records; the tag
 * is the key hash's bits above the entry id bits (`entryMask`), so a probe reads an entry record only
 * when the tags agree (about 1 in 128 for other keys while entry ids fit 24 bits). An indexer whose
 * entry ids outgrow its mask switches to a full 31-bit mask (tag 0) and rebuilds its tables.
 * Removal leaves a tombstone unless the next slot is empty; then the tombstones before it are emptied
 * too. Neither reads other entries (backward shifting would, one cache miss each). The caller keeps
 * live keys + tombstones <= 3/4 of the slots and rehashes past that.
 * Functions over a caller-held Int32Array so one owner's table is one typed array.
 */
import { ENTRY_STRIDE, KEY_HI, KEY_LO } from './entry-pool.ts';
import { hashPair } from './hash.ts';

export const MIN_BLOCK_TABLE = 8;
export const TOMBSTONE = -1;
/** Entry ids below 2^24 leave 7 tag bits in a slot. */
export const TAGGED_ENTRY_MASK = (1 << 24) - 1;
export const UNTAGGED_ENTRY_MASK = 0x7fffffff;

/** The entry a live slot (> 0) holds. */
export function slotEntry(slot: number, entryMask: number): number {
  return (slot & entryMask) - 1;
}

/**
 * The key's entry, or -1. On a miss, `probe` receives where the key would go: probe[0] the first
 * tombstone or empty slot on its path, probe[1] its tag (see blockTablePlaceAt).
 */
export function blockTableFind(
  slots: Int32Array,
  data: Int32Array,
  lo: number,
  hi: number,
  entryMask: number,
  probe: Int32Array,
): number {
  const mask = slots.length - 1;
  const h = hashPair(lo, hi);
  const tag = h & ~entryMask & 0x7fffffff;
  let i = h & mask;
  let free = -1;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) break;
    if (slot > 0) {
      if ((slot & ~entryMask) === tag) {
        const entry = (slot & entryMask) - 1;
        const at = entry * ENTRY_STRIDE;
        if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) return entry;
      }
    } else if (free < 0) free = i;
    i = (i + 1) & mask;
  }
  probe[0] = free < 0 ? i : free;
  probe[1] = tag;
  return -1;
}

/**
 * Puts `entry` at the slot a missed blockTableFind reported, the table unchanged since. Returns 1
 * when it took an empty slot, 0 for a tombstone.
 */
export function blockTablePlaceAt(slots: Int32Array, probe: Int32Array, entry: number): number {
  const i = probe[0];
  const empty = slots[i] === 0 ? 1 : 0;
  slots[i] = probe[1] | (entry + 1);
  return empty;
}

/** Places an entry whose key is absent. Returns 1 when it took an empty slot, 0 for a tombstone. */
export function blockTablePlace(
  slots: Int32Array,
  data: Int32Array,
  entry: number,
  entryMask: number,
): number {
  const mask = slots.length - 1;
  const at = entry * ENTRY_STRIDE;
  const h = hashPair(data[at + KEY_LO], data[at + KEY_HI]);
  let i = h & mask;
  while (slots[i] > 0) i = (i + 1) & mask;
  const empty = slots[i] === 0 ? 1 : 0;
  slots[i] = (h & ~entryMask & 0x7fffffff) | (entry + 1);
  return empty;
}

/**
 * Removes the key (lo, hi). Returns its entry, or -1 when absent; freed[0] is then the number of slots
 * that became empty (the key's, and the tombstones before it, when the next slot is empty) or 0.
 */
export function blockTableRemove(
  slots: Int32Array,
  data: Int32Array,
  lo: number,
  hi: number,
  entryMask: number,
  freed: Int32Array,
): number {
  const mask = slots.length - 1;
  const h = hashPair(lo, hi);
  const tag = h & ~entryMask & 0x7fffffff;
  let i = h & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    if (slot > 0 && (slot & ~entryMask) === tag) {
      const entry = (slot & entryMask) - 1;
      const at = entry * ENTRY_STRIDE;
      if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) {
        if (slots[(i + 1) & mask] !== 0) {
          slots[i] = TOMBSTONE;
          freed[0] = 0;
          return entry;
        }
        // The cluster ends here: this slot and the tombstones just before it are on no probe path.
        let emptied = 1;
        slots[i] = 0;
        for (let j = (i - 1) & mask; slots[j] === TOMBSTONE; j = (j - 1) & mask) {
          slots[j] = 0;
          emptied++;
        }
        freed[0] = emptied;
        return entry;
      }
    }
    i = (i + 1) & mask;
  }
}

/**
 * Rebuilds `into` (zeroed here) from the live keys of `from`, dropping tombstones; `from` may be a
 * scratch copy of `into`'s old contents. Slots are re-tagged with `entryMask`. Returns the live keys.
 */
export function blockTableRehash(
  from: Int32Array,
  fromLength: number,
  fromMask: number,
  into: Int32Array,
  data: Int32Array,
  entryMask: number,
): number {
  into.fill(0);
  let live = 0;
  for (let i = 0; i < fromLength; i++) {
    const slot = from[i];
    if (slot > 0) {
      blockTablePlace(into, data, (slot & fromMask) - 1, entryMask);
      live++;
    }
  }
  return live;
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
