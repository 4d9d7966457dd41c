import { describe, expect, it } from 'vitest';
import { type IndexerQuery, KvEventIngest } from '../../src/cluster/kv-event-ingest.ts';
import { encodeRouterEvent } from '../../src/kv/codec.ts';
import type { RouterEvent } from '../../src/kv/events.ts';
import type { KvIndexerAnswer } from '../../src/protocol/wire.ts';
import { MalformedCounter } from '../../src/runtime/stats.ts';

const W = 0xabcdef0123456789n;

function stored(id: number, rank = 0, hash = 1000 + id): RouterEvent {
  return {
    workerId: W,
    event: {
      eventId: BigInt(id),
      dpRank: rank,
      data: {
        kind: 'stored',
        parentHash: null,
        blocks: [{ blockHash: BigInt(hash), tokensHash: BigInt(hash) }],
      },
    },
  };
}

interface Harness {
  ingest: KvEventIngest;
  applied: RouterEvent[];
  resets: string[];
  queries: IndexerQuery[];
  answer: (q: IndexerQuery) => Promise<KvIndexerAnswer>;
}

function harness(answer: (q: IndexerQuery) => Promise<KvIndexerAnswer>): Harness {
  const h: Harness = {
    applied: [],
    resets: [],
    queries: [],
    answer,
    ingest: undefined as unknown as KvEventIngest,
  };
  h.ingest = new KvEventIngest({
    sink: {
      applyEvent: (e) => h.applied.push(e),
      resetRank: (w, r) => h.resets.push(`${w}:${r}`),
    },
    query: (_w, q) => {
      h.queries.push(q);
      return h.answer(q);
    },
    malformed: new MalformedCounter(),
    recoveryAttempts: 3,
    recoveryDelayMs: 1,
  });
  return h;
}

const emptyDump = (dpRank: number, last: bigint | null): KvIndexerAnswer => ({
  kind: 'dump',
  dpRank,
  lastEventId: last,
  events: [],
});

const ids = (events: RouterEvent[]) => events.map((e) => Number(e.event.eventId));

describe('KvEventIngest', () => {
  it('ingests a new worker’s dump per rank, buffering live events meanwhile and skipping those the dump covers', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const h = harness(async (q) => {
      await gate;
      return {
        kind: 'dump',
        dpRank: q.dpRank,
        lastEventId: 1n,
        events: [stored(0, q.dpRank, 7), stored(1, q.dpRank, 8)],
      };
    });
    h.ingest.addWorker(W, 2);
    h.ingest.onEvent(stored(1, 0));
    h.ingest.onEvent(stored(2, 0));
    expect(h.applied).toEqual([]);
    release();
    await h.ingest.settled();
    expect(h.queries).toEqual([{ dpRank: 0 }, { dpRank: 1 }]);
    expect(h.resets).toEqual([]);
    const rank0 = h.applied.filter((e) => e.event.dpRank === 0);
    expect(ids(rank0)).toEqual([0, 1, 2]); // dump (0, 1), then the buffered 2; buffered 1 skipped
    expect(h.ingest.stats().duplicates).toBe(1);
  });

  it('recovers a gap from the worker’s range, then applies the event that revealed it', async () => {
    const h = harness(async (q) => {
      if (q.startEventId === undefined) return emptyDump(q.dpRank, 1n);
      return {
        kind: 'events',
        dpRank: q.dpRank,
        lastEventId: q.endEventId!,
        events: [2, 3, 4].map((i) => stored(i, q.dpRank)),
      };
    });
    h.ingest.addWorker(W, 1);
    await h.ingest.settled();
    h.ingest.onEvent(stored(5));
    h.ingest.onEvent(stored(6));
    await h.ingest.settled();
    expect(h.queries.at(-1)).toEqual({ dpRank: 0, startEventId: 2n, endEventId: 4n });
    expect(ids(h.applied)).toEqual([2, 3, 4, 5, 6]);
    h.ingest.onEvent(stored(3)); // a late duplicate
    expect(ids(h.applied)).toEqual([2, 3, 4, 5, 6]);
    expect(h.ingest.stats()).toMatchObject({ gaps: 1, rangeRecoveries: 1, duplicates: 1 });
  });

  it('falls back to a full dump when the range is gone, resetting the rank first', async () => {
    const h = harness(async (q) => {
      if (q.startEventId !== undefined)
        return { kind: 'unavailable', dpRank: q.dpRank, oldest: 50n, newest: 60n };
      return h.queries.length === 1
        ? emptyDump(q.dpRank, 0n)
        : { kind: 'dump', dpRank: q.dpRank, lastEventId: 60n, events: [stored(0, 0, 99)] };
    });
    h.ingest.addWorker(W, 1);
    await h.ingest.settled();
    h.ingest.onEvent(stored(61));
    await h.ingest.settled();
    expect(h.queries).toEqual([
      { dpRank: 0 },
      { dpRank: 0, startEventId: 1n, endEventId: 60n },
      { dpRank: 0 },
    ]);
    expect(h.resets).toEqual([`${W}:0`]);
    expect(h.applied.map((e) => Number(e.event.eventId))).toEqual([0, 61]);
    expect(h.ingest.stats().dumpRecoveries).toBe(2);
  });

  it('recovers a missed tail from the newest event id a worker reports', async () => {
    const h = harness(async (q) =>
      q.startEventId === undefined
        ? emptyDump(q.dpRank, null)
        : { kind: 'events', dpRank: q.dpRank, lastEventId: 1n, events: [stored(0), stored(1)] },
    );
    h.ingest.addWorker(W, 1);
    await h.ingest.settled();
    h.ingest.onNewestEventId(W, 0, 1n);
    await h.ingest.settled();
    expect(ids(h.applied)).toEqual([0, 1]);
    h.ingest.onNewestEventId(W, 0, 1n);
    await h.ingest.settled();
    expect(h.queries).toHaveLength(2);
  });

  it('gives up after its attempts, logs, and continues from the live stream', async () => {
    let calls = 0;
    const h = harness(async (q) => {
      calls++;
      if (calls === 1) return emptyDump(q.dpRank, 0n);
      throw new Error('worker unreachable');
    });
    h.ingest.addWorker(W, 1);
    await h.ingest.settled();
    h.ingest.onEvent(stored(4));
    await h.ingest.settled();
    expect(calls).toBe(4);
    expect(ids(h.applied)).toEqual([4]);
    expect(h.ingest.stats().recoveryFailures).toBe(1);
    h.ingest.onEvent(stored(5));
    expect(ids(h.applied)).toEqual([4, 5]);
  });

  it('counts malformed messages and events of unknown workers, never throwing', () => {
    const h = harness(async (q) => emptyDump(q.dpRank, null));
    h.ingest.onMessage(new TextEncoder().encode('{"worker_id":'), 's');
    h.ingest.onMessage(new Uint8Array([0xff, 0xfe]), 's');
    h.ingest.onMessage(new TextEncoder().encode(encodeRouterEvent(stored(0))), 's');
    expect(h.ingest.stats()).toMatchObject({ malformed: 2, unknownWorker: 1 });
    expect(h.applied).toEqual([]);
  });
});
