/**
 * Assembles the hand-written xxh3 kernel (`xxh3.wat`) into a wasm binary with the wabt npm package
 * (pure JS, no native toolchain). Used by scripts/build-wasm.ts and, when no up-to-date build is
 * cached in build/, by the loader at import time.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import wabt from 'wabt';

export const XXH3_WAT_PATH = fileURLToPath(new URL('./xxh3.wat', import.meta.url));
export const XXH3_WASM_PATH = fileURLToPath(new URL('../../../build/xxh3.wasm', import.meta.url));
/** Holds the sha256 of the .wat source the cached binary was assembled from. */
export const XXH3_WASM_SOURCE_HASH_PATH = `${XXH3_WASM_PATH}.sha256`;

export function readXxh3Wat(): string {
  return readFileSync(XXH3_WAT_PATH, 'utf8');
}

export function sourceHash(source: string): string {
  return createHash('sha256').update(source).digest('hex');
}

export async function assembleWat(source: string, filename = 'xxh3.wat'): Promise<Uint8Array> {
  const toolkit = await wabt();
  const module = toolkit.parseWat(filename, source);
  try {
    module.resolveNames();
    module.validate();
    return module.toBinary({ log: false, write_debug_names: false }).buffer;
  } finally {
    module.destroy();
  }
}

/** The cached binary, if it was assembled from exactly `source`; otherwise null. */
export function readCachedWasm(source: string): Uint8Array | null {
  try {
    const recorded = readFileSync(XXH3_WASM_SOURCE_HASH_PATH, 'utf8').trim();
    if (recorded !== sourceHash(source)) return null;
    return readFileSync(XXH3_WASM_PATH);
  } catch {
    return null;
  }
}

/** Writes the binary and its source hash to build/ (each atomically, via rename). */
export function writeCachedWasm(source: string, binary: Uint8Array): void {
  mkdirSync(dirname(XXH3_WASM_PATH), { recursive: true });
  const suffix = `.${process.pid}.tmp`;
  writeFileSync(XXH3_WASM_PATH + suffix, binary);
  renameSync(XXH3_WASM_PATH + suffix, XXH3_WASM_PATH);
  writeFileSync(XXH3_WASM_SOURCE_HASH_PATH + suffix, `${sourceHash(source)}\n`);
  renameSync(XXH3_WASM_SOURCE_HASH_PATH + suffix, XXH3_WASM_SOURCE_HASH_PATH);
}
