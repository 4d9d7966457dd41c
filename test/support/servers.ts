/**
 * Real infrastructure for tests and benchmarks (nats.js `nst/` pattern): a nats-server with
 * JetStream and a single-member etcd, each on free loopback ports with its own data directory
 * under a temp dir, started and health-checked over HTTP (nats `/healthz?js-enabled-only=true`,
 * etcd `/health`; never a bare TCP probe, which makes nats-server log parser errors), stopped
 * with SIGTERM (SIGKILL after a grace period). Both can be stopped and started again on the same
 * ports and data, for reconnect tests. Every child is killed if the test process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';
export const ETCD_BIN = process.env.ETCD_BIN ?? (existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : 'etcd');

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** A free loopback TCP port (the OS picks it; released before use, so a tiny race remains). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function launch(bin: string, args: string[], logFile: string): ChildProcess {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function waitHealthy(
  url: string,
  child: ChildProcess,
  logFile: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(
        `${url}: process exited (${child.exitCode ?? child.signalCode}); log:\n${tail(logFile)}`,
      );
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline)
      throw new Error(`${url}: not healthy after ${timeoutMs} ms; log:\n${tail(logFile)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
}

async function terminate(child: ChildProcess | undefined, graceMs = 5_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

abstract class ManagedServer {
  protected child: ChildProcess | undefined;
  constructor(
    readonly dir: string,
    protected readonly ownsDir: boolean,
  ) {}

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  abstract start(): Promise<void>;

  /** Stops the process; the data directory stays for a later start(). */
  async stop(): Promise<void> {
    await terminate(this.child);
    this.child = undefined;
  }

  /** Kills the process with SIGKILL (a crash). */
  async kill(): Promise<void> {
    if (!this.running) return;
    const child = this.child!;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    this.child = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the process and deletes its data directory. */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export class NatsServer extends ManagedServer {
  constructor(
    dir: string,
    ownsDir: boolean,
    readonly port: number,
    readonly monitorPort: number,
  ) {
    super(dir, ownsDir);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const logFile = join(this.dir, 'nats.log');
    this.child = launch(
      NATS_SERVER_BIN,
      [
        '-js',
        '-a',
        '127.0.0.1',
        '-p',
        String(this.port),
        '-m',
        String(this.monitorPort),
        '-sd',
        join(this.dir, 'store'),
      ],
      logFile,
    );
    await waitHealthy(
      `http://127.0.0.1:${this.monitorPort}/healthz?js-enabled-only=true`,
      this.child,
      logFile,
      15_000,
    );
  }
}

export class EtcdServer extends ManagedServer {
  constructor(
    dir: string,
    ownsDir: boolean,
    readonly clientPort: number,
    readonly peerPort: number,
  ) {
    super(dir, ownsDir);
  }

  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const logFile = join(this.dir, 'etcd.log');
    const client = `http://127.0.0.1:${this.clientPort}`;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    this.child = launch(
      ETCD_BIN,
      [
        '--name',
        'kvgate-test',
        '--data-dir',
        join(this.dir, 'etcd-data'),
        '--logger',
        'zap',
        '--log-level',
        'warn',
        '--listen-client-urls',
        client,
        '--advertise-client-urls',
        client,
        '--listen-peer-urls',
        peer,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster',
        `kvgate-test=${peer}`,
        '--initial-cluster-state',
        'new',
      ],
      logFile,
    );
    await waitHealthy(`${client}/health`, this.child, logFile, 20_000);
  }
}

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startNatsServer(options: { dir?: string } = {}): Promise<NatsServer> {
  const server = new NatsServer(
    options.dir ?? tempDir('kvgate-nats-'),
    options.dir === undefined,
    await freePort(),
    await freePort(),
  );
  await server.start();
  return server;
}

export async function startEtcd(options: { dir?: string } = {}): Promise<EtcdServer> {
  const server = new EtcdServer(
    options.dir ?? tempDir('kvgate-etcd-'),
    options.dir === undefined,
    await freePort(),
    await freePort(),
  );
  await server.start();
  return server;
}

/** Creates an etcd handle on free ports without starting it (for "etcd is down at start" tests). */
export async function preparedEtcd(): Promise<EtcdServer> {
  return new EtcdServer(tempDir('kvgate-etcd-'), true, await freePort(), await freePort());
}

/** Creates a NATS handle on free ports without starting it (for "NATS is down at start" tests). */
export async function preparedNats(): Promise<NatsServer> {
  return new NatsServer(tempDir('kvgate-nats-'), true, await freePort(), await freePort());
}
