/**
 * What a worker needs from the engine behind it. The mock engine (`DataParallelEngine`) is the one
 * that ships; SGLang and vLLM adapters implement the same interface over their HTTP APIs and ZMQ
 * KV-event publishers.
 */
import { DataParallelEngine } from '../engine/data-parallel-engine.ts';
import type { EventRangeResult } from '../engine/local-indexer.ts';
import type { EngineOptions } from '../engine/options.ts';
import type { KvTransfer, PulledKv } from '../engine/transfer.ts';
import type { KvCacheEvent, RouterEvent, WorkerId } from '../kv/events.ts';
import type { GenerateChunk, GenerateRequest, WorkerRole } from '../protocol/generate.ts';
import type { PushSource } from '../runtime/push.ts';

/** The engine facts a worker puts in its model card (DESIGN §7). */
export interface EngineDescription {
  readonly role: WorkerRole;
  readonly dataParallelSize: number;
  readonly kvBlockSize: number;
  /** KV blocks of one rank. */
  readonly totalKvBlocks: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
}

/** One rank's load, as published on kv_metrics. */
export interface EngineRankLoad {
  readonly dpRank: number;
  readonly activeDecodeBlocks: number;
  readonly totalKvBlocks: number;
  readonly numRunning: number;
  readonly numWaiting: number;
  readonly kvUsage: number;
  readonly prefixHitRate: number;
  readonly pendingPrefillTokens: number;
}

/** A rank's full dump and the newest event id it reflects. */
export interface RankDump {
  readonly events: RouterEvent[];
  readonly lastEventId: bigint | null;
}

export interface EngineAdapter {
  readonly description: EngineDescription;
  /** Streams one request; throws (a coded error) at once for a request the engine refuses. */
  generate(request: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateChunk>;
  /**
   * Optional in-process fast path: like `generate`, but a stream that can push its chunks and is
   * cancelled only by its consumer (return(), or the push handle), so no AbortSignal is needed.
   */
  generatePush?(request: GenerateRequest): PushSource<GenerateChunk>;
  /** Every rank's KV events, in order per rank; returns the unsubscribe function. */
  onKvEvent(listener: (event: KvCacheEvent) => void): () => void;
  /** Buffered events of a rank with ids in [from, to]; throws for a rank out of range. */
  eventsInRange(dpRank: number, from: bigint, to: bigint): EventRangeResult;
  /** Stored events rebuilding the rank's blocks; throws for a rank out of range. */
  dump(dpRank: number): RankDump;
  /** Newest event id of every rank (index = rank). */
  newestEventIds(): (bigint | null)[];
  rankLoads(): EngineRankLoad[];
  /** Prefill role: hands a bootstrap room's KV to a decode worker (rejects with a coded error). */
  claimRoom?(room: number, dpRank: number, signal?: AbortSignal): Promise<PulledKv>;
  close(): void;
}

/** What a worker gives the engine it builds: its id (in events and bootstrap infos) and the KV transfer. */
export interface EngineContext {
  readonly workerId: WorkerId;
  /** Decode role: pulls prefilled KV from prefill workers over the request plane. */
  readonly transfer: KvTransfer;
}

/** The mock engine behind the EngineAdapter interface. */
export class MockEngineAdapter implements EngineAdapter {
  readonly engine: DataParallelEngine;
  readonly description: EngineDescription;

  constructor(options: Partial<EngineOptions>) {
    this.engine = new DataParallelEngine(options);
    const o = this.engine.options;
    this.description = {
      role: o.mode,
      dataParallelSize: o.dataParallelSize,
      kvBlockSize: o.blockSize,
      totalKvBlocks: o.numGpuBlocks,
      maxNumSeqs: o.maxNumSeqs,
      maxNumBatchedTokens: o.maxNumBatchedTokens,
    };
  }

  /** Builds the mock engine for a worker: its id, and the transfer for the decode role. */
  static factory(options: Partial<EngineOptions>): (context: EngineContext) => MockEngineAdapter {
    return (context) =>
      new MockEngineAdapter({
        ...options,
        workerId: context.workerId,
        ...(options.mode === 'decode' && options.transfer === undefined
          ? { transfer: context.transfer }
          : {}),
      });
  }

  generate(request: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateChunk> {
    return this.engine.generate(request, signal);
  }

  generatePush(request: GenerateRequest): PushSource<GenerateChunk> {
    return this.engine.generate(request);
  }

  onKvEvent(listener: (event: KvCacheEvent) => void): () => void {
    return this.engine.onKvEvent(listener);
  }

  eventsInRange(dpRank: number, from: bigint, to: bigint): EventRangeResult {
    return this.engine.localIndexer(dpRank).eventsInRange(from, to);
  }

  dump(dpRank: number): RankDump {
    const indexer = this.engine.localIndexer(dpRank);
    return { events: indexer.dump(), lastEventId: indexer.newestEventId };
  }

  newestEventIds(): (bigint | null)[] {
    const out: (bigint | null)[] = [];
    for (let rank = 0; rank < this.description.dataParallelSize; rank++)
      out.push(this.engine.options.enableLocalIndexer ? this.engine.localIndexer(rank).newestEventId : null);
    return out;
  }

  rankLoads(): EngineRankLoad[] {
    return this.engine.rankMetrics().map((m) => ({
      dpRank: m.dpRank,
      activeDecodeBlocks: m.activeBlocks,
      totalKvBlocks: m.totalBlocks,
      numRunning: m.running,
      numWaiting: m.waiting,
      kvUsage: m.usage,
      prefixHitRate: m.prefixHitRate,
      pendingPrefillTokens: m.pendingPrefillTokens,
    }));
  }

  claimRoom(room: number, dpRank: number, signal?: AbortSignal): Promise<PulledKv> {
    return this.engine.claimRoom(room, dpRank, signal);
  }

  close(): void {
    this.engine.close();
  }
}
