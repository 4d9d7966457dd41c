/**
 * The mock engine: `dataParallelSize` ranks, each with its own scheduler, KV block pool, event id
 * counter and local indexer, behind one generate API (SGLang's DP engine, Dynamo's mocker).
 *
 * - A request naming a rank runs on exactly that rank; a rank outside [0, dp_size) is an error.
 *   Without a rank the engine picks the least loaded one.
 * - Modes: aggregated; prefill (one token, then the KV waits in a bootstrap room for its decode);
 *   decode (pulls a room's KV from the named prefill worker and rank, then decodes, no prefill time).
 * - Two surfaces: `generate()` (AsyncIterable of GenerateChunk) and `submit()` (callbacks, for
 *   trace replay at thousands of times real speed on a VirtualClock).
 */
import type { KvCacheEvent, StoredBlock, WorkerId } from '../kv/events.ts';
import { RadixTreeIndexer } from '../kv/radix-tree.ts';
import type { BootstrapInfo, FinishReason, GenerateChunk, GenerateRequest } from '../protocol/generate.ts';
import type { PushSource } from '../runtime/push.ts';
import { BlockHasher } from '../tokens/block-hash.ts';
import type { Cancellation } from '../util/cancel.ts';
import type { Clock } from '../util/clock.ts';
import { log } from '../util/log.ts';
import { BootstrapRooms } from './bootstrap-rooms.ts';
import { EngineError } from './errors.ts';
import { KvManager } from './kv-manager.ts';
import { LocalIndexer } from './local-indexer.ts';
import { type EngineMode, type EngineOptions, resolveEngineOptions } from './options.ts';
import { PlacementHistory } from './placement-history.ts';
import { Mulberry32, samplerSeed } from './prng.ts';
import { RankScheduler, type SchedulerMetrics } from './scheduler.ts';
import {
  EngineSequence,
  type RequestResult,
  type RequestSink,
  SHORT_STOP_LIST,
  type StopTokens,
} from './sequence.ts';
import { ChunkStream } from './stream.ts';
import { InProcessKvTransfer, type KvSource, type PulledKv } from './transfer.ts';
import { hashRangeError, validateGenerateRequest } from './validate.ts';
import { withBatchedZeroDelays } from './zero-delay-timers.ts';

export type RankMetrics = SchedulerMetrics;

/** Where and when a request ran: for tests, metrics and the replay's latency figures. */
export interface Placement {
  readonly requestId: string;
  /** The rank the request ran on. */
  readonly dpRank: number;
  /** Prefill mode: the room its KV waited in. */
  readonly bootstrapRoom?: number;
  /** Decode mode: the prefill worker and rank it pulled its KV from. */
  readonly prefillWorkerId?: WorkerId;
  readonly prefillDpRank?: number;
  readonly arrivedAt: number;
  /** NaN until the first token. */
  readonly firstTokenAt: number;
  /** NaN until finished. */
  readonly finishedAt: number;
  readonly finishReason?: FinishReason;
  readonly completionTokens: number;
  readonly cachedTokens: number;
  readonly preemptions: number;
}

interface Tracked {
  readonly seq: EngineSequence;
  readonly signal: Cancellation | undefined;
  onAbort: (() => void) | null;
  pull: AbortController | null;
  room: number | null;
  prefillWorkerId?: WorkerId;
  prefillDpRank?: number;
}

export class DataParallelEngine implements KvSource {
  readonly options: EngineOptions;
  private readonly clock: Clock;
  private readonly schedulers: RankScheduler[] = [];
  private readonly indexers: (LocalIndexer | null)[] = [];
  private readonly listeners = new Set<(event: KvCacheEvent) => void>();
  private readonly active = new Map<string, Tracked>();
  private readonly placements: PlacementHistory<Placement>;
  private readonly rooms: BootstrapRooms;
  private readonly hasher: BlockHasher | null;
  private readonly rng: Mulberry32;
  private readonly eos: readonly number[];
  private unregisterSource: (() => void) | null = null;
  private closed = false;

  constructor(options: Partial<EngineOptions> = {}) {
    const resolved = resolveEngineOptions(options);
    this.options = resolved;
    this.clock = resolved.clock;
    this.eos = resolved.eosTokenIds;
    this.placements = new PlacementHistory(resolved.placementHistory);
    this.rng = new Mulberry32(samplerSeed(resolved.seed, 'bootstrap-rooms', 0x5eed));
    this.hasher = resolved.enablePrefixCaching
      ? new BlockHasher({ blockSize: resolved.blockSize, seed: resolved.hashSeed })
      : null;
    const stepClock = withBatchedZeroDelays(resolved.clock);
    for (let rank = 0; rank < resolved.dataParallelSize; rank++) {
      const indexer = resolved.enableLocalIndexer
        ? new LocalIndexer(
            resolved.workerId,
            rank,
            resolved.localIndexerBufferSize,
            resolved.createLocalIndex?.() ?? new RadixTreeIndexer(),
          )
        : null;
      const kv = new KvManager({
        capacity: resolved.numGpuBlocks,
        dpRank: rank,
        enablePrefixCaching: resolved.enablePrefixCaching,
        publishEvents: resolved.publishKvEvents,
        onEvent: (event) => this.publish(indexer, event),
      });
      const scheduler = new RankScheduler(
        {
          dpRank: rank,
          blockSize: resolved.blockSize,
          numGpuBlocks: resolved.numGpuBlocks,
          maxNumSeqs: resolved.maxNumSeqs,
          maxNumBatchedTokens: resolved.maxNumBatchedTokens,
          enableChunkedPrefill: resolved.enableChunkedPrefill,
          watermark: resolved.watermark,
          speedupRatio: resolved.speedupRatio,
          clock: stepClock,
          perfModel: resolved.perfModel,
          hasher: this.hasher,
        },
        kv,
        {
          finished: (seq, reason) => this.onSchedulerFinished(seq, reason),
          sinkFailed: (seq, error) => this.onSinkFailed(seq, error),
        },
      );
      this.indexers.push(indexer);
      this.schedulers.push(scheduler);
    }
    this.rooms = new BootstrapRooms({
      workerId: resolved.workerId,
      clock: resolved.clock,
      timeoutMs: resolved.bootstrapTimeoutMs,
      release: (seq) => {
        const scheduler = this.schedulers[seq.dpRank];
        scheduler.releaseBlocks(seq);
        scheduler.notifyCapacity();
      },
    });
    if (resolved.onKvEvent !== undefined) this.listeners.add(resolved.onKvEvent);
    if (resolved.mode === 'prefill' && resolved.transfer instanceof InProcessKvTransfer)
      this.unregisterSource = resolved.transfer.register(resolved.workerId, this);
  }

  get dataParallelSize(): number {
    return this.options.dataParallelSize;
  }

  get mode(): EngineMode {
    return this.options.mode;
  }

  get workerId(): WorkerId {
    return this.options.workerId;
  }

  /**
   * Streams one request's output (pulled, or pushed: see ChunkStream); throws an EngineError at
   * once for a bad request. Without a signal, only the stream's consumer can cancel it.
   */
  generate(request: GenerateRequest, signal?: Cancellation): PushSource<GenerateChunk> {
    const stream = new ChunkStream(() => {
      this.cancel(request.requestId);
    }, request?.sampling?.outputKind);
    this.submit(request, stream, signal);
    return stream;
  }

  /**
   * Starts a request whose output goes to `sink` (no promises per token). Throws an EngineError at
   * once for a bad request; later failures (a failed KV pull) finish it with reason 'error'.
   */
  submit(request: GenerateRequest, sink: RequestSink, signal?: Cancellation): void {
    if (this.closed) throw new EngineError('ENGINE_CLOSED', 'engine is closed');
    const options = this.options;
    const hasher = this.hasher;
    const hashedTokens =
      hasher !== null && Array.isArray(request?.tokenIds)
        ? hasher.blockCount(request.tokenIds.length) * options.blockSize
        : 0;
    validateGenerateRequest(request, options.dataParallelSize, hashedTokens);
    if (this.active.has(request.requestId))
      throw new EngineError('ENGINE_DUPLICATE_REQUEST', `request ${request.requestId} is already running`);
    const bootstrap = request.bootstrap;
    if (options.mode === 'prefill' && bootstrap !== undefined)
      throw new EngineError('ENGINE_MODE_MISMATCH', 'a prefill engine does not take bootstrap info');
    if (options.mode === 'decode' && bootstrap === undefined)
      throw new EngineError('ENGINE_MODE_MISMATCH', 'a decode engine needs bootstrap info to pull KV from');
    if (bootstrap !== undefined && options.transfer === undefined)
      throw new EngineError(
        'ENGINE_MODE_MISMATCH',
        'this engine has no KV transfer to pull bootstrap rooms with',
      );
    const maxTokens = options.mode === 'prefill' ? 1 : request.sampling.maxTokens;
    const blocksAtEnd = Math.ceil((request.tokenIds.length + maxTokens) / options.blockSize);
    if (blocksAtEnd > options.numGpuBlocks)
      throw new EngineError(
        'ENGINE_REQUEST_TOO_LARGE',
        `request needs ${blocksAtEnd} KV blocks, a rank has ${options.numGpuBlocks}`,
      );

    const rank = request.dpRank ?? this.leastLoadedRank();
    const stops = stopTokens(request.sampling, this.eos);
    let seq: EngineSequence;
    try {
      seq = new EngineSequence({
        requestId: request.requestId,
        tokens: request.tokenIds,
        maxTokens,
        stopTokens: stops,
        seed: samplerSeed(request.sampling.seed, request.requestId, options.seed),
        sink,
        arrivedAt: this.clock.now(),
        blockSize: options.blockSize,
        hasher,
      });
    } catch (error) {
      // The hasher checked the tokens of the full blocks (see validateGenerateRequest).
      if (error instanceof RangeError) throw hashRangeError(error);
      throw error;
    }
    seq.dpRank = rank;
    const tracked: Tracked = { seq, signal, onAbort: null, pull: null, room: null };
    this.active.set(request.requestId, tracked);

    let info: BootstrapInfo | undefined;
    if (options.mode === 'prefill') {
      let room = this.rng.nextSafeInteger();
      while (this.rooms.has(room)) room = this.rng.nextSafeInteger();
      tracked.room = room;
      this.rooms.open(room, seq);
      info = {
        host: options.bootstrapHost,
        port: options.bootstrapPort,
        room,
        prefillWorkerId: options.workerId,
        prefillDpRank: rank,
      };
    }
    try {
      sink.onStart?.(rank, info);
    } catch (error) {
      this.cancel(request.requestId);
      throw error;
    }

    if (signal !== undefined) {
      if (signal.aborted) {
        this.cancel(request.requestId);
        return;
      }
      tracked.onAbort = () => {
        this.cancel(request.requestId);
      };
      signal.addEventListener('abort', tracked.onAbort, { once: true });
    }
    if (seq.state === 'done') return; // cancelled from inside onStart

    if (bootstrap !== undefined) this.pullThenEnqueue(tracked, bootstrap);
    else this.schedulers[rank].enqueue(seq);
  }

  /** Cancels a request: its blocks and load are freed at once. Returns false if it is not running. */
  cancel(requestId: string): boolean {
    const tracked = this.active.get(requestId);
    if (tracked === undefined) return false;
    const seq = tracked.seq;
    if (seq.state === 'pulling') tracked.pull?.abort();
    else if (seq.state !== 'done') this.schedulers[seq.dpRank].remove(seq);
    if (tracked.room !== null) this.rooms.abandon(tracked.room, 'prefill cancelled');
    seq.state = 'done';
    seq.finishedAt = this.clock.now();
    this.complete(tracked, 'cancelled');
    return true;
  }

  /** Subscribes to every rank's KV events; returns the unsubscribe function. */
  onKvEvent(listener: (event: KvCacheEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Metrics of every rank (no argument) or of one rank. */
  rankMetrics(): RankMetrics[];
  rankMetrics(rank: number): RankMetrics;
  rankMetrics(rank?: number): RankMetrics | RankMetrics[] {
    if (rank === undefined) return this.schedulers.map((s) => s.metrics());
    return this.schedulerOf(rank).metrics();
  }

  /** Requests running or waiting on a rank. */
  load(rank: number): number {
    return this.schedulerOf(rank).load;
  }

  /** The rank's local indexer; throws when the engine runs without (enableLocalIndexer false). */
  localIndexer(rank: number): LocalIndexer {
    this.schedulerOf(rank);
    const indexer = this.indexers[rank];
    if (indexer === null)
      throw new EngineError('ENGINE_INVALID_OPTIONS', 'this engine runs without local indexers');
    return indexer;
  }

  /** Where a running or recently finished request ran, and when. */
  placement(requestId: string): Placement | undefined {
    const tracked = this.active.get(requestId);
    if (tracked === undefined) return this.placements.get(requestId);
    return this.placements.limit === 0 ? undefined : placementOf(tracked);
  }

  /** The full blocks a rank holds (active or cached): the ground truth its events must rebuild. */
  heldBlocks(rank: number): StoredBlock[] {
    const out: StoredBlock[] = [];
    for (const block of this.schedulerOf(rank).kv.fullBlocks())
      out.push({ blockHash: block.seqHash!, tokensHash: block.tokensHash });
    return out;
  }

  /** References held on a block of a rank (0 = cached but inactive, or absent). */
  blockRefs(rank: number, blockHash: bigint): number {
    return this.schedulerOf(rank).kv.refsOf(blockHash);
  }

  /** Prefill rooms whose KV is still held. */
  get openRooms(): number {
    return this.rooms.size;
  }

  /**
   * Drops every rank's cached (inactive) blocks, each rank publishing `cleared` (SGLang's
   * flush_cache; a router drops all ranks of a worker on `cleared`, so it is engine-wide).
   * Refused (false, nothing changed) while any rank holds active blocks.
   */
  clearCache(): boolean {
    if (this.schedulers.some((s) => s.kv.activeBlocks > 0)) return false;
    for (const scheduler of this.schedulers) scheduler.kv.clear();
    return true;
  }

  /** KvSource: hands the KV held in `room` on `dpRank` to a decode engine. */
  claimRoom(room: number, dpRank: number, signal?: AbortSignal): Promise<PulledKv> {
    return this.rooms.claim(room, dpRank, signal);
  }

  /** Cancels every request, frees every room and stops the iteration loops. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const requestId of [...this.active.keys()]) this.cancel(requestId);
    this.rooms.close();
    for (const scheduler of this.schedulers) scheduler.stop();
    this.unregisterSource?.();
    this.unregisterSource = null;
  }

  private schedulerOf(rank: number): RankScheduler {
    const scheduler = this.schedulers[rank];
    if (scheduler === undefined)
      throw new EngineError(
        'ENGINE_RANK_OUT_OF_RANGE',
        `rank ${rank} out of range [0, ${this.schedulers.length})`,
      );
    return scheduler;
  }

  private leastLoadedRank(): number {
    let best = 0;
    let bestLoad = Number.POSITIVE_INFINITY;
    let bestBlocks = Number.POSITIVE_INFINITY;
    for (let rank = 0; rank < this.schedulers.length; rank++) {
      const scheduler = this.schedulers[rank];
      const load = scheduler.load;
      const blocks = scheduler.kv.activeBlocks;
      if (load < bestLoad || (load === bestLoad && blocks < bestBlocks)) {
        best = rank;
        bestLoad = load;
        bestBlocks = blocks;
      }
    }
    return best;
  }

  private pullThenEnqueue(tracked: Tracked, bootstrap: BootstrapInfo): void {
    const seq = tracked.seq;
    seq.state = 'pulling';
    const controller = new AbortController();
    tracked.pull = controller;
    this.options.transfer!.pull(bootstrap, controller.signal).then(
      (pulled) => {
        if (seq.state !== 'pulling') return;
        tracked.pull = null;
        if (!samePrompt(pulled.tokens, seq)) {
          this.fail(
            tracked,
            new EngineError(
              'ENGINE_BOOTSTRAP_PROMPT_MISMATCH',
              `bootstrap room ${bootstrap.room} holds a different prompt (${pulled.tokens.length} tokens) than request ${seq.requestId} (${seq.promptLength})`,
            ),
          );
          return;
        }
        tracked.prefillWorkerId = bootstrap.prefillWorkerId;
        tracked.prefillDpRank = bootstrap.prefillDpRank;
        seq.kvPulled = true;
        this.schedulers[seq.dpRank].enqueue(seq);
      },
      (error: unknown) => {
        if (seq.state !== 'pulling') return;
        tracked.pull = null;
        this.fail(
          tracked,
          error instanceof EngineError
            ? error
            : new EngineError('ENGINE_BOOTSTRAP_ROOM_NOT_FOUND', `KV pull failed: ${String(error)}`),
        );
      },
    );
  }

  private fail(tracked: Tracked, error: EngineError): void {
    tracked.seq.state = 'done';
    tracked.seq.finishedAt = this.clock.now();
    this.complete(tracked, 'error', error);
  }

  private onSchedulerFinished(seq: EngineSequence, reason: 'stop' | 'length'): void {
    const tracked = this.active.get(seq.requestId);
    if (tracked !== undefined && tracked.room !== null) this.rooms.ready(tracked.room);
    else this.schedulers[seq.dpRank].releaseBlocks(seq);
    if (tracked !== undefined) this.complete(tracked, reason);
  }

  private complete(tracked: Tracked, reason: FinishReason, error?: EngineError): void {
    const seq = tracked.seq;
    this.active.delete(seq.requestId);
    if (tracked.onAbort !== null) tracked.signal?.removeEventListener('abort', tracked.onAbort);
    tracked.onAbort = null;
    this.record(tracked, reason);
    const result: RequestResult =
      error === undefined
        ? { reason, usage: seq.usage(), dpRank: seq.dpRank, timing: seq.timing() }
        : { reason, usage: seq.usage(), dpRank: seq.dpRank, timing: seq.timing(), error };
    try {
      seq.sink.onFinish(result);
    } catch (error) {
      // The request is over either way; a throwing consumer must not stall the rank's loop.
      log.error({ err: error, requestId: seq.requestId }, 'request sink threw from onFinish');
    }
  }

  private onSinkFailed(seq: EngineSequence, error: unknown): void {
    log.error(
      { err: error, requestId: seq.requestId },
      'request sink threw from onToken; ending the request',
    );
    const tracked = this.active.get(seq.requestId);
    if (tracked === undefined) return;
    this.schedulers[seq.dpRank].remove(seq);
    if (tracked.room !== null) this.rooms.abandon(tracked.room, 'prefill consumer failed');
    this.fail(
      tracked,
      new EngineError('ENGINE_SINK_FAILED', `consumer of request ${seq.requestId} threw: ${String(error)}`),
    );
  }

  private record(tracked: Tracked, finishReason: FinishReason): void {
    if (this.placements.limit > 0) this.placements.add(placementOf(tracked, finishReason));
  }

  private publish(indexer: LocalIndexer | null, event: KvCacheEvent): void {
    indexer?.apply(event);
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        log.error({ err: error }, 'KV event listener threw');
      }
    }
  }
}

const NO_TOKENS: readonly number[] = [];

/**
 * The tokens that end a request with reason 'stop' (its stop ids, and EOS unless ignored), null for
 * none: a few (the usual end-of-text and turn-end ids) as a list, searched per token; many as a Set.
 */
function stopTokens(sampling: GenerateRequest['sampling'], eos: readonly number[]): StopTokens | null {
  const ids = sampling.stopTokenIds ?? NO_TOKENS;
  const extra = sampling.ignoreEos === true ? NO_TOKENS : eos;
  const count = ids.length + extra.length;
  if (count === 0) return null;
  if (count > SHORT_STOP_LIST) {
    const set = new Set<number>(ids);
    for (const token of extra) set.add(token);
    return set;
  }
  if (extra.length === 0) return ids.slice(); // the caller's own array, kept for the whole request
  return ids.length === 0 ? extra : [...ids, ...extra];
}

/** Where and when a request ran so far (finished: with its finish reason). */
function placementOf(tracked: Tracked, finishReason?: FinishReason): Placement {
  const seq = tracked.seq;
  // One literal with every field (absent ones undefined): one shape, no properties added later
  // (each added one costs a map transition and out-of-object storage, per finished request).
  return {
    requestId: seq.requestId,
    dpRank: seq.dpRank,
    bootstrapRoom: tracked.room ?? undefined,
    prefillWorkerId: tracked.prefillDpRank === undefined ? undefined : tracked.prefillWorkerId,
    prefillDpRank: tracked.prefillDpRank,
    arrivedAt: seq.arrivedAt,
    firstTokenAt: seq.firstTokenAt,
    finishedAt: seq.finishedAt,
    finishReason,
    completionTokens: seq.generated,
    cachedTokens: Math.max(0, seq.cachedTokens),
    preemptions: seq.preemptions,
  };
}

function samePrompt(tokens: readonly number[], seq: EngineSequence): boolean {
  if (tokens.length !== seq.promptLength) return false;
  for (let i = 0; i < tokens.length; i++) if (tokens[i] !== seq.prompt[i]) return false;
  return true;
}
