/**
 * Per-owner block hash -> entry lookup: an open-addressing table (linear probing) whose slots hold
 * `tag | (entry id + 1)`, 0 when empty. Keys live in the entry records.
 *
 * With g = the key's 31-bit hash, a table of 2^k slots puts a key at home slot g's top k bits, and a
 * slot's tag is g's top bits above the entry id bits (`entryMask`, as wide as the record pool's
 * capacity needs). So while the tag bits cover the k home bits (small tables, the usual case: 13 tag
 * bits at 2^18 entries), a slot's home is `slot >>> clz32(size)` with no entry read: removal shifts
 * later cluster members back (backward-shift deletion, no tombstones) and a resize re-places keys
 * from the slots alone. A probe reads an entry record only when the tags agree, i.e. same home and
 * same extra tag bits. Bigger tables fall back to reading entries for homes. When the record pool
 * outgrows the mask, `retag` clears the tag bits that become entry id bits; homes do not move.
 * The caller keeps keys <= 3/4 of the slots. Functions over a caller-held Int32Array so one owner's
 * table is one typed array.
 */

import { hashPair } from './hash.ts';
import { ENTRY_STRIDE, KEY_HI, KEY_LO } from './record-pool.ts';

export const MIN_BLOCK_TABLE = 8;

/** The entry id mask for a pool of `capacity` entries (ids + 1 up to capacity must fit). */
export function entryMaskFor(capacity: number): number {
  const bits = 32 - Math.clz32(capacity);
  return bits >= 31 ? 0x7fffffff : (1 << bits) - 1;
}

/** The entry a live slot (non-zero) holds. */
export function slotEntry(slot: number, entryMask: number): number {
  return (slot & entryMask) - 1;
}

function keyHash(data: Int32Array, entry: number): number {
  const at = entry * ENTRY_STRIDE;
  return hashPair(data[at + KEY_LO], data[at + KEY_HI]) >>> 1;
}

/** The home slot of a live slot value in a table of 2^k slots (shift = clz32(2^k) = 31 - k). */
function homeOf(slot: number, shift: number, data: Int32Array, entryMask: number): number {
  // The tag holds the home bits when they all lie above the entry id bits.
  return entryMask >>> shift === 0 ? slot >>> shift : keyHash(data, (slot & entryMask) - 1) >>> shift;
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
  const g = hashPair(lo, hi) >>> 1;
  const tag = g & ~entryMask;
  let i = g >>> Math.clz32(slots.length);
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
  const g = keyHash(data, entry);
  placeSlot(slots, g >>> Math.clz32(slots.length), (g & ~entryMask) | (entry + 1));
}

function placeSlot(slots: Int32Array, home: number, slot: number): void {
  const mask = slots.length - 1;
  let i = home;
  while (slots[i] !== 0) i = (i + 1) & mask;
  slots[i] = slot;
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
  const g = hashPair(lo, hi) >>> 1;
  const tag = g & ~entryMask;
  let i = g >>> Math.clz32(slots.length);
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
  const shift = Math.clz32(slots.length);
  let j = hole;
  for (;;) {
    j = (j + 1) & mask;
    const slot = slots[j];
    if (slot === 0) break;
    const home = homeOf(slot, shift, data, entryMask);
    // It may move back unless its home lies cyclically within (hole, j].
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      slots[hole] = slot;
      hole = j;
    }
  }
  slots[hole] = 0;
}

/**
 * Rebuilds `into` (zeroed here) from the keys in the first `fromLength` slots of `from`, which may be
 * a scratch copy of `into`'s old contents. Returns the number of keys.
 */
export function blockTableRehash(
  from: Int32Array,
  fromLength: number,
  into: Int32Array,
  data: Int32Array,
  entryMask: number,
): number {
  into.fill(0);
  const shift = Math.clz32(into.length);
  let keys = 0;
  for (let i = 0; i < fromLength; i++) {
    const slot = from[i];
    if (slot !== 0) {
      placeSlot(into, homeOf(slot, shift, data, entryMask), slot);
      keys++;
    }
  }
  return keys;
}

/**
 * Moves a tagged table's slots (block tables, the child table) from `oldMask` to the wider
 * `newMask`: the tag bits now under the mask clear, every slot stays where it is.
 */
export function retagSlots(slots: Int32Array, oldMask: number, newMask: number): void {
  const clear = ~(newMask & ~oldMask);
  for (let i = 0; i < slots.length; i++) slots[i] &= clear;
}

/**
 * The smallest table that holds `keys` keys at most 5/8 full. (At most half full, an owner near a
 * power of two, e.g. a 200-block cache that briefly holds 300 while a request's blocks are stored before
 * older ones are evicted, would double and halve its table over and over, each time re-placing every key.)
 */
export function blockTableSizeFor(keys: number): number {
  let size = MIN_BLOCK_TABLE;
  while (8 * keys > 5 * size) size *= 2;
  return size;
}
