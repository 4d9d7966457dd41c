/**
 * Shared pieces of the disaggregation tests: the embedded layout with a bare router, prompts, and
 * draining a disaggregated stream.
 */
import type { DisaggChunk, DisaggRequest } from '../../src/cluster/disagg/disaggregated-model-router.ts';
import {
  type DisaggregatedRouterHandle,
  type DisaggregatedRouterOptions,
  type DisaggregatedWorkers,
  type DisaggregatedWorkersOptions,
  startDisaggregatedRouter,
  startDisaggregatedWorkers,
} from '../../src/cluster/disagg/embedded.ts';
import type { Placement } from '../../src/engine/data-parallel-engine.ts';
import type { WorkerId } from '../../src/kv/events.ts';
import type { Worker } from '../../src/worker/worker.ts';

export const MODEL = 'disagg-test';
export const BLOCK_SIZE = 16;

export interface Layout {
  readonly workers: DisaggregatedWorkers;
  readonly handle: DisaggregatedRouterHandle;
  /** The engine placement of a request on the worker with this id. */
  placement(workerId: WorkerId, requestId: string): Placement | undefined;
  workerById(workerId: WorkerId): Worker;
  close(): Promise<void>;
}

export async function startLayout(
  workers: Partial<DisaggregatedWorkersOptions> &
    Pick<DisaggregatedWorkersOptions, 'prefillWorkers' | 'decodeWorkers'>,
  router: Partial<Omit<DisaggregatedRouterOptions, 'runtime' | 'model'>> = {},
): Promise<Layout> {
  const started = await startDisaggregatedWorkers({
    model: MODEL,
    ...workers,
    engine: {
      blockSize: BLOCK_SIZE,
      dataParallelSize: 4,
      speedupRatio: 0,
      numGpuBlocks: 4096,
      ...workers.engine,
    },
    drainTimeoutMs: 0,
  });
  const runtime = started.cluster.runtime();
  const handle = await startDisaggregatedRouter({
    runtime,
    model: MODEL,
    routerConfig: { blockSize: workers.engine?.blockSize ?? BLOCK_SIZE },
    expect: { prefill: workers.prefillWorkers, decode: workers.decodeWorkers },
    ...router,
  });
  const all = [...started.prefill, ...started.decode];
  const workerById = (workerId: WorkerId) => {
    const worker = all.find((w) => w.instanceId === workerId);
    if (worker === undefined) throw new Error(`no worker ${workerId}`);
    return worker;
  };
  return {
    workers: started,
    handle,
    workerById,
    placement: (workerId, requestId) => started.engineOf(workerById(workerId)).engine.placement(requestId),
    close: async () => {
      await handle.close();
      await started.close();
      await runtime.close();
    },
  };
}

/** Deterministic pseudo-random prompt of `length` tokens (distinct per seed). */
export function prompt(seed: number, length: number, prefix: readonly number[] = []): number[] {
  const out = [...prefix];
  let x = (seed * 2654435761 + 12345) >>> 0;
  while (out.length < length) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(x % 50_000);
  }
  return out;
}

export function request(
  id: string,
  tokenIds: readonly number[],
  extra: Partial<DisaggRequest> = {},
): DisaggRequest {
  return { requestId: id, tokenIds, sampling: { maxTokens: 3, ignoreEos: true, seed: 1 }, ...extra };
}

export async function collect(stream: AsyncIterable<DisaggChunk>): Promise<DisaggChunk[]> {
  const chunks: DisaggChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

export function tokensOf(chunks: readonly DisaggChunk[]): number[] {
  return chunks.flatMap((c) => c.tokenIds);
}
