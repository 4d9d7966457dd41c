/**
 * KV events into the router, per (worker, rank), with Dynamo's recovery (reference §7):
 * - event ids increase by one per (worker, rank); an id above last+1 is a gap: the router asks the
 *   worker's local indexer (`kv_indexer_query`) for the missing range, or its full dump when the
 *   range is no longer buffered (the rank's entries are then reset and rebuilt from the dump);
 * - a worker newly seen (every worker at router start) is ingested from its full dump, rank by rank;
 * - a rank's newest event id in its kv_metrics reveals events lost at the tail of the stream.
 * While a rank recovers, its live events are buffered and applied after the answer. Ids at or below
 * the last applied one are duplicates (already reflected, by an event or a dump) and are skipped:
 * re-applying a stale `stored` after its `removed` would resurrect a block.
 */
import { decodeRouterEvent } from '../kv/codec.ts';
import type { RouterEvent, WorkerId } from '../kv/events.ts';
import type { KvIndexerAnswer } from '../protocol/wire.ts';
import { sleep } from '../runtime/backoff.ts';
import { errorMessage } from '../runtime/errors.ts';
import type { MalformedCounter } from '../runtime/stats.ts';
import { log } from '../util/log.ts';

export interface KvEventSink {
  /** Applies one event; returns an error (counted, not thrown) when it cannot. */
  applyEvent(event: RouterEvent): unknown;
  /** Drops everything indexed for one rank of a worker (before a dump is ingested). */
  resetRank(workerId: WorkerId, dpRank: number): void;
}

export type IndexerQuery = {
  readonly dpRank: number;
  readonly startEventId?: bigint;
  readonly endEventId?: bigint;
};

export interface KvEventIngestOptions {
  readonly sink: KvEventSink;
  readonly query: (workerId: WorkerId, query: IndexerQuery) => Promise<KvIndexerAnswer>;
  readonly malformed: MalformedCounter;
  /** Attempts per recovery before giving up (default 5), first back-off (default 100 ms, doubling). */
  readonly recoveryAttempts?: number;
  readonly recoveryDelayMs?: number;
  /** Live events buffered per recovering rank before it falls back to a dump (default 100 000). */
  readonly maxBuffered?: number;
}

export interface KvEventIngestStats {
  readonly applied: number;
  readonly duplicates: number;
  readonly malformed: number;
  /** Events of workers this router does not (yet) know: another model, or not registered yet. */
  readonly unknownWorker: number;
  readonly gaps: number;
  readonly rangeRecoveries: number;
  readonly dumpRecoveries: number;
  readonly recoveryFailures: number;
}

interface RankState {
  /** Last applied (or dump-covered) event id; -1n before any. */
  last: bigint;
  recovering: boolean;
  buffer: RouterEvent[];
}

interface WorkerState {
  readonly workerId: WorkerId;
  readonly ranks: RankState[];
}

const textDecoder = new TextDecoder('utf-8', { fatal: false });

export class KvEventIngest {
  private readonly workers = new Map<WorkerId, WorkerState>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly attempts: number;
  private readonly delayMs: number;
  private readonly maxBuffered: number;
  private closed = false;
  private readonly counts = {
    applied: 0,
    duplicates: 0,
    malformed: 0,
    unknownWorker: 0,
    gaps: 0,
    rangeRecoveries: 0,
    dumpRecoveries: 0,
    recoveryFailures: 0,
  };

  constructor(private readonly options: KvEventIngestOptions) {
    this.attempts = options.recoveryAttempts ?? 5;
    this.delayMs = options.recoveryDelayMs ?? 100;
    this.maxBuffered = options.maxBuffered ?? 100_000;
  }

  stats(): KvEventIngestStats {
    return { ...this.counts };
  }

  /** Starts tracking a worker: every rank is ingested from its full dump. */
  addWorker(workerId: WorkerId, dataParallelSize: number, hadState = false): void {
    const state: WorkerState = { workerId, ranks: [] };
    for (let rank = 0; rank < dataParallelSize; rank++)
      state.ranks.push({ last: -1n, recovering: true, buffer: [] });
    this.workers.set(workerId, state);
    for (let rank = 0; rank < dataParallelSize; rank++) this.recover(state, rank, null, hadState);
  }

  removeWorker(workerId: WorkerId): void {
    this.workers.delete(workerId);
  }

  /** Resolves once no recovery is running (dumps of new workers included). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** One kv-events message off the event plane. */
  onMessage(payload: Uint8Array, subject: string): void {
    const decoded = decodeRouterEvent(textDecoder.decode(payload));
    if (!decoded.ok) {
      this.counts.malformed++;
      this.options.malformed.drop('event', 'kv event', `${subject}: ${decoded.error.message}`);
      return;
    }
    this.onEvent(decoded.event);
  }

  onEvent(event: RouterEvent): void {
    const state = this.workers.get(event.workerId);
    if (state === undefined) {
      this.counts.unknownWorker++;
      return;
    }
    const rank = state.ranks[event.event.dpRank];
    if (rank === undefined) {
      // Outside the worker's ranks: the sink rejects and counts it.
      this.options.sink.applyEvent(event);
      return;
    }
    if (rank.recovering) {
      if (rank.buffer.length < this.maxBuffered) rank.buffer.push(event);
      return;
    }
    this.process(state, event.event.dpRank, rank, event);
  }

  /** The worker reports the newest event id of a rank (kv_metrics): recover a missed tail. */
  onNewestEventId(workerId: WorkerId, dpRank: number, newest: bigint): void {
    const state = this.workers.get(workerId);
    const rank = state?.ranks[dpRank];
    if (state === undefined || rank === undefined || rank.recovering || newest <= rank.last) return;
    this.counts.gaps++;
    rank.recovering = true;
    this.recover(state, dpRank, { from: rank.last + 1n, to: newest }, true);
  }

  close(): void {
    this.closed = true;
    this.workers.clear();
  }

  private process(state: WorkerState, dpRank: number, rank: RankState, event: RouterEvent): void {
    const id = event.event.eventId;
    if (id <= rank.last) {
      this.counts.duplicates++;
      return;
    }
    if (id > rank.last + 1n) {
      this.counts.gaps++;
      rank.recovering = true;
      rank.buffer.push(event);
      this.recover(state, dpRank, { from: rank.last + 1n, to: id - 1n }, true);
      return;
    }
    this.apply(event);
    rank.last = id;
  }

  private apply(event: RouterEvent): void {
    this.options.sink.applyEvent(event);
    this.counts.applied++;
  }

  private recover(
    state: WorkerState,
    dpRank: number,
    range: { from: bigint; to: bigint } | null,
    hadState: boolean,
  ): void {
    const task = this.runRecovery(state, dpRank, range, hadState).catch((error: unknown) => {
      log.error({ err: error }, 'router: KV recovery failed unexpectedly');
    });
    this.inFlight.add(task);
    void task.finally(() => this.inFlight.delete(task));
  }

  private async runRecovery(
    state: WorkerState,
    dpRank: number,
    initialRange: { from: bigint; to: bigint } | null,
    hadState: boolean,
  ): Promise<void> {
    let range = initialRange;
    const live = () => !this.closed && this.workers.get(state.workerId) === state;
    const rank = state.ranks[dpRank];
    let delay = this.delayMs;
    for (let attempt = 1; attempt <= this.attempts && live(); attempt++) {
      let answer: KvIndexerAnswer;
      try {
        answer = await this.options.query(
          state.workerId,
          range === null ? { dpRank } : { dpRank, startEventId: range.from, endEventId: range.to },
        );
      } catch (error) {
        if (!live()) return;
        log.warn(
          { workerId: state.workerId.toString(16), dpRank, attempt, err: errorMessage(error) },
          'router: KV recovery query failed; retrying',
        );
        await sleep(delay);
        delay *= 2;
        continue;
      }
      if (!live()) return;
      if (answer.kind === 'unavailable') {
        if (range === null) continue; // a dump is never unavailable: a broken worker, retry
        range = null; // the range left the worker's buffer: rebuild the rank from its dump
        attempt--;
        continue;
      }
      if (answer.kind === 'events') {
        this.counts.rangeRecoveries++;
        for (const event of answer.events) {
          if (event.event.eventId <= rank.last) continue;
          this.apply(event);
          rank.last = event.event.eventId;
        }
        if (range !== null && range.to > rank.last) rank.last = range.to;
      } else {
        this.counts.dumpRecoveries++;
        if (hadState) this.options.sink.resetRank(state.workerId, dpRank);
        for (const event of answer.events) this.apply(event);
        rank.last = answer.lastEventId ?? -1n;
      }
      this.drain(state, dpRank, rank);
      return;
    }
    if (!live()) return;
    this.counts.recoveryFailures++;
    log.error(
      { workerId: state.workerId.toString(16), dpRank, range: range && `${range.from}..${range.to}` },
      'router: KV recovery gave up; continuing from the live stream',
    );
    const first = rank.buffer[0];
    if (first !== undefined && first.event.eventId > rank.last) rank.last = first.event.eventId - 1n;
    this.drain(state, dpRank, rank);
  }

  /** Applies the events buffered while the rank recovered (a new gap starts a new recovery). */
  private drain(state: WorkerState, dpRank: number, rank: RankState): void {
    rank.recovering = false;
    const buffered = rank.buffer;
    rank.buffer = [];
    for (let i = 0; i < buffered.length; i++) {
      if (rank.recovering) {
        rank.buffer.push(buffered[i]);
        continue;
      }
      this.process(state, dpRank, rank, buffered[i]);
    }
  }
}
