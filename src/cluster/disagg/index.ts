/** Disaggregated prefill/decode serving: router, frontend backend, embedded layout. */
export {
  type DisaggBackendOptions,
  type DisaggRegistryOptions,
  DisaggregatedModelBackend,
  DisaggregatedModelRegistry,
  disaggApiError,
} from './backend.ts';
export { canPrefillLocally, type DecodeNeed, rolesFor, routingFor } from './decode-pool.ts';
export {
  type AggregatedReason,
  DECODE_OVERRIDES,
  type DisaggChunk,
  type DisaggDecision,
  type DisaggOutcome,
  type DisaggRequest,
  DisaggregatedModelRouter,
  type DisaggregatedModelRouterOptions,
  type DisaggregationOptions,
  type DisaggStats,
} from './disaggregated-model-router.ts';
export {
  type DisaggEmbeddedServer,
  type DisaggEmbeddedServerOptions,
  type DisaggregatedRouterHandle,
  type DisaggregatedRouterOptions,
  type DisaggregatedWorkers,
  type DisaggregatedWorkersOptions,
  type LayoutEngineOptions,
  startDisaggEmbeddedServer,
  startDisaggregatedRouter,
  startDisaggregatedWorkers,
  waitForPools,
} from './embedded.ts';
export { DisaggError, type DisaggErrorCode } from './errors.ts';
export {
  type DisaggFrontend,
  type DisaggFrontendOptions,
  PREFILL_ROUTER_CONFIG,
  startDisaggregatedFrontend,
} from './frontend.ts';
export { DisaggMetrics } from './metrics.ts';
export { type PrefillHandoff, type PrefillTarget, startPrefill } from './prefill-handoff.ts';
export { effectiveRank, type PrefillSelector, type WorkerSelection } from './selection.ts';
