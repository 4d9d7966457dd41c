import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/**
 * A temporary directory made before the tests of the calling file (or describe block) and removed
 * after them. Returns `path(name)`: `name` inside it, or the directory itself without a name.
 */
export function tempDir(prefix: string): (name?: string) => string {
  let dir: string | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
  });
  afterAll(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });
  return (name) => {
    if (dir === undefined) throw new Error('tempDir: used outside the tests');
    return name === undefined ? dir : join(dir, name);
  };
}
