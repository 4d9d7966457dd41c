/**
 * The frontend's model backends over the cluster view: one `ClusterModelBackend` per served model,
 * wrapping the `ModelRouter` a `ModelWatcher` keeps for the model's `backend` component, and a
 * `ClusterModelRegistry` listing what discovery currently sees.
 *
 * nvext pins become router pins (`backend_instance_id` or `decode_worker_id` + `dp_rank`),
 * `query_instance_id` becomes `decide` (no state change), and every chunk names the (worker,
 * rank) producing it (after a migration, the new one). Router and cluster errors are turned
 * into OpenAI-style errors with a clear message and the right status.
 */
import { ClusterError, WorkerLostError } from '../cluster/errors.ts';
import {
  type GenerateOptions,
  type ModelRouter,
  priorityJumpMs,
  type RequestRouting,
} from '../cluster/model-router.ts';
import type { ModelWatcher } from '../cluster/model-watcher.ts';
import {
  InvalidOverrideError,
  NoWorkersError,
  RankOutOfRangeError,
  RoutingError,
  UnknownWorkerError,
} from '../routing/errors.ts';
import { isRuntimeError } from '../runtime/errors.ts';
import type { Tokenizer } from '../tokens/tokenizer.ts';
import type { Cancellation } from '../util/cancel.ts';
import {
  type BackendChunk,
  BackendError,
  type BackendHealth,
  type BackendRequest,
  type BusyThresholdControl,
  type BusyThresholds,
  type ModelBackend,
  type ModelInfo,
  type ModelRegistry,
  type RoutingDecision,
} from './backend.ts';
import type { ChatTemplate } from './chat-template.ts';

/** Every busy check off (Dynamo's default). */
export const NO_BUSY_THRESHOLDS: BusyThresholds = {
  activeDecodeBlocksThreshold: null,
  activePrefillTokensThreshold: null,
  activePrefillTokensThresholdFrac: null,
};

/** Busy thresholds of one model, changeable at run time (/busy_threshold), checked on its router. */
export class BusyThresholdState implements BusyThresholdControl {
  private thresholds: BusyThresholds;

  constructor(initial: Partial<BusyThresholds> = {}) {
    this.thresholds = { ...NO_BUSY_THRESHOLDS, ...initial };
  }

  get(): BusyThresholds {
    return this.thresholds;
  }

  set(update: Partial<BusyThresholds>): BusyThresholds {
    this.thresholds = { ...this.thresholds, ...update };
    return this.thresholds;
  }

  /** True when a check is on and the router says every rank is over it. */
  isBusy(router: { isBusy(thresholds: BusyThresholds): boolean }): boolean {
    const t = this.thresholds;
    if (
      t.activeDecodeBlocksThreshold === null &&
      t.activePrefillTokensThreshold === null &&
      t.activePrefillTokensThresholdFrac === null
    )
      return false;
    return router.isBusy(t);
  }
}

export interface ClusterBackendOptions {
  /** Tokenizer for the model; absent = the server's default. */
  readonly tokenizer?: Tokenizer;
  readonly chatTemplate?: ChatTemplate;
  /** Maximum prompt + completion tokens; absent = unbounded. */
  readonly contextLength?: number;
  /** Initial busy thresholds (changeable at run time through /busy_threshold). */
  readonly busyThresholds?: Partial<BusyThresholds>;
  /** Unix seconds the model became available. */
  readonly created?: number;
}

export class ClusterModelBackend implements ModelBackend {
  readonly model: string;
  readonly created?: number;
  readonly ownedBy = 'kvgate';
  readonly contextLength?: number;
  readonly tokenizer?: Tokenizer;
  readonly chatTemplate?: ChatTemplate;
  readonly busyThresholds: BusyThresholdState;

  constructor(
    readonly router: ModelRouter,
    options: ClusterBackendOptions = {},
  ) {
    this.model = router.model;
    this.created = options.created;
    this.contextLength = options.contextLength;
    this.tokenizer = options.tokenizer;
    this.chatTemplate = options.chatTemplate;
    this.busyThresholds = new BusyThresholdState(options.busyThresholds);
  }

  generate(request: BackendRequest, signal: Cancellation): AsyncIterable<BackendChunk> {
    let routing: RequestRouting;
    try {
      routing = requestRouting(request);
    } catch (error) {
      return failedStream(error);
    }
    // A RoutedChunk is a BackendChunk naming its (worker, rank): passed on as it is.
    return this.router.generate(
      { requestId: request.requestId, tokenIds: request.tokenIds, sampling: request.sampling, routing },
      signal,
      API_ERRORS,
    );
  }

  async route(request: BackendRequest, signal: Cancellation): Promise<RoutingDecision> {
    const routing = requestRouting(request);
    try {
      await this.router.waitForInstances(undefined, signal);
      const decision = this.router.decide(request.tokenIds, routing);
      return { workerId: decision.workerId, dpRank: decision.dpRank, overlapBlocks: decision.overlapBlocks };
    } catch (error) {
      throw clusterApiError(error, signal);
    }
  }

  health(): BackendHealth {
    const instances = this.router.instances().map(({ workerId, card }) => ({
      workerId,
      role: card.role,
      dataParallelSize: card.dataParallelSize,
    }));
    return { ready: instances.length > 0, instances };
  }

  busy(): boolean {
    return this.busyThresholds.isBusy(this.router);
  }
}

/** Router errors become the errors the HTTP client sees. */
const API_ERRORS: GenerateOptions = { mapError: clusterApiError };

/** A stream whose first next() rejects (a request refused before routing). */
function failedStream(error: unknown): AsyncIterable<BackendChunk> {
  return {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }),
  };
}

/**
 * The router pin of a request. In an aggregated cluster `decode_worker_id` names the same worker
 * as `backend_instance_id`; prefill pins need a prefill pool, which this backend does not have.
 */
function requestRouting(request: BackendRequest): RequestRouting {
  const { routing, routerOverrides } = request;
  const jumpMs = priorityJumpMs(request.agentHints?.latencySensitivity);
  if (routing.prefillWorkerId !== undefined || routing.prefillDpRank !== undefined) {
    throw new BackendError(
      `Model '${request.model}' is served without disaggregation: nvext.prefill_worker_id and nvext.prefill_dp_rank do not apply.`,
      { status: 400, param: 'nvext.prefill_worker_id', code: 'unsupported' },
    );
  }
  const backend = routing.backendInstanceId;
  const decode = routing.decodeWorkerId;
  if (backend !== undefined && decode !== undefined && backend !== decode) {
    throw new BackendError(
      'nvext.backend_instance_id and nvext.decode_worker_id name different workers; give one of them.',
      { status: 400, param: 'nvext.decode_worker_id', code: 'invalid_value' },
    );
  }
  const workerId = backend ?? decode;
  if (
    workerId === undefined &&
    routing.dpRank === undefined &&
    routerOverrides === undefined &&
    jumpMs === undefined
  )
    return NO_PIN; // the common case, without building an object per request
  return {
    ...(workerId !== undefined ? { workerId } : {}),
    ...(routing.dpRank !== undefined ? { dpRank: routing.dpRank } : {}),
    ...(routerOverrides !== undefined ? { overrides: routerOverrides } : {}),
    ...(jumpMs !== undefined ? { priorityJumpMs: jumpMs } : {}),
  };
}

const NO_PIN: RequestRouting = Object.freeze({});

/** Maps what the router throws to the error the HTTP client sees (status, type, message). */
export function clusterApiError(error: unknown, signal?: Cancellation): unknown {
  if (error instanceof BackendError) return error;
  if (signal?.aborted && isRuntimeError(error, 'RUNTIME_CANCELLED')) return error;
  if (error instanceof RankOutOfRangeError)
    return new BackendError(error.message, { status: 400, param: 'nvext.dp_rank', code: 'invalid_dp_rank' });
  if (error instanceof UnknownWorkerError)
    return new BackendError(`No worker with instance id ${error.workerId} serves this model.`, {
      status: 404,
      type: 'invalid_request_error',
      param: 'nvext.backend_instance_id',
      code: 'worker_not_found',
    });
  if (error instanceof InvalidOverrideError)
    return new BackendError(error.message, {
      status: 400,
      param: 'nvext.router_config_override',
      code: 'invalid_value',
    });
  if (error instanceof NoWorkersError)
    return new BackendError(`No worker is available: ${error.message}.`, {
      status: 503,
      type: 'service_unavailable',
      code: 'no_workers',
    });
  if (error instanceof RoutingError)
    return new BackendError(error.message, {
      status: error.statusCode,
      code: error.code.toLowerCase(),
    });
  if (error instanceof WorkerLostError)
    return new BackendError(`The worker serving this request was lost: ${error.message}.`, {
      status: 503,
      type: 'service_unavailable',
      code: 'worker_lost',
    });
  if (error instanceof ClusterError)
    return new BackendError(error.message, {
      status: error.statusCode,
      code: error.statusCode < 500 ? 'invalid_request' : 'worker_error',
    });
  return error;
}

export interface ClusterRegistryOptions extends Omit<ClusterBackendOptions, 'created'> {}

/**
 * The models discovery sees: `list()` names those with at least one live worker; `get()` also
 * answers for a model whose workers all left (its requests wait for one to come back, up to the
 * router's waitForWorkersMs, then fail with 503), so a rolling restart does not turn into 404s.
 */
export class ClusterModelRegistry implements ModelRegistry {
  private readonly backends = new WeakMap<ModelRouter, ClusterModelBackend>();
  private readonly firstSeen = new Map<string, number>();

  constructor(
    readonly watcher: ModelWatcher,
    private readonly options: ClusterRegistryOptions = {},
  ) {}

  get(model: string): ClusterModelBackend | undefined {
    const router = this.watcher.routerFor(model);
    if (router === undefined) return undefined;
    let backend = this.backends.get(router);
    if (backend === undefined) {
      backend = new ClusterModelBackend(router, { ...this.options, created: this.since(model) });
      this.backends.set(router, backend);
    }
    return backend;
  }

  list(): readonly ModelInfo[] {
    return this.watcher.models().map((id) => ({ id, created: this.since(id), ownedBy: 'kvgate' }));
  }

  private since(model: string): number {
    let created = this.firstSeen.get(model);
    if (created === undefined) {
      created = Math.floor(Date.now() / 1000);
      this.firstSeen.set(model, created);
    }
    return created;
  }
}
