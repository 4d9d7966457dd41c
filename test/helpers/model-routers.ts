/**
 * ModelRouters and mock-engine Workers a cluster test starts on runtimes of its choosing, with the
 * cluster tests' model and block size; every one is closed after each test.
 */
import { afterEach } from 'vitest';
import { ModelRouter, type ModelRouterOptions } from '../../src/cluster/model-router.ts';
import type { EngineOptions } from '../../src/engine/options.ts';
import type { Runtime } from '../../src/runtime/types.ts';
import type { Worker } from '../../src/worker/worker.ts';
import { BLOCK_SIZE, MODEL, startWorker } from '../cluster/helpers.ts';

export interface ModelRouterKit {
  /** Closed after each test; a test may add its own or take one out (one it closed itself). */
  readonly routers: ModelRouter[];
  /** Shut down after each test, like `routers`. */
  readonly workers: Worker[];
  /** A router of MODEL (block size BLOCK_SIZE unless `options.config` says otherwise). */
  router(namespace: string, options?: Partial<ModelRouterOptions>): Promise<ModelRouter>;
  /** A registered worker serving `model` (default MODEL). */
  worker(
    namespace: string,
    engine?: Partial<EngineOptions>,
    options?: { readonly model?: string; readonly leaseTtlSeconds?: number },
  ): Promise<Worker>;
}

export function modelRouterKit(
  runtime: (options: { leaseTtlSeconds?: number }) => Runtime | Promise<Runtime>,
  timing: { readonly waitForWorkersMs: number; readonly recoveryDelayMs: number },
): ModelRouterKit {
  const routers: ModelRouter[] = [];
  const workers: Worker[] = [];
  afterEach(async () => {
    await Promise.all(routers.splice(0).map((r) => r.close()));
    await Promise.all(workers.splice(0).map((w) => w.shutdown({ drainTimeoutMs: 0 })));
  });
  return {
    routers,
    workers,
    async router(namespace, options = {}) {
      const router = await ModelRouter.create({
        runtime: options.runtime ?? (await runtime({})),
        namespace,
        model: MODEL,
        ...timing,
        ...options,
        config: { blockSize: BLOCK_SIZE, ...options.config },
      });
      routers.push(router);
      return router;
    },
    async worker(namespace, engine = {}, options = {}) {
      const leaseTtl = options.leaseTtlSeconds;
      const rt = await runtime(leaseTtl !== undefined ? { leaseTtlSeconds: leaseTtl } : {});
      const worker = await startWorker(rt, namespace, engine, options.model ?? MODEL);
      workers.push(worker);
      return worker;
    },
  };
}
