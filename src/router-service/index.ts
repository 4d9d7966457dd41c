/** The standalone router service (`kvgate router`) and the client other frontends use. */
export { type BestWorkerOptions, RemoteRouterClient, type RemoteRouterClientOptions } from './client.ts';
export {
  BEST_WORKER_ENDPOINT,
  type BestWorkerAnswer,
  type BestWorkerQuery,
  bestWorkerAnswerFromWire,
  bestWorkerAnswerToWire,
  bestWorkerQueryFromWire,
  bestWorkerQueryToWire,
  ROUTER_COMPONENT,
  ROUTER_GENERATE_ENDPOINT,
  type RouterGenerateRequest,
  routerGenerateRequestFromWire,
} from './protocol.ts';
export { RouterService, type RouterServiceOptions, type RouterServiceStats } from './router-service.ts';
