/**
 * The frontend's model backend over a DisaggregatedModelRouter, and a registry that serves every
 * model a ModelWatcher sees through one. nvext pins map to both sides: `backend_instance_id` /
 * `decode_worker_id` + `dp_rank` pin the decode (or aggregated) worker, `prefill_worker_id` +
 * `prefill_dp_rank` the prefill worker. Every response names the decode side and, when the request
 * was disaggregated, the prefill side.
 */

import type {
  BackendChunk,
  BackendHealth,
  BackendRequest,
  BusyThresholds,
  ModelBackend,
  ModelInfo,
  ModelRegistry,
  RoutingDecision,
} from '../../frontend/backend.ts';
import { BackendError } from '../../frontend/backend.ts';
import { BusyThresholdState, clusterApiError } from '../../frontend/cluster-backend.ts';
import { BACKEND_COMPONENT, PREFILL_COMPONENT } from '../../protocol/wire.ts';
import type { Runtime } from '../../runtime/types.ts';
import type { Cancellation } from '../../util/cancel.ts';
import { type ModelRouter, priorityJumpMs, type RequestRouting } from '../model-router.ts';
import type { ModelWatcher } from '../model-watcher.ts';
import {
  type DisaggChunk,
  type DisaggregatedModelRouter,
  type DisaggregationOptions,
  DisaggregatedModelRouter as Router,
} from './disaggregated-model-router.ts';
import { DisaggError } from './errors.ts';
import type { PrefillSelector } from './selection.ts';

export interface DisaggBackendOptions {
  readonly contextLength?: number;
  readonly busyThresholds?: Partial<BusyThresholds>;
  readonly created?: number;
}

export class DisaggregatedModelBackend implements ModelBackend {
  readonly model: string;
  readonly created?: number;
  readonly ownedBy = 'kvgate';
  readonly contextLength?: number;
  readonly busyThresholds: BusyThresholdState;

  constructor(
    readonly router: DisaggregatedModelRouter,
    options: DisaggBackendOptions = {},
  ) {
    this.model = router.model;
    this.created = options.created;
    this.contextLength = options.contextLength;
    this.busyThresholds = new BusyThresholdState(options.busyThresholds);
  }

  async *generate(request: BackendRequest, signal: Cancellation): AsyncIterable<BackendChunk> {
    let first = true;
    try {
      const { routing, prefillRouting } = requestRouting(request);
      const stream = this.router.generate(
        {
          requestId: request.requestId,
          tokenIds: request.tokenIds,
          sampling: request.sampling,
          routing,
          prefillRouting,
        },
        signal,
      );
      for await (const chunk of stream) {
        yield backendChunk(chunk, first);
        first = false;
      }
    } catch (error) {
      throw disaggApiError(error, signal);
    }
  }

  async route(request: BackendRequest, signal: Cancellation): Promise<RoutingDecision> {
    try {
      const { routing, prefillRouting } = requestRouting(request);
      await this.router.waitForInstances(undefined, signal);
      const decision = this.router.decide(request.tokenIds, routing, prefillRouting);
      return {
        workerId: decision.workerId,
        dpRank: decision.dpRank,
        overlapBlocks: decision.overlapBlocks,
        ...(decision.prefill !== undefined ? { prefill: decision.prefill } : {}),
      };
    } catch (error) {
      throw disaggApiError(error, signal);
    }
  }

  health(): BackendHealth {
    const instances = this.router.instances().map(({ workerId, card }) => ({
      workerId,
      role: card.role,
      dataParallelSize: card.dataParallelSize,
    }));
    return { ready: this.router.decode.instances().length > 0, instances };
  }

  busy(): boolean {
    return this.busyThresholds.isBusy(this.router);
  }
}

function requestRouting(request: BackendRequest): {
  routing: RequestRouting;
  prefillRouting: RequestRouting;
} {
  const { routing: hints, routerOverrides } = request;
  const backend = hints.backendInstanceId;
  const decode = hints.decodeWorkerId;
  if (backend !== undefined && decode !== undefined && backend !== decode)
    throw new BackendError(
      'nvext.backend_instance_id and nvext.decode_worker_id name different workers; give one of them.',
      { status: 400, param: 'nvext.decode_worker_id', code: 'invalid_value' },
    );
  const workerId = backend ?? decode;
  // Dynamo: with only the prefill worker pinned, nvext.dp_rank names that worker's rank.
  const rankIsPrefill =
    hints.prefillWorkerId !== undefined && hints.prefillDpRank === undefined && workerId === undefined;
  const decodeRank = rankIsPrefill ? undefined : hints.dpRank;
  const prefillRank = rankIsPrefill ? hints.dpRank : hints.prefillDpRank;
  const jumpMs = priorityJumpMs(request.agentHints?.latencySensitivity);
  const priority = jumpMs !== undefined ? { priorityJumpMs: jumpMs } : {};
  const routing: RequestRouting = {
    ...(workerId !== undefined ? { workerId } : {}),
    ...(decodeRank !== undefined ? { dpRank: decodeRank } : {}),
    ...(routerOverrides !== undefined ? { overrides: routerOverrides } : {}),
    ...priority,
  };
  const prefillRouting: RequestRouting = {
    ...(hints.prefillWorkerId !== undefined ? { workerId: hints.prefillWorkerId } : {}),
    ...(prefillRank !== undefined ? { dpRank: prefillRank } : {}),
    ...priority,
  };
  return { routing, prefillRouting };
}

/** The routing echo goes on the first chunk (the frontend reads it there only). */
function backendChunk(chunk: DisaggChunk, echo: boolean): BackendChunk {
  const { workerId, dpRank, disaggregated, prefillWorkerId, prefillDpRank, ...rest } = chunk;
  if (!echo) return rest;
  return {
    ...rest,
    workerId,
    dpRank,
    ...(disaggregated
      ? { decodeWorkerId: workerId, decodeDpRank: dpRank, prefillWorkerId, prefillDpRank }
      : {}),
  };
}

/** DisaggErrors become OpenAI-style errors with their status; the rest as the cluster backend maps them. */
export function disaggApiError(error: unknown, signal?: Cancellation): unknown {
  if (error instanceof DisaggError) {
    const param =
      error.code === 'DISAGG_RANK_OUT_OF_RANGE'
        ? 'nvext.prefill_dp_rank'
        : error.code === 'DISAGG_WRONG_ROLE' || error.statusCode === 404
          ? 'nvext.prefill_worker_id'
          : undefined;
    return new BackendError(error.message, {
      status: error.statusCode,
      ...(error.statusCode === 503 ? { type: 'service_unavailable' } : {}),
      ...(param !== undefined ? { param } : {}),
      code: error.code.toLowerCase(),
    });
  }
  return clusterApiError(error, signal);
}

export interface DisaggRegistryOptions extends DisaggregationOptions, Omit<DisaggBackendOptions, 'created'> {
  readonly runtime: Runtime;
  /** Chooses prefill workers for every model instead of the embedded prefill routers. */
  readonly prefillSelector?: PrefillSelector;
}

/**
 * The models a ModelWatcher sees, each served through a DisaggregatedModelRouter over its
 * `backend` router and (once one registers) its `prefill` router.
 */
export class DisaggregatedModelRegistry implements ModelRegistry {
  private readonly backends = new WeakMap<ModelRouter, DisaggregatedModelBackend>();
  private readonly firstSeen = new Map<string, number>();

  constructor(
    readonly watcher: ModelWatcher,
    private readonly options: DisaggRegistryOptions,
  ) {}

  get(model: string): DisaggregatedModelBackend | undefined {
    const decode = this.watcher.routerFor(model, BACKEND_COMPONENT);
    if (decode === undefined) return undefined;
    let backend = this.backends.get(decode);
    if (backend === undefined) {
      const { runtime, prefillSelector, contextLength, busyThresholds, ...disagg } = this.options;
      const router = new Router({
        ...disagg,
        runtime,
        decode,
        prefill: () => this.watcher.routerFor(model, PREFILL_COMPONENT),
        ...(prefillSelector !== undefined ? { prefillSelector } : {}),
      });
      backend = new DisaggregatedModelBackend(router, {
        created: this.since(model),
        ...(contextLength !== undefined ? { contextLength } : {}),
        ...(busyThresholds !== undefined ? { busyThresholds } : {}),
      });
      this.backends.set(decode, backend);
    }
    return backend;
  }

  list(): readonly ModelInfo[] {
    return this.watcher
      .models()
      .filter((id) => this.watcher.routerFor(id, BACKEND_COMPONENT) !== undefined)
      .map((id) => ({ id, created: this.since(id), ownedBy: 'kvgate' }));
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
