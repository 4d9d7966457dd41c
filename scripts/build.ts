/**
 * Bundles the kvgate CLI (src/cli/main.ts) into build/kvgate/main.js with esbuild, the file that
 * bin/kvgate.js runs. Run by `npm run build` and `prepare`; bin/kvgate.js also calls buildKvgate()
 * itself when a file under src/ is newer than the bundle.
 *
 * Production settings: no keepNames (under tsx every named function and class is wrapped in a
 * name-setting call, which costs per closure created), node_modules stay external (loaded from
 * node_modules at run time), and a source map so that stack traces point at src/.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** bin/kvgate.js spells the same path. */
const BUNDLE_PATH = join(ROOT, 'build', 'kvgate', 'main.js');
const ENTRY = join(ROOT, 'src', 'cli', 'main.ts');

/**
 * A module's own location, seen from the bundle: `import.meta.url` inside the bundle is the
 * bundle's URL, so each module's `import.meta.url` / `.dirname` / `.filename` is rewritten to its
 * source file's, relative to the bundle (paths such as `new URL('./xxh3.wat', import.meta.url)`
 * keep resolving next to the source, wherever the checkout lives).
 */
function sourceLocationPlugin(outDir: string): Plugin {
  return {
    name: 'kvgate-source-location',
    setup(pluginBuild) {
      pluginBuild.onLoad({ filter: /\.[cm]?ts$/ }, (args) => {
        let contents = readFileSync(args.path, 'utf8');
        if (contents.includes('import.meta.')) {
          const fromBundle = JSON.stringify(relative(outDir, args.path).split(sep).join('/'));
          const url = `new URL(${fromBundle}, import.meta.url).href`;
          contents = contents
            .replaceAll('import.meta.url', url)
            .replaceAll('import.meta.filename', `__kvgateFileURLToPath(${url})`)
            .replaceAll('import.meta.dirname', `__kvgatePathDirname(__kvgateFileURLToPath(${url}))`);
        }
        return { contents, loader: 'ts' };
      });
    },
  };
}

/**
 * Builds the bundle and its source map. Concurrent builds (several kvgate processes launched at
 * once) cannot corrupt it: each writes temporary files and renames them into place. The bundle's
 * mtime is set to when this build started, so a source edited while it ran still counts as newer.
 */
export async function buildKvgate(): Promise<void> {
  await buildBundle(ENTRY, BUNDLE_PATH);
}

/**
 * Bundles any TypeScript entry of this repository with the production settings (benchmarks use it to
 * run their own in-process servers the way the product runs).
 */
export async function buildBundle(entry: string, outfile: string): Promise<void> {
  const startedAt = new Date();
  const outDir = dirname(outfile);
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    keepNames: false,
    sourcemap: 'linked',
    sourcesContent: false,
    banner: {
      js: "import { fileURLToPath as __kvgateFileURLToPath } from 'node:url'; import { dirname as __kvgatePathDirname } from 'node:path';",
    },
    plugins: [sourceLocationPlugin(outDir)],
    write: false,
    logLevel: 'silent',
  });
  mkdirSync(outDir, { recursive: true });
  const suffix = `.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  // The map first: a bundle is never visible before the map it links to.
  const files = [...result.outputFiles].sort(
    (a, b) => Number(b.path.endsWith('.map')) - Number(a.path.endsWith('.map')),
  );
  for (const file of files) {
    const temporary = file.path + suffix;
    try {
      writeFileSync(temporary, file.contents);
      utimesSync(temporary, startedAt, startedAt);
      renameSync(temporary, file.path);
    } finally {
      rmSync(temporary, { force: true });
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = performance.now();
  await buildKvgate();
  console.log(`wrote ${relative(ROOT, BUNDLE_PATH)} (${Math.round(performance.now() - started)} ms)`);
}
