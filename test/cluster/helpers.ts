/** Shared pieces of the cluster tests: workers on a runtime, canonical dumps, draining streams. */

import type { ModelRouter, RoutedChunk, RoutedRequest } from '../../src/cluster/model-router.ts';
import type { EngineOptions } from '../../src/engine/options.ts';
import type { RouterEvent } from '../../src/kv/events.ts';
import type { Runtime } from '../../src/runtime/types.ts';
import { MockEngineAdapter } from '../../src/worker/engine-adapter.ts';
import { Worker, type WorkerOptions } from '../../src/worker/worker.ts';

export const MODEL = 'mock-model';
export const BLOCK_SIZE = 4;

export const ENGINE: Partial<EngineOptions> = {
  dataParallelSize: 4,
  blockSize: BLOCK_SIZE,
  numGpuBlocks: 128,
  maxNumSeqs: 16,
  maxNumBatchedTokens: 512,
  speedupRatio: 0,
  seed: 5,
};

export async function startWorker(
  runtime: Runtime,
  namespace: string,
  engine: Partial<EngineOptions> = {},
  modelName = MODEL,
  options: Partial<WorkerOptions> = {},
): Promise<Worker> {
  const worker = await Worker.start({
    ...options,
    runtime,
    namespace,
    modelName,
    engine: MockEngineAdapter.factory({ ...ENGINE, ...engine }),
    metricsIntervalMs: 100,
    metricsThrottleMs: 20,
    drainTimeoutMs: 1_000,
  });
  await worker.registered;
  return worker;
}

/** Stored blocks as sorted `worker:rank:blockHash:tokensHash` strings (event ids ignored). */
export function canonical(events: readonly RouterEvent[]): string[] {
  const out: string[] = [];
  for (const e of events)
    if (e.event.data.kind === 'stored')
      for (const b of e.event.data.blocks)
        out.push(`${e.workerId}:${e.event.dpRank}:${b.blockHash}:${b.tokensHash}`);
  return out.sort();
}

/** The union of the workers' own local-indexer dumps, every rank. */
export function workersDump(workers: readonly Worker[]): string[] {
  const events: RouterEvent[] = [];
  for (const w of workers)
    for (let rank = 0; rank < w.engine.description.dataParallelSize; rank++)
      events.push(...w.engine.dump(rank).events);
  return canonical(events);
}

export async function drain<T = RoutedChunk>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}

let requestCounter = 0;
export function req(tokens: number[], maxTokens: number, routing?: RoutedRequest['routing']): RoutedRequest {
  return {
    requestId: `req-${requestCounter++}`,
    tokenIds: tokens,
    sampling: { maxTokens, ignoreEos: true },
    ...(routing ? { routing } : {}),
  };
}

/** A prompt sharing a prefix family: `family` picks the shared first blocks. */
export function prompt(family: number, length: number, salt = 0): number[] {
  return Array.from({ length }, (_, i) => (i < length - 3 ? family * 1000 + i : 50_000 + salt * 7 + i));
}

export function zeroLoads(router: ModelRouter): boolean {
  return router
    .loads()
    .every((l) => l.activeDecodeBlocks === 0 && l.activePrefillTokens === 0 && l.activeRequests === 0);
}
