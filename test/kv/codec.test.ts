import fc from 'fast-check';
import { parse as losslessParse } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import {
  decodeRouterEvent,
  decodeRouterEvents,
  decodeRouterEventValue,
  encodeRouterEvent,
  encodeRouterEventBatch,
  encodeRouterEvents,
  parseLosslessJson,
} from '../../src/kv/codec.ts';
import type { RouterEvent } from '../../src/kv/events.ts';

const MAX = 18446744073709551615n;
const SAFE_PLUS_TWO = 9007199254740993n;

const stored: RouterEvent = {
  workerId: MAX,
  event: {
    eventId: SAFE_PLUS_TWO,
    dpRank: 3,
    data: {
      kind: 'stored',
      parentHash: SAFE_PLUS_TWO,
      blocks: [
        { blockHash: MAX, tokensHash: SAFE_PLUS_TWO },
        { blockHash: 0n, tokensHash: 1n },
      ],
    },
  },
};
const removed: RouterEvent = {
  workerId: 7n,
  event: { eventId: 12n, dpRank: 0, data: { kind: 'removed', blockHashes: [MAX, SAFE_PLUS_TWO, 0n] } },
};
const cleared: RouterEvent = {
  workerId: 1n,
  event: { eventId: 0n, dpRank: 4294967295, data: { kind: 'cleared' } },
};
const rootStored: RouterEvent = {
  workerId: 7n,
  event: {
    eventId: 1n,
    dpRank: 0,
    data: { kind: 'stored', parentHash: null, blocks: [{ blockHash: 200n, tokensHash: 2n }] },
  },
};

function decoded(text: string): RouterEvent {
  const result = decodeRouterEvent(text);
  if (!result.ok) throw new Error(`expected a valid event: ${result.error.message}`);
  return result.event;
}

function rejected(text: string): string {
  const result = decodeRouterEvent(text);
  if (result.ok) throw new Error(`expected a rejection of ${text}`);
  return `${result.error.code} ${result.error.message}`;
}

function withEvent(event: string): string {
  return `{"worker_id":1,"event":${event}}`;
}

function withData(data: string): string {
  return withEvent(`{"event_id":1,"data":${data}}`);
}

function withStoredBlock(block: string): string {
  return withData(`{"stored":{"parent_hash":null,"blocks":[${block}]}}`);
}

describe('RouterEvent codec', () => {
  it('round-trips every kind exactly, u64 extremes included', () => {
    for (const event of [stored, removed, cleared, rootStored]) {
      const text = encodeRouterEvent(event);
      expect(decoded(text)).toEqual(event);
      expect(encodeRouterEvent(decoded(text))).toBe(text);
    }
    const text = encodeRouterEvent(stored);
    expect(text).toContain('18446744073709551615');
    expect(text).toContain('9007199254740993');
  });

  it("writes Dynamo's serde shape", () => {
    expect(encodeRouterEvent(rootStored)).toBe(
      '{"worker_id":7,"event":{"event_id":1,"data":{"stored":{"parent_hash":null,"blocks":[{"block_hash":200,"tokens_hash":2,"mm_extra_info":null}]}},"dp_rank":0}}',
    );
    expect(encodeRouterEvent(cleared)).toBe(
      '{"worker_id":1,"event":{"event_id":0,"data":"cleared","dp_rank":4294967295}}',
    );
    expect(encodeRouterEvent(removed)).toContain(
      '{"removed":{"block_hashes":[18446744073709551615,9007199254740993,0]}}',
    );
  });

  it("reads Dynamo's documented example, dp_rank defaulting to 0", () => {
    expect(
      decoded(
        '{"worker_id":7,"event":{"event_id":12,"dp_rank":0,"data":{"stored":{"parent_hash":100,"blocks":[{"block_hash":200,"tokens_hash":2,"mm_extra_info":null}]}}}}',
      ),
    ).toEqual({
      workerId: 7n,
      event: {
        eventId: 12n,
        dpRank: 0,
        data: { kind: 'stored', parentHash: 100n, blocks: [{ blockHash: 200n, tokensHash: 2n }] },
      },
    });
    expect(decoded(withData('"cleared"')).event.dpRank).toBe(0);
    expect(decoded(withData('{"cleared":null}')).event.data).toEqual({ kind: 'cleared' });
  });

  it('accepts what serde accepts: absent parent_hash and mm_extra_info, unknown keys, whitespace', () => {
    expect(decoded(withData('{"stored":{"blocks":[]}}')).event.data).toEqual({
      kind: 'stored',
      parentHash: null,
      blocks: [],
    });
    expect(decoded(withStoredBlock('{"block_hash":1,"tokens_hash":2}')).event.data).toEqual({
      kind: 'stored',
      parentHash: null,
      blocks: [{ blockHash: 1n, tokensHash: 2n }],
    });
    expect(
      decoded(withStoredBlock('{"block_hash":1,"tokens_hash":2,"mm_extra_info":{"mm_objects":[]}}')).workerId,
    ).toBe(1n);
    expect(
      decoded('{"worker_id":1,"storage_tier":"device","event":{"event_id":1,"data":"cleared"}}').workerId,
    ).toBe(1n);
    expect(
      decoded(' \n{ "worker_id" : 1 , "event" : { "event_id" : 2 , "data" : "cleared" } }\n ').event.eventId,
    ).toBe(2n);
  });

  it('round-trips arrays and {events, shutdown} batches', () => {
    const events = [stored, removed, cleared];
    const array = decodeRouterEvents(encodeRouterEvents(events));
    expect(array).toEqual({ ok: true, events, shutdown: false });
    const batch = decodeRouterEvents(encodeRouterEventBatch(events, true));
    expect(batch).toEqual({ ok: true, events, shutdown: true });
    expect(decodeRouterEvents('{"events":[]}')).toEqual({ ok: true, events: [], shutdown: false });
    const bad = decodeRouterEvents(`[${encodeRouterEvent(stored)},{"worker_id":-1}]`);
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.message).toContain('[1].worker_id');
    const badShutdown = decodeRouterEvents('{"events":[],"shutdown":"yes"}');
    expect(badShutdown.ok || badShutdown.error.message).toContain('batch.shutdown');
    const notBatch = decodeRouterEvents('{"items":[]}');
    expect(notBatch.ok || notBatch.error.message).toContain('batch.events');
  });

  it('decodes parsed values with bigint or safe-number integers', () => {
    const value = {
      worker_id: MAX,
      event: { event_id: 3, dp_rank: 2, data: { removed: { block_hashes: [1, SAFE_PLUS_TWO] } } },
    };
    expect(decodeRouterEventValue(value)).toEqual({
      ok: true,
      event: {
        workerId: MAX,
        event: { eventId: 3n, dpRank: 2, data: { kind: 'removed', blockHashes: [1n, SAFE_PLUS_TWO] } },
      },
    });
    // A JS number above 2^53 has already lost bits: refuse it.
    const lossy = decodeRouterEventValue({ worker_id: 2 ** 60, event: { event_id: 0, data: 'cleared' } });
    expect(lossy.ok || lossy.error.message).toContain('worker_id');
    expect(decodeRouterEventValue(undefined).ok).toBe(false);
    expect(decodeRouterEventValue('cleared').ok).toBe(false);
  });

  describe('rejects', () => {
    const badU64 = [
      ['-1', '-1'],
      ['1.5', '1.5'],
      ['1.0', '1.0'],
      ['1e3', '1e3'],
      ['1E3', '1E3'],
      ['18446744073709551616', '18446744073709551616'],
      ['99999999999999999999999', '99999999999999999999999'],
      ['"5"', 'a string'],
      ['true', 'boolean'],
      ['null', 'null'],
      ['[1]', 'an array'],
      ['{}', 'an object'],
    ];

    it.each(badU64)('worker_id %s', (value, shown) => {
      const message = rejected(`{"worker_id":${value},"event":{"event_id":1,"data":"cleared"}}`);
      expect(message).toMatch(/^KV_INVALID_EVENT worker_id: expected an unsigned 64-bit integer/);
      expect(message).toContain(shown);
    });

    it.each(badU64)('event_id %s', (value) => {
      expect(rejected(withEvent(`{"event_id":${value},"data":"cleared"}`))).toContain(
        'event.event_id: expected',
      );
    });

    it.each(badU64)('parent_hash %s', (value) => {
      if (value === 'null') return; // null is a root-level store
      expect(rejected(withData(`{"stored":{"parent_hash":${value},"blocks":[]}}`))).toContain(
        'event.data.stored.parent_hash: expected',
      );
    });

    it.each(badU64)('block_hash and tokens_hash %s', (value) => {
      expect(rejected(withStoredBlock(`{"block_hash":${value},"tokens_hash":1}`))).toContain(
        'event.data.stored.blocks[0].block_hash: expected',
      );
      expect(rejected(withStoredBlock(`{"block_hash":1,"tokens_hash":${value}}`))).toContain(
        'event.data.stored.blocks[0].tokens_hash: expected',
      );
    });

    it.each(badU64)('block_hashes entry %s', (value) => {
      expect(rejected(withData(`{"removed":{"block_hashes":[1,${value}]}}`))).toContain(
        'event.data.removed.block_hashes[1]: expected',
      );
    });

    it('dp_rank out of u32 or mistyped', () => {
      for (const value of ['4294967296', '-1', '0.5', '1e2', 'null', '"0"', MAX.toString()])
        expect(rejected(withEvent(`{"event_id":1,"dp_rank":${value},"data":"cleared"}`))).toContain(
          'event.dp_rank: expected an unsigned 32-bit integer',
        );
    });

    it('missing fields', () => {
      expect(rejected('{"event":{"event_id":1,"data":"cleared"}}')).toContain('worker_id: missing');
      expect(rejected('{"worker_id":1}')).toContain('event: missing');
      expect(rejected(withEvent('{"data":"cleared"}'))).toContain('event.event_id: missing');
      expect(rejected(withEvent('{"event_id":1}'))).toContain('event.data: missing');
      expect(rejected(withData('{"stored":{"parent_hash":null}}'))).toContain(
        'event.data.stored.blocks: missing',
      );
      expect(rejected(withData('{"removed":{}}'))).toContain('event.data.removed.block_hashes: missing');
      expect(rejected(withStoredBlock('{"tokens_hash":1}'))).toContain('blocks[0].block_hash: missing');
      expect(rejected(withStoredBlock('{"block_hash":1}'))).toContain('blocks[0].tokens_hash: missing');
    });

    it('unknown or ambiguous tags', () => {
      expect(rejected(withData('"stored"'))).toContain('unknown event kind');
      expect(rejected(withData('"Cleared"'))).toContain('unknown event kind');
      expect(rejected(withData('{"evicted":{"block_hashes":[]}}'))).toContain('unknown event kind "evicted"');
      expect(rejected(withData('{}'))).toContain('got none');
      expect(rejected(withData('{"stored":{"blocks":[]},"removed":{"block_hashes":[]}}'))).toContain(
        'exactly one of',
      );
      expect(rejected(withData('{"cleared":{}}'))).toContain('event.data.cleared: expected null');
    });

    it('wrong nesting and types', () => {
      expect(rejected('[]')).toContain('event: expected an object, got an array');
      expect(rejected('null')).toContain('event: expected an object, got null');
      expect(rejected('42')).toContain('event: expected an object');
      expect(rejected('{"worker_id":1,"event":[1]}')).toContain('event: expected an object, got an array');
      expect(rejected(withData('5'))).toContain('event.data: expected an object');
      expect(rejected(withData('{"stored":[]}'))).toContain('event.data.stored: expected an object');
      expect(rejected(withData('{"stored":{"blocks":{}}}'))).toContain(
        'event.data.stored.blocks: expected an array',
      );
      expect(rejected(withData('{"stored":{"blocks":[5]}}'))).toContain(
        'blocks[0]: expected an object, got 5',
      );
      expect(rejected(withData('{"removed":{"block_hashes":5}}'))).toContain(
        'block_hashes: expected an array',
      );
      expect(rejected(withStoredBlock('{"block_hash":1,"tokens_hash":2,"mm_extra_info":7}'))).toContain(
        'mm_extra_info: expected null or an object',
      );
      expect(
        rejected(withEvent('{"event_id":1,"data":{"removed":{"block_hashes":[1]}},"dp_rank":[0]}')),
      ).toContain('event.dp_rank');
    });

    it('malformed JSON and trailing junk', () => {
      for (const text of [
        '',
        '{',
        '{"worker_id":1,',
        `${encodeRouterEvent(cleared)}x`,
        `${encodeRouterEvent(cleared)}${encodeRouterEvent(cleared)}`,
        "{'worker_id':1}",
        '{"worker_id":01,"event":{"event_id":1,"data":"cleared"}}',
        '{"worker_id":1,"event":{"event_id":1,"data":"cleared"},}',
        'NaN',
      ])
        expect(rejected(text)).toMatch(/^KV_(MALFORMED_JSON|INVALID_EVENT) /);
      expect(rejected(`${encodeRouterEvent(cleared)} junk`)).toMatch(/^KV_MALFORMED_JSON /);
    });

    it('non-string input without throwing', () => {
      expect(decodeRouterEvent(undefined as unknown as string).ok).toBe(false);
      expect(decodeRouterEvents(42 as unknown as string).ok).toBe(false);
    });
  });

  describe('JSON reader', () => {
    /** Comparable form: bigint and non-integer numbers as tagged strings, objects with sorted keys. */
    function normalize(value: unknown): unknown {
      if (typeof value === 'bigint') return `int:${value}`;
      if (Array.isArray(value)) return value.map(normalize);
      if (typeof value === 'object' && value !== null) {
        if ('text' in value && value.constructor !== Object) return `num:${(value as { text: string }).text}`;
        return Object.fromEntries(
          Object.keys(value)
            .sort()
            .map((k) => [k, normalize((value as Record<string, unknown>)[k])]),
        );
      }
      return value;
    }
    class Marker {
      constructor(readonly text: string) {}
    }
    const oracle = (text: string) =>
      losslessParse(text, null, (n) => (/^(0|[1-9][0-9]*)$/.test(n) ? BigInt(n) : new Marker(n)));

    it('reads any JSON exactly like lossless-json (integers as bigint)', () => {
      const texts = fc.oneof(
        fc.json({ depthSize: 'medium' }),
        fc.jsonValue().map((v) => JSON.stringify(v, null, 2)),
        fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => `[${n}, ${n}.5, ${n}e-3, -0, 0.0, 1E+2]`),
      );
      fc.assert(
        fc.property(texts, (text) => {
          const ours = parseLosslessJson(text);
          expect(ours.ok, text).toBe(true);
          if (ours.ok) expect(normalize(ours.value)).toEqual(normalize(oracle(text)));
        }),
        { numRuns: 2000 },
      );
    });

    it('accepts exactly the texts JSON.parse accepts (duplicate keys aside)', () => {
      const texts = fc.oneof(
        fc.string({ maxLength: 30 }),
        fc
          .json()
          .chain((json) =>
            fc
              .tuple(fc.nat(json.length), fc.string({ maxLength: 2 }))
              .map(([i, s]) => json.slice(0, i) + s + json.slice(i + 1)),
          ),
      );
      fc.assert(
        fc.property(texts, (text) => {
          let platform = true;
          try {
            JSON.parse(text);
          } catch {
            platform = false;
          }
          const ours = parseLosslessJson(text);
          if (ours.ok !== platform && !ours.ok) expect(ours.error.message).toMatch(/duplicate key/);
          else expect(ours.ok, text).toBe(platform);
        }),
        { numRuns: 3000 },
      );
    });

    it('keeps __proto__ as data, rejects duplicate keys and absurd nesting', () => {
      const parsed = parseLosslessJson('{"__proto__":{"polluted":1},"a":1}');
      expect(parsed.ok).toBe(true);
      if (parsed.ok) {
        expect(Object.hasOwn(parsed.value as object, '__proto__')).toBe(true);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      }
      const duplicate = parseLosslessJson('{"a":1,"a":1}');
      expect(duplicate.ok || duplicate.error.message).toContain('duplicate key "a"');
      const deep = parseLosslessJson(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
      expect(deep.ok || deep.error.code).toBe('KV_MALFORMED_JSON');
      const escaped = parseLosslessJson('{"k\\u0041\\"":"\\ud83d\\ude00\\n"}');
      expect(escaped.ok && escaped.value).toEqual({ 'kA"': '\u{1f600}\n' });
    });
  });
});
