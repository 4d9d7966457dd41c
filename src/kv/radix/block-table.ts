/**
 * Per-owner block hash -> entry lookup: an open-addressing table of entry id + 1 (0 is empty), keys
 * read from the entry arrays. Linear probing, backward-shift deletion, load <= 3/4 (kept by the caller).
 * Functions over a caller-held Int32Array so one owner's table is one typed array.
 */
import type { EntryPool } from './entry-pool.ts';
import { hashPair } from './hash.ts';

export const MIN_BLOCK_TABLE = 8;

export function blockTableFind(slots: Int32Array, entries: EntryPool, lo: number, hi: number): number {
  const mask = slots.length - 1;
  const los = entries.keyLo;
  const his = entries.keyHi;
  let i = hashPair(lo, hi) & mask;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    const entry = slot - 1;
    if (los[entry] === lo && his[entry] === hi) return entry;
    i = (i + 1) & mask;
  }
}

/** Places an entry whose key is absent; the caller keeps a free slot. */
export function blockTablePlace(slots: Int32Array, entries: EntryPool, entry: number): void {
  const mask = slots.length - 1;
  let i = hashPair(entries.keyLo[entry], entries.keyHi[entry]) & mask;
  while (slots[i] !== 0) i = (i + 1) & mask;
  slots[i] = entry + 1;
}

/** Removes the entry stored under (lo, hi); returns it, or -1 when absent. */
export function blockTableRemove(slots: Int32Array, entries: EntryPool, lo: number, hi: number): number {
  const mask = slots.length - 1;
  const los = entries.keyLo;
  const his = entries.keyHi;
  let i = hashPair(lo, hi) & mask;
  let found = -1;
  for (;;) {
    const slot = slots[i];
    if (slot === 0) return -1;
    if (los[slot - 1] === lo && his[slot - 1] === hi) {
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
    const home = hashPair(los[slot - 1], his[slot - 1]) & mask;
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
