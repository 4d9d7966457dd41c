/**
 * Per-owner block hash -> entry lookup: an open-addressing table (linear probing) whose slots hold
 * `tag | (entry id + 1)`, 0 when empty. Keys live in the entry records; the tag is the key hash's bits
 * above the entry id bits (`entryMask`), so a probe reads an entry record only when the tags agree
 * (about 1 in 128 for other keys while entry ids fit 24 bits). An indexer whose entry ids outgrow its
 * mask switches to a full 31-bit mask (tag 0) and rebuilds its tables.
 * Removal shifts later members of the key's cluster back (backward-shift deletion): that reads their
 * entries (about one at the usual load), but leaves no tombstones, so misses stay short and churn
 * never forces a rehash. The caller keeps keys <= 3/4 of the slots.
 * Functions over a caller-held Int32Array so one owner's table is one typed array.
 */
import { ENTRY_STRIDE, KEY_HI, KEY_LO } from './entry-pool.ts';
import { hashPair } from './hash.ts';

export const MIN_BLOCK_TABLE = 8;
/** Entry ids below 2^24 leave 7 tag bits in a slot. */
export const TAGGED_ENTRY_MASK = (1 << 24) - 1;
export const UNTAGGED_ENTRY_MASK = 0x7fffffff;

/** The entry a live slot (non-zero) holds. */
export function slotEntry(slot: number, entryMask: number): number {
  return (slot & entryMask) - 1;
}

/**
 * The key's entry, or -1. On a miss, `probe` receives where the key would go: probe[0] the empty slot
 * ending its path, probe[1] its tag (see blockTablePlaceAt).
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
  for (;;) {
    const slot = slots[i];
    if (slot === 0) break;
    if ((slot & ~entryMask) === tag) {
      const entry = (slot & entryMask) - 1;
      const at = entry * ENTRY_STRIDE;
      if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) return entry;
    }
    i = (i + 1) & mask;
  }
  probe[0] = i;
  probe[1] = tag;
  return -1;
}

/** Puts `entry` at the slot a missed blockTableFind reported, the table unchanged since. */
export function blockTablePlaceAt(slots: Int32Array, probe: Int32Array, entry: number): void {
  slots[probe[0]] = probe[1] | (entry + 1);
}

/** Places an entry whose key is absent. */
export function blockTablePlace(slots: Int32Array, data: Int32Array, entry: number, entryMask: number): void {
  const mask = slots.length - 1;
  const at = entry * ENTRY_STRIDE;
  const h = hashPair(data[at + KEY_LO], data[at + KEY_HI]);
  let i = h & mask;
  while (slots[i] !== 0) i = (i + 1) & mask;
  slots[i] = (h & ~entryMask & 0x7fffffff) | (entry + 1);
}

/** Removes the key (lo, hi). Returns its entry, or -1 when absent. */
export function blockTableRemove(
  slots: Int32Array,
  data: Int32Array,
  lo: number,
  hi: number,
  entryMask: number,
): number {
  const mask = slots.length - 1;
  const h = hashPair(lo, hi);
  const tag = h & ~entryMask & 0x7fffffff;
  let i = h & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    if ((slot & ~entryMask) === tag) {
      const entry = (slot & entryMask) - 1;
      const at = entry * ENTRY_STRIDE;
      if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) {
        shiftBack(slots, data, i, entryMask);
        return entry;
      }
    }
    i = (i + 1) & mask;
  }
}

/** Empties slot `hole`, pulling later members of its cluster back when their home slot allows. */
function shiftBack(slots: Int32Array, data: Int32Array, hole: number, entryMask: number): void {
  const mask = slots.length - 1;
  let j = hole;
  for (;;) {
    j = (j + 1) & mask;
    const slot = slots[j];
    if (slot === 0) break;
    const at = ((slot & entryMask) - 1) * ENTRY_STRIDE;
    const home = hashPair(data[at + KEY_LO], data[at + KEY_HI]) & mask;
    // It may move back unless its home lies cyclically within (hole, j].
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      slots[hole] = slot;
      hole = j;
    }
  }
  slots[hole] = 0;
}

/**
 * Rebuilds `into` (zeroed here) from the keys of `from` (its first `fromLength` slots, tagged for
 * `fromMask`), which may be a scratch copy of `into`'s old contents. Slots are tagged for
 * `entryMask`. Returns the number of keys.
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
  let keys = 0;
  for (let i = 0; i < fromLength; i++) {
    const slot = from[i];
    if (slot !== 0) {
      blockTablePlace(into, data, (slot & fromMask) - 1, entryMask);
      keys++;
    }
  }
  return keys;
}

/**
 * The smallest table that holds `keys` keys at most 5/8 full. (At most half full, an owner near a
 * power of two, e.g. a 200-block cache that briefly holds 300 while a request's blocks are stored before
 * older ones are evicted, would double and halve its table over and over, each time reading every entry.)
 */
export function blockTableSizeFor(keys: number): number {
  let size = MIN_BLOCK_TABLE;
  while (8 * keys > 5 * size) size *= 2;
  return size;
}
