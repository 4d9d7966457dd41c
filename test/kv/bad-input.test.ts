/**
 * Bad KV events never crash and never corrupt the index: generated garbled or mistyped event JSON is
 * rejected with a coded error, and valid-but-wrong events (unknown parent, unknown removed hash) leave
 * other owners' entries intact.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ApproximateIndexer } from '../../src/kv/approx-indexer.ts';
import { decodeRouterEvent, decodeRouterEventValue, encodeRouterEvent } from '../../src/kv/codec.ts';
import { KvEventError } from '../../src/kv/errors.ts';
import type { RouterEvent } from '../../src/kv/events.ts';
import type { KvIndexer } from '../../src/kv/indexer.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { RadixTreeIndexer } from '../../src/kv/radix-tree.ts';
import { U64_MAX } from '../../src/tokens/u64.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { canonicalDump, clearedEvent, matches, removedEvent, storedEvent } from './indexer.conformance.ts';

// ---------------------------------------------------------------------------------------------------
// Event JSON as a tree of raw literals, so numbers can be written exactly as the wire would carry them.

type Json = string | Json[] | { [key: string]: Json };

function render(json: Json): string {
  if (typeof json === 'string') return json;
  if (Array.isArray(json)) return `[${json.map(render).join(',')}]`;
  return `{${Object.entries(json)
    .map(([k, v]) => `${JSON.stringify(k)}:${render(v)}`)
    .join(',')}}`;
}

const u64Literal = fc.bigInt({ min: 0n, max: U64_MAX }).map(String);
const rankLiteral = fc.integer({ min: 0, max: 0xffff_ffff }).map(String);

const storedJson: fc.Arbitrary<Json> = fc
  .record({
    worker: u64Literal,
    id: u64Literal,
    rank: rankLiteral,
    parent: fc.option(u64Literal, { nil: 'null' }),
    blocks: fc.array(fc.tuple(u64Literal, u64Literal), { minLength: 1, maxLength: 3 }),
  })
  .map(({ worker, id, rank, parent, blocks }) => ({
    worker_id: worker,
    event: {
      event_id: id,
      dp_rank: rank,
      data: {
        stored: {
          parent_hash: parent,
          blocks: blocks.map(([b, t]) => ({ block_hash: b, tokens_hash: t, mm_extra_info: 'null' })),
        },
      },
    },
  }));

const removedJson: fc.Arbitrary<Json> = fc
  .record({
    worker: u64Literal,
    id: u64Literal,
    rank: rankLiteral,
    hashes: fc.array(u64Literal, { minLength: 1, maxLength: 4 }),
  })
  .map(({ worker, id, rank, hashes }) => ({
    worker_id: worker,
    event: { event_id: id, dp_rank: rank, data: { removed: { block_hashes: hashes } } },
  }));

const clearedJson: fc.Arbitrary<Json> = fc
  .record({ worker: u64Literal, id: u64Literal })
  .map(({ worker, id }) => ({ worker_id: worker, event: { event_id: id, data: '"cleared"' } }));

const validJson = fc.oneof(storedJson, removedJson, clearedJson);

/** Literals no u64 field accepts. */
const badU64Literal: fc.Arbitrary<string> = fc.oneof(
  fc.bigInt({ min: -(2n ** 70n), max: -1n }).map(String),
  fc.bigInt({ min: U64_MAX + 1n, max: 2n ** 90n }).map(String),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 99 })).map(([i, f]) => `${i}.${f}`),
  fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 30 })).map(([m, e]) => `${m}e${e}`),
  fc.nat().map((n) => `${n}.0`),
  fc.nat().map((n) => JSON.stringify(String(n))),
  fc.constantFrom('true', 'false', '[]', '{}', '[1]', '{"value":1}', '""'),
);
const badRankLiteral = fc.oneof(
  badU64Literal,
  fc.bigInt({ min: 2n ** 32n, max: U64_MAX }).map(String),
  fc.constant('null'),
);
const notObject = fc.constantFrom('null', '1', '"x"', 'true', '[]', '[{}]');
const notArray = fc.constantFrom('null', '1', '"x"', 'true', '{}');
const DELETE = Symbol('delete');

/** Where a valid event can be broken, and the replacements that must break it. */
interface Breakage {
  readonly path: readonly (string | number)[];
  readonly replacement: fc.Arbitrary<string | typeof DELETE>;
}

function breakagesOf(json: Json): Breakage[] {
  const top = json as Record<string, Record<string, Json>>;
  const data = top.event.data;
  const out: Breakage[] = [
    { path: ['worker_id'], replacement: fc.oneof(badU64Literal, fc.constant('null'), fc.constant(DELETE)) },
    { path: ['event'], replacement: fc.oneof(notObject, fc.constant(DELETE)) },
    {
      path: ['event', 'event_id'],
      replacement: fc.oneof(badU64Literal, fc.constant('null'), fc.constant(DELETE)),
    },
    { path: ['event', 'dp_rank'], replacement: badRankLiteral },
    {
      path: ['event', 'data'],
      replacement: fc.constantFrom(DELETE, 'null', '1', '"stored"', '"Cleared"', '""', '[]', '{}'),
    },
  ];
  if (typeof data === 'object' && !Array.isArray(data) && 'stored' in data) {
    const blocks = (data.stored as Record<string, Json[]>).blocks;
    out.push(
      { path: ['event', 'data', 'stored'], replacement: fc.oneof(notObject, fc.constant('"x"')) },
      { path: ['event', 'data', 'stored', 'parent_hash'], replacement: badU64Literal },
      { path: ['event', 'data', 'stored', 'blocks'], replacement: fc.oneof(notArray, fc.constant(DELETE)) },
    );
    for (let i = 0; i < blocks.length; i++)
      out.push(
        { path: ['event', 'data', 'stored', 'blocks', i], replacement: notObject },
        {
          path: ['event', 'data', 'stored', 'blocks', i, 'block_hash'],
          replacement: fc.oneof(badU64Literal, fc.constant(DELETE)),
        },
        {
          path: ['event', 'data', 'stored', 'blocks', i, 'tokens_hash'],
          replacement: fc.oneof(badU64Literal, fc.constant(DELETE)),
        },
        {
          path: ['event', 'data', 'stored', 'blocks', i, 'mm_extra_info'],
          replacement: fc.constantFrom('1', '"x"', 'true', '[]'),
        },
      );
  }
  if (typeof data === 'object' && !Array.isArray(data) && 'removed' in data) {
    const hashes = (data.removed as Record<string, Json[]>).block_hashes;
    out.push(
      { path: ['event', 'data', 'removed'], replacement: notObject },
      {
        path: ['event', 'data', 'removed', 'block_hashes'],
        replacement: fc.oneof(notArray, fc.constant(DELETE)),
      },
    );
    for (let i = 0; i < hashes.length; i++)
      out.push({
        path: ['event', 'data', 'removed', 'block_hashes', i],
        replacement: fc.oneof(badU64Literal, fc.constant('null')),
      });
  }
  return out;
}

function setAt(json: Json, path: readonly (string | number)[], value: string | typeof DELETE): Json {
  const copy: Json = structuredClone(json);
  let node = copy as Record<string | number, Json>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, Json>;
  const last = path[path.length - 1];
  if (value === DELETE) delete node[last];
  else node[last] = value;
  return copy;
}

const mistyped: fc.Arbitrary<string> = validJson.chain((json) =>
  fc
    .constantFrom(...breakagesOf(json))
    .chain((breakage) => breakage.replacement.map((value) => render(setAt(json, breakage.path, value)))),
);

const truncated: fc.Arbitrary<string> = validJson
  .map(render)
  .chain((text) => fc.integer({ min: 0, max: text.length - 1 }).map((cut) => text.slice(0, cut)));

/** Replaces one character outside string literals (structure, digits, null) with one JSON never allows there. */
const byteFlipped: fc.Arbitrary<string> = validJson.map(render).chain((text) => {
  const outside: number[] = [];
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '"') inString = !inString;
    else if (!inString) outside.push(i);
  }
  return fc
    .tuple(fc.constantFrom(...outside), fc.constantFrom('#', '@', '\u0000', '\\', "'", ';', 'x', '+'))
    .map(([i, c]) => text.slice(0, i) + c + text.slice(i + 1));
});

const badTag: fc.Arbitrary<string> = fc
  .tuple(u64Literal, fc.constantFrom('Stored', 'evicted', 'STORED', 'clear', 'removed_all', ''))
  .chain(([worker, tag]) =>
    fc.constantFrom(
      `{"worker_id":${worker},"event":{"event_id":1,"data":{"${tag}":{"block_hashes":[1]}}}}`,
      `{"worker_id":${worker},"event":{"event_id":1,"data":"${tag}"}}`,
      `{"worker_id":${worker},"event":{"event_id":1,"data":{"stored":{"blocks":[]},"removed":{"block_hashes":[]}}}}`,
      `{"worker_id":${worker},"event":{"event_id":1,"data":{"cleared":{}}}}`,
    ),
  );

const trailingJunk: fc.Arbitrary<string> = fc
  .tuple(validJson.map(render), fc.constantFrom('x', ',', '}', ']', '{}', '1', 'null', ' ,'))
  .map(([text, junk]) => text + junk);

const garbage: fc.Arbitrary<string> = fc.string({ maxLength: 60 });

const badEventText = fc.oneof(mistyped, mistyped, truncated, byteFlipped, badTag, trailingJunk, garbage);

// ---------------------------------------------------------------------------------------------------

const factories: [string, () => KvIndexer][] = [
  ['NaiveIndexer', () => new NaiveIndexer()],
  ['RadixTreeIndexer', () => new RadixTreeIndexer()],
  ['ApproximateIndexer', () => new ApproximateIndexer({ clock: new ManualClock() })],
];

function populate(indexer: KvIndexer): void {
  for (const event of [
    storedEvent(1n, 0, [1, 2, 3]),
    storedEvent(1n, 1, [1, 2]),
    storedEvent(2n, 0, [1, 4, 5]),
    storedEvent(U64_MAX, 3, [6, 7], null, [2n ** 63n, 9_007_199_254_740_993n]),
  ])
    expect(indexer.apply(event)).toBeNull();
}

const QUERIES = [
  [1, 2, 3],
  [1, 4, 5],
  [6, 7],
];

function snapshot(indexer: KvIndexer) {
  return {
    dump: canonicalDump(indexer),
    size: indexer.size,
    matches: QUERIES.map((q) => matches(indexer, q)),
  };
}

describe('bad KV events', () => {
  it('generators produce valid events before they are broken', () => {
    fc.assert(
      fc.property(validJson, (json) => {
        const result = decodeRouterEvent(render(json));
        expect(result.ok, render(json)).toBe(true);
        if (result.ok) expect(decodeRouterEvent(encodeRouterEvent(result.event))).toEqual(result);
      }),
      { numRuns: 200 },
    );
  });

  for (const [name, factory] of factories) {
    it(`${name}: 1,000 garbled or mistyped events are rejected and change nothing`, () => {
      const indexer = factory();
      populate(indexer);
      const before = snapshot(indexer);
      fc.assert(
        fc.property(badEventText, (text) => {
          const result = decodeRouterEvent(text);
          if (result.ok) {
            indexer.apply(result.event);
            throw new Error(`accepted a bad event: ${text}`);
          }
          expect(result.error).toBeInstanceOf(KvEventError);
          expect(['KV_MALFORMED_JSON', 'KV_INVALID_EVENT']).toContain(result.error.code);
          expect(result.error.message.length).toBeGreaterThan(0);
        }),
        { numRuns: 1000 },
      );
      expect(snapshot(indexer)).toEqual(before);
    });

    it(`${name}: valid but wrong events leave other owners intact`, () => {
      const indexer = factory();
      populate(indexer);
      const other = matches(indexer, [1, 4, 5])['2:0'];
      const wrong: RouterEvent[] = [
        storedEvent(1n, 0, [8, 9], 12345n), // unknown parent
        storedEvent(1n, 0, [8, 9], 100n, [100n, 900n]), // block repeats its parent
        storedEvent(1n, 5, [1], 200n), // parent of another rank
        removedEvent(1n, 0, [999n]), // unknown hash
        removedEvent(3n, 0, [100n]), // unknown worker
        removedEvent(1n, 1, [777n, 200n, 888n]), // partly unknown: 200 goes, the rest is reported
      ];
      const codes = wrong.map((event) => indexer.apply(event)?.code ?? null);
      expect(codes).toEqual([
        'KV_PARENT_NOT_FOUND',
        'KV_INVALID_BLOCK_SEQUENCE',
        'KV_PARENT_NOT_FOUND',
        'KV_BLOCK_NOT_FOUND',
        'KV_BLOCK_NOT_FOUND',
        'KV_BLOCK_NOT_FOUND',
      ]);
      expect(matches(indexer, [1, 4, 5])['2:0']).toEqual(other);
      expect(matches(indexer, [1, 2, 3])).toEqual({
        '1:0': { blocks: 3, treeSize: 3 },
        '1:1': { blocks: 1, treeSize: 1 },
        '2:0': { blocks: 1, treeSize: 3 },
      });
      expect(matches(indexer, [6, 7])).toEqual({ [`${U64_MAX}:3`]: { blocks: 2, treeSize: 2 } });
      expect(indexer.size).toBe(9);
      // Clearing an unknown worker or one rank's worker touches nobody else.
      expect(indexer.apply(clearedEvent(42n))).toBeNull();
      expect(indexer.apply(clearedEvent(1n, 1))).toBeNull();
      expect(matches(indexer, [1, 4, 5])).toEqual({ '2:0': { blocks: 3, treeSize: 3 } });
      expect(indexer.size).toBe(5);
    });
  }

  it('decodeRouterEventValue never throws on arbitrary values', () => {
    fc.assert(
      fc.property(
        fc.anything({ withBigInt: true, withMap: true, withSet: true, withTypedArray: true }),
        (value) => {
          const result = decodeRouterEventValue(value);
          if (result.ok) expect(decodeRouterEvent(encodeRouterEvent(result.event))).toEqual(result);
          else expect(result.error).toBeInstanceOf(KvEventError);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
