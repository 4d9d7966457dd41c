/**
 * The OpenAI frontend over a runtime (local or nats + etcd): a ModelWatcher discovers the workers
 * of a namespace and keeps one router per model; the HTTP server serves whatever it finds. Used by
 * `kvgate serve` (embedded workers on the local runtime) and `kvgate frontend` (distributed).
 */
import type { FastifyInstance } from 'fastify';
import { ModelWatcher, type ModelWatcherOptions } from '../cluster/model-watcher.ts';
import type { KvRouterConfigInput } from '../routing/config.ts';
import type { PolicyName } from '../routing/policy.ts';
import type { Runtime } from '../runtime/types.ts';
import type { Tokenizer } from '../tokens/tokenizer.ts';
import type { Logger } from '../util/log.ts';
import type { BusyThresholds, ModelRegistry } from './backend.ts';
import { ClusterModelRegistry } from './cluster-backend.ts';
import { ClusterStatus } from './cluster-status.ts';
import { FrontendMetrics } from './metrics.ts';
import { createFrontendServer } from './server.ts';

export interface ClusterFrontendOptions {
  readonly runtime: Runtime;
  /** Default `kvgate`. */
  readonly namespace?: string;
  /** Routing policy (default `kv`). */
  readonly policy?: PolicyName;
  /** Router config; without a blockSize each model's router takes its first worker's. */
  readonly routerConfig?: KvRouterConfigInput;
  /** Re-routes after a worker dies mid-stream (default 3; 0 = fail at once). */
  readonly migrationLimit?: number;
  /** How long a request waits for a first worker of its model (default 30 s). */
  readonly waitForWorkersMs?: number;
  readonly busyThresholds?: Partial<BusyThresholds>;
  /** Tokenizer for every model (default o200k_base). */
  readonly tokenizer?: Tokenizer | Promise<Tokenizer>;
  readonly apiKeys?: readonly string[];
  readonly maxInflight?: number;
  readonly logger?: Logger;
}

export interface ClusterFrontend<R extends ModelRegistry = ClusterModelRegistry> {
  readonly app: FastifyInstance;
  readonly watcher: ModelWatcher;
  readonly registry: R;
  readonly status: ClusterStatus;
  readonly metrics: FrontendMetrics;
  /** Stops the HTTP server (in-flight requests finish first), then the routers. */
  close(): Promise<void>;
}

export async function startClusterFrontend(options: ClusterFrontendOptions): Promise<ClusterFrontend> {
  const watcher = await startModelWatcher(options);
  const registry = new ClusterModelRegistry(watcher, {
    ...(options.busyThresholds !== undefined ? { busyThresholds: options.busyThresholds } : {}),
  });
  return serveCluster(watcher, registry, new FrontendMetrics(), options);
}

/** The watcher of a frontend's namespace, with one router per (model, component). */
export function startModelWatcher(
  options: ClusterFrontendOptions,
  componentConfig?: ModelWatcherOptions['componentConfig'],
): Promise<ModelWatcher> {
  return ModelWatcher.start({
    runtime: options.runtime,
    ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
    ...(options.policy !== undefined ? { policy: options.policy } : {}),
    ...(options.routerConfig !== undefined ? { config: options.routerConfig } : {}),
    ...(componentConfig !== undefined ? { componentConfig } : {}),
    ...(options.migrationLimit !== undefined ? { migrationLimit: options.migrationLimit } : {}),
    ...(options.waitForWorkersMs !== undefined ? { waitForWorkersMs: options.waitForWorkersMs } : {}),
  });
}

/**
 * The HTTP server over a registry of the watcher's models: dashboard and per-(worker, rank) gauges
 * from the cluster's status. Closes the watcher if the server cannot start.
 */
export async function serveCluster<R extends ModelRegistry>(
  watcher: ModelWatcher,
  registry: R,
  metrics: FrontendMetrics,
  options: ClusterFrontendOptions,
): Promise<ClusterFrontend<R>> {
  const status = new ClusterStatus(watcher, metrics);
  let app: FastifyInstance;
  try {
    app = createFrontendServer({
      registry,
      metrics,
      dashboardData: () => status.snapshot(),
      // The per-(worker, rank) gauges are read fresh on every scrape (a route hook, not a
      // per-request onRequest hook, so generation requests pay nothing for it).
      beforeMetricsScrape: () => status.snapshot(),
      ...(options.tokenizer !== undefined ? { tokenizer: options.tokenizer } : {}),
      ...(options.apiKeys !== undefined ? { apiKeys: options.apiKeys } : {}),
      ...(options.maxInflight !== undefined ? { maxInflight: options.maxInflight } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
    });
    await app.ready();
  } catch (error) {
    await watcher.close();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    app,
    watcher,
    registry,
    status,
    metrics,
    close() {
      closing ??= (async () => {
        await app.close();
        await watcher.close();
      })();
      return closing;
    },
  };
}
