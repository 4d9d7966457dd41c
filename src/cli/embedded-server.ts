/**
 * Everything of `kvgate serve` in one process: N mock-engine workers (each a real `Worker` with its
 * own lease, data-parallel ranks, KV events and load reports) and the OpenAI frontend with its
 * router, all talking through one in-process `LocalCluster` exactly as they would over NATS and
 * etcd.
 */
import type { EngineOptions } from '../engine/options.ts';
import {
  type ClusterFrontend,
  type ClusterFrontendOptions,
  startClusterFrontend,
} from '../frontend/cluster-frontend.ts';
import { listenFrontend } from '../frontend/server.ts';
import { LocalCluster, type LocalRuntime } from '../runtime/local/cluster.ts';
import { MockEngineAdapter } from '../worker/engine-adapter.ts';
import { Worker } from '../worker/worker.ts';

export type EmbeddedEngineOptions = Pick<
  EngineOptions,
  'dataParallelSize' | 'blockSize' | 'numGpuBlocks' | 'maxNumSeqs' | 'maxNumBatchedTokens' | 'speedupRatio'
>;

export interface EmbeddedServerOptions extends Omit<ClusterFrontendOptions, 'runtime' | 'namespace'> {
  readonly model: string;
  readonly workers: number;
  readonly engine: EmbeddedEngineOptions;
  readonly host?: string;
  /** 0 = any free port. */
  readonly port?: number;
  /** How long stopping waits for in-flight requests (default 10 s). */
  readonly drainTimeoutMs?: number;
}

export interface EmbeddedServer {
  readonly url: string;
  readonly port: number;
  readonly frontend: ClusterFrontend;
  readonly workers: readonly Worker[];
  readonly cluster: LocalCluster;
  /** Stops the HTTP server (in-flight requests finish), then the workers, then the runtimes. */
  close(): Promise<void>;
}

export async function startEmbeddedServer(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const cluster = new LocalCluster();
  const runtimes: LocalRuntime[] = [];
  const workers: Worker[] = [];
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  let frontend: ClusterFrontend | undefined;
  const stop = async () => {
    await frontend?.close();
    await Promise.all(workers.map((w) => w.shutdown({ drainTimeoutMs })));
    await Promise.all(runtimes.map((r) => r.close()));
  };
  try {
    for (let i = 0; i < options.workers; i++) {
      const runtime = cluster.runtime();
      runtimes.push(runtime);
      workers.push(
        await Worker.start({
          runtime,
          modelName: options.model,
          engine: MockEngineAdapter.factory({ ...options.engine, seed: i }),
          drainTimeoutMs,
        }),
      );
    }
    await Promise.all(workers.map((w) => w.registered));
    const runtime = cluster.runtime();
    runtimes.push(runtime);
    const { model, workers: _n, engine, host, port, drainTimeoutMs: _d, ...frontendOptions } = options;
    frontend = await startClusterFrontend({
      ...frontendOptions,
      runtime,
      routerConfig: { ...frontendOptions.routerConfig, blockSize: engine.blockSize },
    });
    await waitForWorkers(frontend, model, workers.length);
    const address = await listenFrontend(frontend.app, { host: host ?? '127.0.0.1', port: port ?? 8000 });
    let closing: Promise<void> | undefined;
    return {
      ...address,
      frontend,
      workers,
      cluster,
      close: () => {
        closing ??= stop();
        return closing;
      },
    };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

/** Resolves once the frontend's router sees every embedded worker (discovery is asynchronous). */
async function waitForWorkers(frontend: ClusterFrontend, model: string, count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((frontend.watcher.routerFor(model)?.instances().length ?? 0) < count) {
    if (Date.now() > deadline)
      throw new Error(`the router saw only part of the ${count} embedded workers after 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
