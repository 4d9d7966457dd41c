/**
 * The OpenAI frontend with disaggregation: like startClusterFrontend, but each model is served
 * through a DisaggregatedModelRouter, and the watcher's prefill routers run without active-block
 * tracking (Dynamo's prefill pool settings). Models without prefill workers run aggregated unless
 * disaggregation is enforced.
 */
import type { FastifyInstance } from 'fastify';
import { ModelWatcher } from '../../cluster/model-watcher.ts';
import type { ClusterFrontendOptions } from '../../frontend/cluster-frontend.ts';
import { ClusterStatus } from '../../frontend/cluster-status.ts';
import { FrontendMetrics } from '../../frontend/metrics.ts';
import { createFrontendServer } from '../../frontend/server.ts';
import { PREFILL_COMPONENT } from '../../protocol/wire.ts';
import { DisaggregatedModelRegistry } from './backend.ts';
import type { DisaggregationOptions } from './disaggregated-model-router.ts';
import { DisaggMetrics } from './metrics.ts';
import type { PrefillSelector } from './selection.ts';

export interface DisaggFrontendOptions extends ClusterFrontendOptions, DisaggregationOptions {
  /** Chooses prefill workers instead of the embedded prefill routers (a standalone router). */
  readonly prefillSelector?: PrefillSelector;
}

export interface DisaggFrontend {
  readonly app: FastifyInstance;
  readonly watcher: ModelWatcher;
  readonly registry: DisaggregatedModelRegistry;
  readonly status: ClusterStatus;
  readonly metrics: FrontendMetrics;
  close(): Promise<void>;
}

/** Prefill pools track prompt tokens only (Dynamo: --no-router-track-active-blocks for prefill). */
export const PREFILL_ROUTER_CONFIG = { trackActiveBlocks: false, trackOutputBlocks: false } as const;

export async function startDisaggregatedFrontend(options: DisaggFrontendOptions): Promise<DisaggFrontend> {
  const watcher = await ModelWatcher.start({
    runtime: options.runtime,
    ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
    ...(options.policy !== undefined ? { policy: options.policy } : {}),
    ...(options.routerConfig !== undefined ? { config: options.routerConfig } : {}),
    componentConfig: { [PREFILL_COMPONENT]: PREFILL_ROUTER_CONFIG },
    ...(options.migrationLimit !== undefined ? { migrationLimit: options.migrationLimit } : {}),
    ...(options.waitForWorkersMs !== undefined ? { waitForWorkersMs: options.waitForWorkersMs } : {}),
  });
  const metrics = new FrontendMetrics();
  const disaggMetrics = new DisaggMetrics(metrics.registry);
  const registry = new DisaggregatedModelRegistry(watcher, {
    runtime: options.runtime,
    onOutcome: (outcome) => {
      disaggMetrics.record(outcome);
      options.onOutcome?.(outcome);
    },
    ...(options.enforceDisagg !== undefined ? { enforceDisagg: options.enforceDisagg } : {}),
    ...(options.minUncachedTokens !== undefined ? { minUncachedTokens: options.minUncachedTokens } : {}),
    ...(options.prefillBusyThresholds !== undefined
      ? { prefillBusyThresholds: options.prefillBusyThresholds }
      : {}),
    ...(options.maxPrefillAttempts !== undefined ? { maxPrefillAttempts: options.maxPrefillAttempts } : {}),
    ...(options.prefillSelector !== undefined ? { prefillSelector: options.prefillSelector } : {}),
    ...(options.busyThresholds !== undefined ? { busyThresholds: options.busyThresholds } : {}),
  });
  const status = new ClusterStatus(watcher, metrics);
  let app: FastifyInstance;
  try {
    app = createFrontendServer({
      registry,
      metrics,
      dashboardData: () => status.snapshot(),
      ...(options.tokenizer !== undefined ? { tokenizer: options.tokenizer } : {}),
      ...(options.apiKeys !== undefined ? { apiKeys: options.apiKeys } : {}),
      ...(options.maxInflight !== undefined ? { maxInflight: options.maxInflight } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
    });
    app.addHook('onRequest', async (request) => {
      if (request.url === '/metrics' || request.url.startsWith('/metrics?')) status.snapshot();
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
