/** The router's view of the cluster: one ModelRouter per (model, component), kept by a ModelWatcher. */
export { BadResponseError, ClusterError, WorkerLostError, WorkerRequestError } from './errors.ts';
export {
  type BusyThresholds,
  type ModelInstance,
  type ModelRankLoad,
  ModelRouter,
  type ModelRouterOptions,
  type ModelRouterStats,
  type RequestRouting,
  type RoutedChunk,
  type RoutedRequest,
} from './model-router.ts';
export { type ModelChange, ModelWatcher, type ModelWatcherOptions } from './model-watcher.ts';
