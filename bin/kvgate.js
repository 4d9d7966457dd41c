#!/usr/bin/env node
// Runs the production bundle build/kvgate/main.js (made by scripts/build.ts, run by `npm ci`'s
// prepare). Never stale code: when the bundle is missing or any file under src/ (or the build
// script, or tsconfig.json) is newer, it is rebuilt first; if that fails, the TypeScript sources
// run through tsx instead, with a one-line warning on stderr.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bundle = join(root, 'build', 'kvgate', 'main.js'); // scripts/build.ts's BUNDLE_PATH

/** The newest mtime under `dir` (its files and directories, recursively: a deleted file changes its directory's). */
function newestMtimeMs(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`; // not path.join: this walk runs at every launch
    const mtime = entry.isDirectory() ? newestMtimeMs(path) : statSync(path).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

/** 0 when missing: a copy without src/ or scripts/ runs its bundle as it is; a missing bundle is built. */
function mtimeMsOrZero(path, recursive) {
  try {
    return recursive ? newestMtimeMs(path) : statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function bundleIsFresh() {
  const built = mtimeMsOrZero(bundle, false);
  if (built === 0) return false;
  const inputs = Math.max(
    mtimeMsOrZero(join(root, 'src'), true),
    mtimeMsOrZero(join(root, 'scripts', 'build.ts'), false),
    mtimeMsOrZero(join(root, 'tsconfig.json'), false),
  );
  return inputs <= built;
}

async function rebuild() {
  try {
    const { tsImport } = await import('tsx/esm/api');
    const { buildKvgate } = await tsImport('../scripts/build.ts', import.meta.url);
    await buildKvgate();
    return true;
  } catch (error) {
    const first = error?.errors?.[0]; // an esbuild failure lists its errors
    const reason = first
      ? `${first.location ? `${first.location.file}:${first.location.line}: ` : ''}${first.text}`
      : String(error?.message ?? error).split('\n')[0];
    process.stderr.write(`kvgate: could not build ${bundle} (${reason}); running the sources through tsx\n`);
    return false;
  }
}

if (bundleIsFresh() || (await rebuild())) {
  process.setSourceMapsEnabled(true);
  await import(pathToFileURL(bundle).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
