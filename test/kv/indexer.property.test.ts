/**
 * Random event sequences applied to every indexer and to a model written here (a map per owner from
 * block hash to tree path, nothing else); all must agree on every query, on errors and on sizes.
 * Two event sources: "consistent" (block hash = a function of the block's path, as engines produce,
 * small token alphabet so chains share prefixes) and "adversarial" (block hashes from a tiny alphabet,
 * so one hash lands on several paths and parents get re-pointed).
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ApproximateIndexer } from '../../src/kv/approx-indexer.ts';
import type { RouterEvent } from '../../src/kv/events.ts';
import type { KvIndexer } from '../../src/kv/indexer.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { RadixTreeIndexer } from '../../src/kv/radix-tree.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { canonicalDump, matches } from './indexer.conformance.ts';

type Op = { kind: 'event'; event: RouterEvent } | { kind: 'removeWorker'; workerId: bigint };
type Scores = Record<string, { blocks: number; treeSize: number }>;

/** The model: owner "worker:rank" -> block hash -> path ("/t1/t2/…"). */
class Model {
  private readonly owners = new Map<string, Map<bigint, string>>();

  apply(event: RouterEvent): string | null {
    const { workerId } = event;
    const { dpRank, data } = event.event;
    if (data.kind === 'cleared') {
      for (const [key, blocks] of this.owners) if (key.startsWith(`${workerId}:`)) blocks.clear();
      return null;
    }
    const key = `${workerId}:${dpRank}`;
    const blocks = this.owners.get(key) ?? new Map<bigint, string>();
    this.owners.set(key, blocks);
    if (data.kind === 'removed') {
      let error: string | null = null;
      for (const hash of data.blockHashes) if (!blocks.delete(hash)) error ??= 'KV_BLOCK_NOT_FOUND';
      return error;
    }
    let path = '';
    if (data.parentHash !== null) {
      const parent = blocks.get(data.parentHash);
      if (parent === undefined) return 'KV_PARENT_NOT_FOUND';
      path = parent;
    }
    const hashes = [data.parentHash, ...data.blocks.map((b) => b.blockHash)].filter((h) => h !== null);
    if (new Set(hashes).size !== hashes.length) return 'KV_INVALID_BLOCK_SEQUENCE';
    for (const block of data.blocks) {
      path += `/${block.tokensHash}`;
      blocks.set(block.blockHash, path);
    }
    return null;
  }

  removeWorker(workerId: bigint): void {
    for (const key of [...this.owners.keys()]) if (key.startsWith(`${workerId}:`)) this.owners.delete(key);
  }

  get size(): number {
    let size = 0;
    for (const blocks of this.owners.values()) size += blocks.size;
    return size;
  }

  matches(query: readonly bigint[], earlyExit: boolean): Scores {
    const depths = new Map<string, number>();
    for (const [key, blocks] of this.owners) {
      const held = new Set(blocks.values());
      let depth = 0;
      let path = '';
      for (; depth < query.length; depth++) {
        path += `/${query[depth]}`;
        if (!held.has(path)) break;
      }
      if (depth > 0) depths.set(key, depth);
    }
    // Early exit: the walk stops at the first depth k where at most one owner is still matching.
    let stop = Number.POSITIVE_INFINITY;
    if (earlyExit)
      for (let k = 1; k <= query.length; k++) {
        let alive = 0;
        for (const d of depths.values()) if (d >= k) alive++;
        if (alive <= 1) {
          stop = k;
          break;
        }
      }
    const out: Scores = {};
    for (const [key, depth] of depths)
      out[key] = { blocks: Math.min(depth, stop), treeSize: this.owners.get(key)!.size };
    return out;
  }
}

const TOKENS = [1, 2, 3];
/** Tokens hashes use both u32 halves. */
const tokensHash = (t: number): bigint => (BigInt(t) << 40n) | BigInt(t);
/** Consistent block hash of a path: unique per path, high bit set. */
const pathHash = (path: readonly number[]): bigint =>
  path.reduce((h, t) => h * 5n + BigInt(t), 0n) | (1n << 63n);

const QUERIES: bigint[][] = [];
(function build(prefix: number[]) {
  if (prefix.length > 0) QUERIES.push(prefix.map(tokensHash));
  if (prefix.length < 4) for (const t of TOKENS) build([...prefix, t]);
})([]);
const LONG_QUERIES = QUERIES.filter((q) => q.length === 4);

const worker = fc.integer({ min: 1, max: 3 }).map(BigInt);
const rank = fc.integer({ min: 0, max: 1 });
const token = fc.constantFrom(...TOKENS);

function stored(workerId: bigint, dpRank: number, parentHash: bigint | null, blocks: [bigint, bigint][]): Op {
  return {
    kind: 'event',
    event: {
      workerId,
      event: {
        eventId: 0n,
        dpRank,
        data: {
          kind: 'stored',
          parentHash,
          blocks: blocks.map(([blockHash, t]) => ({ blockHash, tokensHash: t })),
        },
      },
    },
  };
}

function removed(workerId: bigint, dpRank: number, blockHashes: bigint[]): Op {
  return {
    kind: 'event',
    event: { workerId, event: { eventId: 0n, dpRank, data: { kind: 'removed', blockHashes } } },
  };
}

const lifecycle: fc.Arbitrary<Op>[] = [
  fc.record({ w: worker, r: rank }).map(({ w, r }) => ({
    kind: 'event',
    event: { workerId: w, event: { eventId: 0n, dpRank: r, data: { kind: 'cleared' } } },
  })),
  worker.map((workerId) => ({ kind: 'removeWorker', workerId })),
];

const consistentOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        w: worker,
        r: rank,
        parent: fc.array(token, { maxLength: 3 }),
        tokens: fc.array(token, { minLength: 1, maxLength: 3 }),
      })
      .map(({ w, r, parent, tokens }) =>
        stored(
          w,
          r,
          parent.length === 0 ? null : pathHash(parent),
          tokens.map((t, i) => [pathHash([...parent, ...tokens.slice(0, i + 1)]), tokensHash(t)]),
        ),
      ),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({
        w: worker,
        r: rank,
        paths: fc.array(fc.array(token, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }),
      })
      .map(({ w, r, paths }) => removed(w, r, paths.map(pathHash))),
  },
  { weight: 1, arbitrary: lifecycle[0] },
  { weight: 1, arbitrary: lifecycle[1] },
);

const smallHash = fc.integer({ min: 1, max: 5 }).map((k) => BigInt(k) * 0x1_0000_0001n);
const adversarialOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        w: worker,
        r: rank,
        parent: fc.option(smallHash, { freq: 2 }),
        blocks: fc.array(fc.tuple(smallHash, token.map(tokensHash)), { minLength: 1, maxLength: 3 }),
      })
      .map(({ w, r, parent, blocks }) => stored(w, r, parent, blocks)),
  },
  {
    weight: 3,
    arbitrary: fc
      .record({ w: worker, r: rank, hashes: fc.array(smallHash, { minLength: 1, maxLength: 3 }) })
      .map(({ w, r, hashes }) => removed(w, r, hashes)),
  },
  { weight: 1, arbitrary: lifecycle[0] },
  { weight: 1, arbitrary: lifecycle[1] },
);

interface Implementation {
  readonly name: string;
  readonly create: () => KvIndexer;
}

const implementations: Implementation[] = [
  { name: 'NaiveIndexer', create: () => new NaiveIndexer() },
  { name: 'RadixTreeIndexer', create: () => new RadixTreeIndexer() },
  {
    name: 'RadixTreeIndexer (initial capacity 2: block-table entry id bits widen as it grows)',
    create: () => new RadixTreeIndexer({ initialCapacity: 2 }),
  },
  {
    name: 'ApproximateIndexer (radix tree)',
    create: () => new ApproximateIndexer({ clock: new ManualClock() }),
  },
  {
    name: 'ApproximateIndexer (naive)',
    create: () => new ApproximateIndexer({ inner: new NaiveIndexer(), clock: new ManualClock() }),
  },
];

function describeOps(ops: readonly Op[]): string {
  return ops
    .map((op) => {
      if (op.kind === 'removeWorker') return `removeWorker(${op.workerId})`;
      const { workerId, event } = op.event;
      const who = `${workerId}:${event.dpRank}`;
      const data = event.data;
      if (data.kind === 'cleared') return `cleared ${who}`;
      if (data.kind === 'removed')
        return `removed ${who} [${data.blockHashes.map((h) => h.toString(16)).join(', ')}]`;
      const blocks = data.blocks
        .map((b) => `${b.blockHash.toString(16)}@${b.tokensHash.toString(16)}`)
        .join(', ');
      return `stored ${who} parent=${data.parentHash?.toString(16) ?? 'null'} [${blocks}]`;
    })
    .join('\n');
}

function check(implementation: Implementation, ops: readonly Op[]): void {
  const model = new Model();
  const indexer = implementation.create();
  // Cheap comparison first; the failure message (with the whole sequence) is built only on a mismatch.
  const same = (actual: unknown, expected: unknown, label: string) => {
    if (!isDeepStrictEqual(actual, expected))
      expect(actual, `${implementation.name}, ${label}, after:\n${describeOps(ops)}`).toEqual(expected);
  };
  for (const [step, op] of ops.entries()) {
    if (op.kind === 'removeWorker') {
      model.removeWorker(op.workerId);
      indexer.removeWorker(op.workerId);
    } else {
      const expected = model.apply(op.event);
      same(indexer.apply(op.event)?.code ?? null, expected, `error at step ${step}`);
    }
    for (const query of LONG_QUERIES)
      same(matches(indexer, query), model.matches(query, false), `step ${step} query ${query}`);
    same(indexer.size, model.size, `size at step ${step}`);
  }
  for (const query of QUERIES) {
    same(matches(indexer, query), model.matches(query, false), `query ${query}`);
    same(matches(indexer, query, true), model.matches(query, true), `earlyExit query ${query}`);
  }
  // A dump rebuilds the same matches (entries unreachable from the root are not dumped) and the same dump.
  const rebuilt = implementation.create();
  for (const event of indexer.dump()) same(rebuilt.apply(event), null, 'dump replay');
  const blocks = (scores: Scores) =>
    Object.fromEntries(Object.entries(scores).map(([k, v]) => [k, v.blocks]));
  for (const query of QUERIES)
    same(blocks(matches(rebuilt, query)), blocks(matches(indexer, query)), `dump replay query ${query}`);
  same(canonicalDump(rebuilt), canonicalDump(indexer), 'dump of the rebuilt index');
}

describe('indexers agree with the model', () => {
  for (const implementation of implementations) {
    it(`${implementation.name}: consistent block hashes`, () => {
      fc.assert(
        fc.property(fc.array(consistentOp, { minLength: 1, maxLength: 40 }), (ops) =>
          check(implementation, ops),
        ),
        { numRuns: 300 },
      );
    });

    it(`${implementation.name}: adversarial block hashes`, () => {
      fc.assert(
        fc.property(fc.array(adversarialOp, { minLength: 1, maxLength: 40 }), (ops) =>
          check(implementation, ops),
        ),
        { numRuns: 300 },
      );
    });
  }

  it('the model itself matches the documented example', () => {
    const model = new Model();
    const ops = [
      stored(1n, 0, null, [
        [100n, 1n],
        [200n, 2n],
        [300n, 3n],
      ]),
      stored(2n, 0, null, [
        [100n, 1n],
        [400n, 4n],
        [500n, 5n],
      ]),
    ];
    for (const op of ops) if (op.kind === 'event') expect(model.apply(op.event)).toBeNull();
    expect(model.matches([1n, 2n, 3n], false)).toEqual({
      '1:0': { blocks: 3, treeSize: 3 },
      '2:0': { blocks: 1, treeSize: 3 },
    });
    expect(model.matches([1n, 2n, 3n], true)).toEqual({
      '1:0': { blocks: 2, treeSize: 3 },
      '2:0': { blocks: 1, treeSize: 3 },
    });
  });
});
