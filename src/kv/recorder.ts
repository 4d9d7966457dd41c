/**
 * KV event recorder (Dynamo's `recorder.rs`): every received RouterEvent as one JSONL line
 * `{"timestamp":<ms since epoch>,"event":<RouterEvent JSON>}`, and a replay that feeds a recording back
 * into any indexer (to rebuild an index offline, reproduce a bug, or benchmark on real traffic).
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { type Clock, realClock } from '../util/clock.ts';
import { decodeRouterEventValue, encodeRouterEvent, parseLosslessJson } from './codec.ts';
import type { KvErrorCode } from './errors.ts';
import type { RouterEvent } from './events.ts';
import type { KvIndexer } from './indexer.ts';

export interface KvEventRecorderOptions {
  readonly clock?: Clock;
  /** Append to an existing file instead of truncating it. */
  readonly append?: boolean;
}

export class KvEventRecorder {
  readonly path: string;
  private readonly clock: Clock;
  private readonly stream: WriteStream;
  private written = 0;
  private closed = false;
  private failure: Error | null = null;

  constructor(path: string, options: KvEventRecorderOptions = {}) {
    this.path = path;
    this.clock = options.clock ?? realClock;
    this.stream = createWriteStream(path, { flags: options.append ? 'a' : 'w' });
    this.stream.on('error', (error) => {
      this.failure ??= error;
    });
  }

  /** Events recorded so far. */
  get count(): number {
    return this.written;
  }

  /** Appends one event; returns false once the recorder is closed or its file failed. */
  record(event: RouterEvent): boolean {
    if (this.closed || this.failure !== null) return false;
    const timestamp = Math.floor(this.clock.now());
    this.stream.write(`{"timestamp":${timestamp},"event":${encodeRouterEvent(event)}}\n`);
    this.written++;
    return true;
  }

  /** Flushes and closes the file; rejects with the file's error if writing failed. Idempotent. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      if (!this.stream.destroyed) {
        const finished = once(this.stream, 'close').catch(() => undefined);
        this.stream.end();
        await finished;
      }
    }
    if (this.failure !== null) throw this.failure;
  }
}

export interface MalformedLine {
  /** 1-based line number in the file. */
  readonly line: number;
  readonly error: string;
}

export interface ReplayResult {
  /** Well-formed events read. */
  readonly events: number;
  /** Events the indexer applied without error. */
  readonly applied: number;
  /** Events the indexer reported an error for (they may still have partly applied, as for removed). */
  readonly errors: number;
  readonly errorsByCode: Partial<Record<KvErrorCode, number>>;
  /** Lines skipped because they are not a valid record. */
  readonly malformed: number;
  /** The first `maxMalformedReported` skipped lines. */
  readonly malformedLines: readonly MalformedLine[];
  readonly firstTimestamp: number | null;
  readonly lastTimestamp: number | null;
}

export interface ReplayOptions {
  /** Called for each well-formed event before it is applied. */
  readonly onEvent?: (event: RouterEvent, timestamp: number) => void;
  /** Stop after this many well-formed events. */
  readonly maxEvents?: number;
  /** How many malformed lines to list in the result (all are counted); default 1000. */
  readonly maxMalformedReported?: number;
}

function parseRecord(text: string): { event: RouterEvent; timestamp: number } | string {
  const parsed = parseLosslessJson(text);
  if (!parsed.ok) return parsed.error.message;
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'expected a {timestamp, event} object';
  const record = value as Record<string, unknown>;
  const timestamp = record.timestamp;
  if (typeof timestamp !== 'bigint' || timestamp > BigInt(Number.MAX_SAFE_INTEGER))
    return 'timestamp: expected a non-negative integer of milliseconds';
  if (!Object.hasOwn(record, 'event')) return 'event: missing';
  const decoded = decodeRouterEventValue(record.event);
  if (!decoded.ok) return decoded.error.message;
  return { event: decoded.event, timestamp: Number(timestamp) };
}

/** Reads a recording line by line into `indexer`. Blank lines are ignored; bad lines are skipped and counted. */
export async function replayRecording(
  path: string,
  indexer: KvIndexer,
  options: ReplayOptions = {},
): Promise<ReplayResult> {
  const maxEvents = options.maxEvents ?? Number.POSITIVE_INFINITY;
  const maxReported = options.maxMalformedReported ?? 1000;
  const errorsByCode: Partial<Record<KvErrorCode, number>> = {};
  const malformedLines: MalformedLine[] = [];
  let events = 0;
  let applied = 0;
  let errors = 0;
  let malformed = 0;
  let firstTimestamp: number | null = null;
  let lastTimestamp: number | null = null;
  let lineNumber = 0;

  const input = createReadStream(path, { encoding: 'utf8' });
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    for await (const line of lines) {
      lineNumber++;
      if (line.trim() === '') continue;
      const record = parseRecord(line);
      if (typeof record === 'string') {
        malformed++;
        if (malformedLines.length < maxReported) malformedLines.push({ line: lineNumber, error: record });
        continue;
      }
      events++;
      firstTimestamp ??= record.timestamp;
      lastTimestamp = record.timestamp;
      options.onEvent?.(record.event, record.timestamp);
      const error = indexer.apply(record.event);
      if (error === null) applied++;
      else {
        errors++;
        errorsByCode[error.code] = (errorsByCode[error.code] ?? 0) + 1;
      }
      if (events >= maxEvents) break;
    }
  } finally {
    lines.close();
    input.destroy();
  }
  return { events, applied, errors, errorsByCode, malformed, malformedLines, firstTimestamp, lastTimestamp };
}
