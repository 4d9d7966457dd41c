/**
 * What the HTTP frontend needs from the serving machinery behind it. One `ModelBackend` per served
 * model; the router, the prefill router and the workers sit behind it. The frontend tokenizes, so
 * everything here is in token ids. A `dpRank` of 0 is a real rank: test with `=== undefined`.
 */
import type { BusyThresholds as RouterBusyThresholds } from '../cluster/model-router.ts';
import type { WorkerId } from '../kv/events.ts';
import type { GenerateChunk, GenerateRequest, WorkerRole } from '../protocol/generate.ts';
import type { Tokenizer } from '../tokens/tokenizer.ts';
import type { Cancellation } from '../util/cancel.ts';
import type { ChatTemplate } from './chat-template.ts';
import { ApiError } from './errors.ts';

/** Routing hints from the request (`nvext` and top-level `data_parallel_rank`). */
export interface RoutingHints {
  /** Run on exactly this (aggregated) worker: nvext.backend_instance_id. */
  readonly backendInstanceId?: WorkerId;
  /** Disaggregated: prefill on this worker (nvext.prefill_worker_id). */
  readonly prefillWorkerId?: WorkerId;
  /** Disaggregated: decode on this worker (nvext.decode_worker_id). */
  readonly decodeWorkerId?: WorkerId;
  /** Rank of the aggregated or decode worker (nvext.dp_rank or data_parallel_rank). */
  readonly dpRank?: number;
  /** Rank of the prefill worker (nvext.prefill_dp_rank). */
  readonly prefillDpRank?: number;
}

/** Per-request router knobs (nvext.router_config_override). */
export interface RouterOverrides {
  readonly overlapScoreWeight?: number;
  readonly routerTemperature?: number;
}

/** Caller hints about the request (nvext.agent_hints). */
export interface AgentHints {
  /** Expected output length in tokens. */
  readonly osl?: number;
  readonly latencySensitivity?: number;
  readonly priority?: number;
}

/**
 * A generate request as the frontend hands it to a model backend: the token-level request plus the
 * routing hints. The backend resolves the hints into a (worker, rank) and sets
 * `GenerateRequest.dpRank` / `bootstrap` itself when it calls the worker.
 */
export interface BackendRequest extends Omit<GenerateRequest, 'dpRank' | 'bootstrap'> {
  readonly model: string;
  readonly routing: RoutingHints;
  readonly routerOverrides?: RouterOverrides;
  readonly agentHints?: AgentHints;
}

/**
 * A chunk of output plus the routing decision actually used (set at least on the first chunk).
 * `workerId`/`dpRank` name the worker that decodes (aggregated or decode worker); for disaggregated
 * requests the prefill and decode sides are reported separately too.
 */
export interface BackendChunk extends GenerateChunk {
  readonly workerId?: WorkerId;
  readonly prefillWorkerId?: WorkerId;
  readonly prefillDpRank?: number;
  readonly decodeWorkerId?: WorkerId;
  readonly decodeDpRank?: number;
  /** Time the router spent choosing, in seconds (first chunk). */
  readonly routingSeconds?: number;
}

export interface RankChoice {
  readonly workerId: WorkerId;
  readonly dpRank: number;
  /** Leading prompt blocks already cached on that (worker, rank). */
  readonly overlapBlocks: number;
}

/** The answer to `nvext.annotations: ["query_instance_id"]`: where the request would run. */
export interface RoutingDecision extends RankChoice {
  /** Set when the request would be disaggregated; the outer choice is then the decode side. */
  readonly prefill?: RankChoice;
}

export interface BackendInstance {
  readonly workerId: WorkerId;
  readonly role: WorkerRole;
  readonly dataParallelSize: number;
}

export interface BackendHealth {
  /** True when the model can serve requests now. */
  readonly ready: boolean;
  readonly instances: readonly BackendInstance[];
}

/**
 * Admission thresholds (Dynamo's /busy_threshold): a (worker, rank) is busy when its active decode
 * blocks exceed `activeDecodeBlocksThreshold × total KV blocks`, or its active prefill tokens
 * exceed `activePrefillTokensThreshold` (absolute) or `activePrefillTokensThresholdFrac ×
 * max_num_batched_tokens`. null = that check is off. `busy()` is true when every rank is busy.
 * The router's type (`ModelRouter.isBusy`) with every field given.
 */
export type BusyThresholds = Required<RouterBusyThresholds>;

export interface BusyThresholdControl {
  get(): BusyThresholds;
  /** Applies the fields given (null turns a check off; absent keeps it) and returns the result. */
  set(update: Partial<BusyThresholds>): BusyThresholds;
}

export interface ModelBackend {
  readonly model: string;
  /** Unix seconds the model became available (for /v1/models). */
  readonly created?: number;
  readonly ownedBy?: string;
  /** Maximum prompt + completion tokens; absent = unbounded. */
  readonly contextLength?: number;
  /** Tokenizer for this model; absent = the server's default. */
  readonly tokenizer?: Tokenizer;
  /** Chat template for this model; absent = ChatML over the model's tokenizer. */
  readonly chatTemplate?: ChatTemplate;
  /**
   * Runs one generation. Must stop promptly (and release the request's resources) when `signal`
   * is cancelled (an AbortSignal fits; the frontend passes a cheaper CancelSource). May throw
   * `BackendError` before the first chunk (bad pinned worker or rank, no workers); errors after
   * the first chunk end the stream with an error event.
   */
  generate(request: BackendRequest, signal: Cancellation): AsyncIterable<BackendChunk>;
  /** Chooses where the request would run without running it (query_instance_id). */
  route?(request: BackendRequest, signal: Cancellation): Promise<RoutingDecision>;
  health(): BackendHealth;
  /** True when every (worker, rank) is over its busy thresholds: the frontend answers 503. */
  busy?(): boolean;
  /** Read and change the busy thresholds at run time (GET/POST /busy_threshold). */
  readonly busyThresholds?: BusyThresholdControl;
}

export interface ModelInfo {
  readonly id: string;
  readonly created: number;
  readonly ownedBy: string;
}

export interface ModelRegistry {
  get(model: string): ModelBackend | undefined;
  list(): readonly ModelInfo[];
}

/** A registry the owner adds and removes backends on (as discovery sees model cards come and go). */
export class MapModelRegistry implements ModelRegistry {
  private readonly backends = new Map<string, ModelBackend>();
  private readonly since = new Map<string, number>();

  constructor(backends: readonly ModelBackend[] = []) {
    for (const backend of backends) this.add(backend);
  }

  add(backend: ModelBackend): void {
    this.backends.set(backend.model, backend);
    if (!this.since.has(backend.model)) this.since.set(backend.model, Math.floor(Date.now() / 1000));
  }

  remove(model: string): boolean {
    this.since.delete(model);
    return this.backends.delete(model);
  }

  get(model: string): ModelBackend | undefined {
    return this.backends.get(model);
  }

  list(): readonly ModelInfo[] {
    return [...this.backends.values()].map((backend) => ({
      id: backend.model,
      created: backend.created ?? this.since.get(backend.model) ?? 0,
      ownedBy: backend.ownedBy ?? 'kvgate',
    }));
  }
}

/**
 * An error a backend raises on purpose, carrying the HTTP status and OpenAI error type the client
 * should see; e.g. a pinned rank outside the worker's range is a 400 `invalid_request_error`.
 * Any other error a backend throws is reported as a 500 `server_error`.
 */
export class BackendError extends ApiError {
  override readonly name = 'BackendError';
}
