/**
 * Mock engine options, with Dynamo mocker's defaults (reference §9), validated once at
 * construction (zod) so a bad configuration fails loudly before any request runs.
 */
import { z } from 'zod';
import type { KvCacheEvent, WorkerId } from '../kv/events.ts';
import type { KvIndexer } from '../kv/indexer.ts';
import type { WorkerRole } from '../protocol/generate.ts';
import { type Clock, realClock } from '../util/clock.ts';
import { EngineError } from './errors.ts';
import { type PerfModel, PolynomialPerfModel } from './perf-model.ts';
import type { KvTransfer } from './transfer.ts';

export type EngineMode = WorkerRole;

export interface EngineOptions {
  /** KV blocks per rank. */
  readonly numGpuBlocks: number;
  /** Tokens per KV block (SGLang page size). */
  readonly blockSize: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly enablePrefixCaching: boolean;
  readonly enableChunkedPrefill: boolean;
  /** Share of blocks kept free at admission. */
  readonly watermark: number;
  /** Simulated time runs this many times faster than the clock; 0 = no delay at all. */
  readonly speedupRatio: number;
  readonly dataParallelSize: number;
  readonly mode: EngineMode;
  readonly clock: Clock;
  /** Mixed into every request's output-token seed and into bootstrap room ids. */
  readonly seed: number;
  readonly perfModel: PerfModel;
  /** This engine's worker id (in its published RouterEvents and bootstrap infos). */
  readonly workerId: WorkerId;
  /** Block hash seed (see tokens/block-hash.ts namespaceSeed); default Dynamo's 1337. */
  readonly hashSeed?: bigint;
  /** Publish KV events; default: prefix caching on and not a decode engine (as Dynamo). */
  readonly publishKvEvents: boolean;
  /** End-of-sequence tokens: finish with 'stop' unless the request sets ignoreEos. */
  readonly eosTokenIds: readonly number[];
  /** Where decode engines find this prefill engine (carried in bootstrap infos). */
  readonly bootstrapHost: string;
  readonly bootstrapPort: number;
  /** How long prefilled KV waits for its decode (clock ms) before it is freed. */
  readonly bootstrapTimeoutMs: number;
  /** Decode mode: how KV is pulled from prefill workers. An InProcessKvTransfer also gets a prefill engine registered. */
  readonly transfer?: KvTransfer;
  /** Subscribes to every rank's KV events from the start (same as calling onKvEvent). */
  readonly onKvEvent?: (event: KvCacheEvent) => void;
  /** Keep a local indexer per rank for router recovery (Dynamo: on unless events are durable). */
  readonly enableLocalIndexer: boolean;
  /** The index behind each rank's local indexer; default the router's RadixTreeIndexer. */
  readonly createLocalIndex?: () => KvIndexer;
  /** Events each rank's local indexer keeps for gap recovery. */
  readonly localIndexerBufferSize: number;
  /** Finished requests whose placement (rank, prefill rank, timing) is remembered. */
  readonly placementHistory: number;
}

/** Events a rank's local indexer keeps for the router's gap recovery, unless configured. */
export const DEFAULT_LOCAL_INDEXER_BUFFER_SIZE = 10_000;

const positiveInt = z.number().int().positive();
const numericSchema = z.object({
  numGpuBlocks: positiveInt,
  blockSize: positiveInt.max(1 << 16),
  maxNumSeqs: positiveInt,
  maxNumBatchedTokens: positiveInt,
  enablePrefixCaching: z.boolean(),
  enableChunkedPrefill: z.boolean(),
  watermark: z.number().min(0).lt(1),
  speedupRatio: z.number().min(0).finite(),
  dataParallelSize: positiveInt.max(1 << 16),
  mode: z.enum(['aggregated', 'prefill', 'decode']),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  workerId: z.bigint().min(0n).max(0xffff_ffff_ffff_ffffn),
  hashSeed: z.bigint().min(0n).max(0xffff_ffff_ffff_ffffn).optional(),
  publishKvEvents: z.boolean(),
  eosTokenIds: z.array(z.number().int().min(0).max(0xffff_ffff)),
  bootstrapHost: z.string().min(1),
  bootstrapPort: z.number().int().min(0).max(65535),
  bootstrapTimeoutMs: z.number().positive(),
  enableLocalIndexer: z.boolean(),
  localIndexerBufferSize: positiveInt,
  placementHistory: z.number().int().min(0),
});

export function resolveEngineOptions(options: Partial<EngineOptions> = {}): EngineOptions {
  const enablePrefixCaching = options.enablePrefixCaching ?? true;
  const mode = options.mode ?? 'aggregated';
  const resolved: EngineOptions = {
    numGpuBlocks: 16384,
    blockSize: 64,
    maxNumSeqs: 256,
    maxNumBatchedTokens: 8192,
    enableChunkedPrefill: true,
    watermark: 0.01,
    speedupRatio: 1,
    dataParallelSize: 1,
    clock: realClock,
    seed: 0,
    perfModel: new PolynomialPerfModel(),
    workerId: 0n,
    publishKvEvents: enablePrefixCaching && mode !== 'decode',
    eosTokenIds: [],
    bootstrapHost: '127.0.0.1',
    bootstrapPort: 0,
    bootstrapTimeoutMs: 30_000,
    enableLocalIndexer: true,
    localIndexerBufferSize: DEFAULT_LOCAL_INDEXER_BUFFER_SIZE,
    placementHistory: 10_000,
    ...stripUndefined(options),
    enablePrefixCaching,
    mode,
  };
  const parsed = numericSchema.safeParse(resolved);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new EngineError(
      'ENGINE_INVALID_OPTIONS',
      `engine option ${issue.path.join('.')}: ${issue.message}`,
    );
  }
  if (resolved.publishKvEvents && !resolved.enablePrefixCaching)
    throw new EngineError('ENGINE_INVALID_OPTIONS', 'publishKvEvents needs enablePrefixCaching');
  if (typeof resolved.clock?.now !== 'function' || typeof resolved.clock.setTimer !== 'function')
    throw new EngineError('ENGINE_INVALID_OPTIONS', 'engine option clock: not a Clock');
  if (
    typeof resolved.perfModel?.prefillMs !== 'function' ||
    typeof resolved.perfModel.decodeMs !== 'function'
  )
    throw new EngineError('ENGINE_INVALID_OPTIONS', 'engine option perfModel: not a PerfModel');
  return resolved;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key of Object.keys(value) as (keyof T)[]) if (value[key] !== undefined) out[key] = value[key];
  return out;
}
