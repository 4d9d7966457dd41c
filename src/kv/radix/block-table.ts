/**
 * Per-owner block hash -> entry lookup: an open-addressing table of entry id + 1 (0 is empty), keys
 * read from the entry arrays. Linear probing, backward-shift deletion, load <= 3/4 (kept by the caller).
 * Functions over a caller-held Int32Array so one owner's table is one typed array.
 */
import { ENTRY_STRIDE, type EntryPool, KEY_HI, KEY_LO } from './entry-pool.ts';
import { hashPair } from './hash.ts';

export const MIN_BLOCK_TABLE = 8;

export function blockTableFind(slots: Int32Array, entries: EntryPool, lo: number, hi: number): number {
  const mask = slots.length - 1;
  const data = entries.data;
  let i = hashPair(lo, hi) & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    const entry = slot - 1;
    const at = entry * ENTRY_STRIDE;
    if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) return entry;
    i = (i + 1) & mask;
  }
}

/** Places an entry whose key is absent; the caller keeps a free slot. */
export function blockTablePlace(slots: Int32Array, entries: EntryPool, entry: number): void {
  const mask = slots.length - 1;
  let i =
    hashPair(entries.data[entry * ENTRY_STRIDE + KEY_LO], entries.data[entry * ENTRY_STRIDE + KEY_HI]) & mask;
  while (slots[i] !== 0) i = (i + 1) & mask;
  slots[i] = entry + 1;
}

/** Removes the entry stored under (lo, hi); returns it, or -1 when absent. */
export function blockTableRemove(slots: Int32Array, entries: EntryPool, lo: number, hi: number): number {
  const mask = slots.length - 1;
  const data = entries.data;
  let i = hashPair(lo, hi) & mask;
  let found = -1;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    const at = (slot - 1) * ENTRY_STRIDE;
    if (data[at + KEY_LO] === lo && data[at + KEY_HI] === hi) {
      found = slot - 1;
      break;
    }
    i = (i + 1) & mask;
  }
  let hole = i;
  let j = i;
  for (;;) {
    j = (j + 1) & mask;
    const slot = slots[j];
    if (slot === 0) break;
    const at = (slot - 1) * ENTRY_STRIDE;
    const home = hashPair(data[at + KEY_LO], data[at + KEY_HI]) & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      slots[hole] = slot;
      hole = j;
    }
  }
  slots[hole] = 0;
  return found;
}

export function blockTableRehash(old: Int32Array, entries: EntryPool, capacity: number): Int32Array {
  const slots = new Int32Array(capacity);
  for (let i = 0; i < old.length; i++) if (old[i] !== 0) blockTablePlace(slots, entries, old[i] - 1);
  return slots;
}
