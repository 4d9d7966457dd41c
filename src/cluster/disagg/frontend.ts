/**
 * The OpenAI frontend with disaggregation: like startClusterFrontend, but each model is served
 * through a DisaggregatedModelRouter, and the watcher's prefill routers run without active-block
 * tracking (Dynamo's prefill pool settings). Models without prefill workers run aggregated unless
 * disaggregation is enforced.
 */
import {
  type ClusterFrontend,
  type ClusterFrontendOptions,
  serveCluster,
  startModelWatcher,
} from '../../frontend/cluster-frontend.ts';
import { FrontendMetrics } from '../../frontend/metrics.ts';
import { PREFILL_COMPONENT } from '../../protocol/wire.ts';
import { DisaggregatedModelRegistry } from './backend.ts';
import type { DisaggregationOptions } from './disaggregated-model-router.ts';
import { DisaggMetrics } from './metrics.ts';
import type { PrefillSelector } from './selection.ts';

export interface DisaggFrontendOptions extends ClusterFrontendOptions, DisaggregationOptions {
  /** Chooses prefill workers instead of the embedded prefill routers (a standalone router). */
  readonly prefillSelector?: PrefillSelector;
}

export type DisaggFrontend = ClusterFrontend<DisaggregatedModelRegistry>;

/** Prefill pools track prompt tokens only (Dynamo: --no-router-track-active-blocks for prefill). */
export const PREFILL_ROUTER_CONFIG = { trackActiveBlocks: false, trackOutputBlocks: false } as const;

export async function startDisaggregatedFrontend(options: DisaggFrontendOptions): Promise<DisaggFrontend> {
  const watcher = await startModelWatcher(options, { [PREFILL_COMPONENT]: PREFILL_ROUTER_CONFIG });
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
  return serveCluster(watcher, registry, metrics, options);
}
