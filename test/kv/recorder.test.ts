import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeRouterEvent, encodeRouterEvent } from '../../src/kv/codec.ts';
import type { RouterEvent } from '../../src/kv/events.ts';
import { NaiveIndexer } from '../../src/kv/naive-indexer.ts';
import { KvEventRecorder, replayRecording } from '../../src/kv/recorder.ts';
import { ManualClock } from '../../src/util/clock.ts';
import { canonicalDump, clearedEvent, matches, removedEvent, storedEvent } from './indexer.conformance.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvgate-recorder-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const BIG = 18446744073709551615n;

function traffic(): RouterEvent[] {
  return [
    storedEvent(1n, 0, [1, 2, 3]),
    storedEvent(2n, 1, [1, 4]),
    storedEvent(BIG, 0, [5, 6], null, [9007199254740993n, BIG]),
    storedEvent(1n, 0, [7], 300n),
    removedEvent(1n, 0, [700n]),
    storedEvent(3n, 0, [9]),
    clearedEvent(3n),
    removedEvent(2n, 1, [999n]), // unknown: an error, still recorded and replayed
  ];
}

describe('KvEventRecorder', () => {
  it('writes one {timestamp, event} JSON line per event', async () => {
    const clock = new ManualClock(1_700_000_000_123);
    const path = join(dir, 'events.jsonl');
    const recorder = new KvEventRecorder(path, { clock });
    const events = traffic();
    for (const event of events) {
      expect(recorder.record(event)).toBe(true);
      clock.advance(5);
    }
    expect(recorder.count).toBe(events.length);
    await recorder.close();
    await recorder.close(); // idempotent
    expect(recorder.record(events[0])).toBe(false);
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(events.length);
    expect(lines[0]).toBe(`{"timestamp":1700000000123,"event":${encodeRouterEvent(events[0])}}`);
    expect(lines[2]).toContain('18446744073709551615');
    expect(lines[2]).toContain('9007199254740993');
    const inner = lines[2].slice('{"timestamp":1700000000133,"event":'.length, -1);
    const decoded = decodeRouterEvent(inner);
    expect(decoded.ok && decoded.event).toEqual(events[2]);
  });

  it('record then replay rebuilds an equal index', async () => {
    const path = join(dir, 'events.jsonl');
    const live = new NaiveIndexer();
    const recorder = new KvEventRecorder(path, { clock: new ManualClock(1000) });
    for (const event of traffic()) {
      live.apply(event);
      recorder.record(event);
    }
    await recorder.close();

    const replayed = new NaiveIndexer();
    const seen: number[] = [];
    const result = await replayRecording(path, replayed, { onEvent: (_, timestamp) => seen.push(timestamp) });
    expect(result).toMatchObject({
      events: 8,
      applied: 7,
      errors: 1,
      errorsByCode: { KV_BLOCK_NOT_FOUND: 1 },
      malformed: 0,
      malformedLines: [],
      firstTimestamp: 1000,
      lastTimestamp: 1000,
    });
    expect(seen).toHaveLength(8);
    expect(canonicalDump(replayed)).toEqual(canonicalDump(live));
    expect(replayed.size).toBe(live.size);
    for (const query of [[1, 2, 3, 7], [1, 4], [5, 6], [9]])
      expect(matches(replayed, query)).toEqual(matches(live, query));
  });

  it('appends to an existing recording when asked', async () => {
    const path = join(dir, 'events.jsonl');
    const first = new KvEventRecorder(path);
    first.record(storedEvent(1n, 0, [1]));
    await first.close();
    const second = new KvEventRecorder(path, { append: true });
    second.record(storedEvent(1n, 0, [2], 100n));
    await second.close();
    const indexer = new NaiveIndexer();
    expect((await replayRecording(path, indexer)).applied).toBe(2);
    expect(matches(indexer, [1, 2])).toEqual({ '1:0': { blocks: 2, treeSize: 2 } });
  });

  it('skips and counts corrupt lines with their line numbers', async () => {
    const path = join(dir, 'events.jsonl');
    const recorder = new KvEventRecorder(path, { clock: new ManualClock(42) });
    recorder.record(storedEvent(1n, 0, [1, 2]));
    await recorder.close();
    const good = (event: RouterEvent) => `{"timestamp":43,"event":${encodeRouterEvent(event)}}`;
    appendFileSync(
      path,
      [
        '{"timestamp":43,"event":{"worker_id":1,"event":{"event_id":1,"data":"clea', // truncated (line 2)
        '', // blank: ignored (line 3)
        good(storedEvent(2n, 0, [1])), // line 4
        '{"timestamp":-1,"event":{"worker_id":1,"event":{"event_id":1,"data":"cleared"}}}', // line 5
        '{"timestamp":44}', // line 6
        '{"timestamp":44,"event":{"worker_id":1.5,"event":{"event_id":1,"data":"cleared"}}}', // line 7
        '[1,2,3]', // line 8
        'garbage', // line 9
        good(storedEvent(2n, 0, [2], 100n)), // line 10
      ].join('\n'),
    );
    const indexer = new NaiveIndexer();
    const result = await replayRecording(path, indexer);
    expect(result.events).toBe(3);
    expect(result.applied).toBe(3);
    expect(result.malformed).toBe(6);
    expect(result.malformedLines.map((m) => m.line)).toEqual([2, 5, 6, 7, 8, 9]);
    expect(result.malformedLines[3].error).toContain('worker_id');
    expect(result.malformedLines[2].error).toContain('event: missing');
    expect(matches(indexer, [1, 2])).toEqual({
      '1:0': { blocks: 2, treeSize: 2 },
      '2:0': { blocks: 2, treeSize: 2 },
    });
    const capped = await replayRecording(path, new NaiveIndexer(), { maxMalformedReported: 2 });
    expect(capped.malformedLines).toHaveLength(2);
    expect(capped.malformed).toBe(6);
    const stopped = await replayRecording(path, new NaiveIndexer(), { maxEvents: 2 });
    expect(stopped.events).toBe(2);
    expect(stopped.malformed).toBe(1);
  });

  it('replays an empty file and rejects a missing one', async () => {
    const path = join(dir, 'empty.jsonl');
    writeFileSync(path, '');
    const result = await replayRecording(path, new NaiveIndexer());
    expect(result).toMatchObject({ events: 0, malformed: 0, firstTimestamp: null });
    await expect(replayRecording(join(dir, 'missing.jsonl'), new NaiveIndexer())).rejects.toThrow(/ENOENT/);
  });

  it('reports a file that cannot be written when closed', async () => {
    const recorder = new KvEventRecorder(join(dir, 'no-such-dir', 'events.jsonl'));
    recorder.record(storedEvent(1n, 0, [1]));
    await expect(recorder.close()).rejects.toThrow(/ENOENT/);
  });
});
