/**
 * Shared pieces of the adapter tests: free loopback ports (the engines' ZMQ sockets take
 * consecutive ones), a stream collector, and the comparison of KV views as sets of blocks.
 */
import { createServer } from 'node:net';
import type { RouterEvent } from '../../src/kv/events.ts';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** `count` consecutive free ports on 127.0.0.1 (rank r of an engine publishes at base + r). */
export async function freePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error('no free port range');
}

export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

/** Every stored block as `rank:parent>block/tokens`, sorted (parents follow the stored runs). */
export function blockSet(events: readonly RouterEvent[], rank?: number): string[] {
  const out: string[] = [];
  for (const { event } of events) {
    if (rank !== undefined && event.dpRank !== rank) continue;
    if (event.data.kind !== 'stored') continue;
    let parent = event.data.parentHash;
    for (const block of event.data.blocks) {
      out.push(
        `${event.dpRank}:${parent?.toString(16) ?? '-'}>${block.blockHash.toString(16)}/${block.tokensHash.toString(16)}`,
      );
      parent = block.blockHash;
    }
  }
  return out.sort();
}

export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Prompts sharing a few prefixes, so KV-aware routing has something to find. */
export function prompts(count: number, blockSize: number, seed = 1): number[][] {
  let state = seed;
  const next = () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state;
  };
  const prefixes = Array.from({ length: 5 }, () =>
    Array.from({ length: blockSize * 3 }, () => next() % 30_000),
  );
  return Array.from({ length: count }, (_, i) => [
    ...prefixes[i % prefixes.length],
    ...Array.from({ length: blockSize * (1 + (next() % 3)) + (next() % blockSize) }, () => next() % 30_000),
  ]);
}
