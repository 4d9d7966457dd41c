/**
 * bin/kvgate.js runs the esbuild bundle (scripts/build.ts) and never stale code. Each test works on
 * a copy of the launcher, build script and sources in a temporary directory (node_modules linked),
 * so it can make the bundle missing, fresh or stale without touching the checkout.
 */
import { spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function kvgate(root: string, args: readonly string[]): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [join(root, 'bin', 'kvgate.js'), ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

function setMtime(path: string, minutesAgo: number): void {
  const when = new Date(Date.now() - minutesAgo * 60_000);
  utimesSync(path, when, when);
}

/** Every file and directory under `path` was last modified `minutesAgo`, so that a test decides what is newer. */
function age(path: string, minutesAgo: number): void {
  if (statSync(path).isDirectory()) {
    for (const name of readdirSync(path)) age(join(path, name), minutesAgo);
  }
  setMtime(path, minutesAgo);
}

/** A stand-in bundle that says it ran, modified `minutesAgo`. */
function fakeBundle(path: string, minutesAgo: number): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, "console.log('the old bundle ran');\n");
  setMtime(path, minutesAgo);
}

describe('bin/kvgate.js', () => {
  let root: string;
  let bundle: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'kvgate-launcher-'));
    for (const path of ['bin/kvgate.js', 'scripts/build.ts', 'tsconfig.json', 'package.json', 'src']) {
      cpSync(join(REPO, path), join(root, path), { recursive: true });
    }
    symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'), 'dir');
    for (const path of ['bin', 'scripts', 'tsconfig.json', 'package.json', 'src']) age(join(root, path), 60);
    bundle = join(root, 'build', 'kvgate', 'main.js');
  });

  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('builds the missing bundle, runs --help from it, and resolves source-relative paths', async () => {
    const run = await kvgate(root, ['--help']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: kvgate /);
    expect(existsSync(bundle)).toBe(true);
    expect(readFileSync(bundle, 'utf8')).not.toContain('__name(');
    // The wasm kernel was assembled from the copy's src/tokens/wasm/xxh3.wat into the copy's build/.
    expect(existsSync(join(root, 'build', 'xxh3.wasm'))).toBe(true);
    // Stack traces map to the sources: every source of the map is a file under the copy's src/.
    const map = JSON.parse(readFileSync(`${bundle}.map`, 'utf8')) as { sources: string[] };
    expect(map.sources).toContain('../../src/cli/main.ts');
    for (const source of map.sources) {
      const path = resolve(dirname(bundle), source);
      expect(path.startsWith(join(root, 'src'))).toBe(true);
      expect(existsSync(path)).toBe(true);
    }
  });

  it('runs a fresh bundle as it is, and rebuilds it once a source file is newer', async () => {
    fakeBundle(bundle, 30);
    const fresh = await kvgate(root, ['--help']);
    expect(fresh).toEqual({ code: 0, stdout: 'the old bundle ran\n', stderr: '' });

    const main = join(root, 'src', 'cli', 'main.ts');
    writeFileSync(
      main,
      readFileSync(main, 'utf8').replace("'KV-cache-aware,", "'Edited description. KV-cache-aware,"),
    );
    const edited = await kvgate(root, ['--help']);
    expect(edited.stderr).toBe('');
    expect(edited.stdout).toContain('Edited description.');
    expect(readFileSync(bundle, 'utf8')).not.toContain('the old bundle ran');
  });

  it("gives each bundled module its own import.meta.url, .filename and .dirname (the source file's)", async () => {
    const main = join(root, 'src', 'cli', 'main.ts');
    writeFileSync(
      main,
      readFileSync(main, 'utf8').replace(
        'registerCommands(program);\n',
        'registerCommands(program);\nconsole.log(import.meta.url, import.meta.filename, import.meta.dirname);\n',
      ),
    );
    const run = await kvgate(root, ['--version']);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe(`${pathToFileURL(main).href} ${main} ${dirname(main)}\n0.1.0\n`);
    expect(existsSync(bundle)).toBe(true);
  });

  it('reports errors thrown by the bundle with stack frames in src/', async () => {
    const main = join(root, 'src', 'cli', 'main.ts');
    const source = readFileSync(main, 'utf8').replace(
      'registerCommands(program);\n',
      "registerCommands(program);\nthrow new Error('thrown from main.ts');\n",
    );
    writeFileSync(main, source);
    const line = source.split('\n').findIndex((text) => text.includes('thrown from main.ts')) + 1;
    const run = await kvgate(root, ['--help']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('Error: thrown from main.ts');
    expect(run.stderr).toContain(`${join(root, 'src', 'cli', 'main.ts')}:${line}:`);
    expect(existsSync(bundle)).toBe(true); // it was the bundle that threw, not the tsx fallback
  });

  it('counts files deep under src/, deleted files, and the build script', async () => {
    const radix = join(root, 'src', 'kv', 'radix');
    fakeBundle(bundle, 30);
    setMtime(join(radix, 'hash.ts'), 10);
    expect((await kvgate(root, ['--version'])).stdout).toBe('0.1.0\n');

    fakeBundle(bundle, 30);
    writeFileSync(join(radix, 'unused.ts'), 'export {};\n');
    setMtime(join(radix, 'unused.ts'), 40);
    setMtime(radix, 40);
    setMtime(join(radix, 'hash.ts'), 40);
    expect((await kvgate(root, ['--version'])).stdout).toBe('the old bundle ran\n');
    rmSync(join(radix, 'unused.ts')); // the directory's mtime is now
    expect((await kvgate(root, ['--version'])).stdout).toBe('0.1.0\n');

    fakeBundle(bundle, 30);
    setMtime(join(root, 'scripts', 'build.ts'), 10);
    expect((await kvgate(root, ['--version'])).stdout).toBe('0.1.0\n');
  });

  it('lets concurrent launches rebuild a stale bundle without corrupting it', async () => {
    fakeBundle(bundle, 30);
    setMtime(join(root, 'src', 'cli', 'main.ts'), 10);
    const runs = await Promise.all([1, 2, 3].map(() => kvgate(root, ['--version'])));
    for (const run of runs) expect(run).toEqual({ code: 0, stdout: '0.1.0\n', stderr: '' });
    expect((await kvgate(root, ['--help'])).stdout).toMatch(/^Usage: kvgate /);
    // Every build renamed its temporary files into place: none is left, the source map is there.
    const built = readdirSync(dirname(bundle));
    expect(built.filter((name) => name.endsWith('.tmp'))).toEqual([]);
    expect(built).toContain('main.js.map');
  });

  it('falls back to the sources through tsx, with one warning line, when it cannot build', async () => {
    mkdirSync(join(root, 'build'));
    writeFileSync(join(root, 'build', 'kvgate'), 'a file where the bundle directory should be\n');
    const run = await kvgate(root, ['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: kvgate /);
    expect(run.stderr).toMatch(/^kvgate: could not build .*; running the sources through tsx\n$/);
  });
});
