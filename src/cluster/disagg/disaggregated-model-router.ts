/**
 * Disaggregated prefill/decode for one model (DESIGN §8, Dynamo's PrefillRouter): the same
 * `generate` / `decide` surface as ModelRouter, over two pools.
 *
 * 1. The prefill router (component `prefill`; KV-aware, DP-aware, no active-block tracking) picks
 *    (prefill worker, prefill dp_rank), or a PrefillSelector does (a standalone router service).
 * 2. The prefill request (`max_tokens` 1, `dp_rank` = that rank) runs on exactly that rank; its
 *    first chunk opens the bootstrap room, and the bootstrap info becomes: host/port from the
 *    prefill worker's card, the room, the prefill worker id and the prefill rank.
 * 3. The decode router (component `backend`, overlap weight 0, no KV-reuse assumption) picks
 *    (decode worker, decode rank) by load; the decode request carries the bootstrap info and its
 *    engine pulls the KV from that prefill worker **and rank**.
 * 4. Chunks report both sides: `workerId`/`dpRank` (decode) and `prefillWorkerId`/`prefillDpRank`.
 *
 * Without prefill workers, requests run aggregated (or fail with DISAGG_NO_PREFILL_WORKER when
 * disaggregation is enforced). Conditional disaggregation runs a request aggregated when its
 * uncached prompt is short or every prefill rank is busy, if an aggregated worker can take it. A
 * failed prefill falls back to an aggregated run, or to another prefill worker, or fails clearly.
 */

import type { WorkerId } from '../../kv/events.ts';
import type { BootstrapInfo } from '../../protocol/generate.ts';
import { GENERATE_ENDPOINT } from '../../protocol/wire.ts';
import type { RouterOverrides } from '../../routing/config.ts';
import type { RoutingDecision } from '../../routing/policy.ts';
import { errorMessage } from '../../runtime/errors.ts';
import { endpointId, type Runtime } from '../../runtime/types.ts';
import type { Cancellation } from '../../util/cancel.ts';
import { log } from '../../util/log.ts';
import { WorkerRequestError } from '../errors.ts';
import type {
  BusyThresholds,
  ModelInstance,
  ModelRankLoad,
  ModelRouter,
  RequestRouting,
  RoutedChunk,
  RoutedRequest,
} from '../model-router.ts';
import { canPrefillLocally, roleCanServe, routingFor } from './decode-pool.ts';
import { DisaggError } from './errors.ts';
import { type PrefillHandoff, type PrefillTarget, startPrefill } from './prefill-handoff.ts';
import { effectiveRank, type PrefillSelector, type WorkerSelection } from './selection.ts';

/** Dynamo's decode-stage override: no overlap scoring, no KV-reuse assumption. */
export const DECODE_OVERRIDES: RouterOverrides = { overlapScoreWeight: 0, assumeKvReuse: false };

export interface DisaggRequest extends RoutedRequest {
  /** Where the prefill should (or must) run: nvext.prefill_worker_id and prefill_dp_rank. */
  readonly prefillRouting?: RequestRouting;
}

/** A decode-side chunk, plus the prefill side when the request was disaggregated. */
export interface DisaggChunk extends RoutedChunk {
  readonly disaggregated: boolean;
  readonly prefillWorkerId?: WorkerId;
  readonly prefillDpRank?: number;
}

export interface DisaggDecision extends RoutingDecision {
  /** Set when the request would be disaggregated; the outer choice is then the decode side. */
  readonly prefill?: RoutingDecision;
}

export type AggregatedReason = 'no_prefill_workers' | 'short_prompt' | 'prefill_busy' | 'prefill_failed';

/** What happened to a request, for metrics (DisaggMetrics) and logs. */
export type DisaggOutcome =
  | {
      readonly kind: 'disaggregated';
      readonly model: string;
      readonly prefill: { readonly workerId: WorkerId; readonly dpRank: number };
      readonly decode: { readonly workerId: WorkerId; readonly dpRank: number };
    }
  | {
      readonly kind: 'aggregated';
      readonly model: string;
      readonly reason: AggregatedReason;
      readonly decode: { readonly workerId: WorkerId; readonly dpRank: number };
    }
  | { readonly kind: 'prefill_failed'; readonly model: string; readonly prefillWorkerId: WorkerId };

export interface DisaggregationOptions {
  /** Called once a request's placement is known (first chunk), and on every prefill failure. */
  readonly onOutcome?: (outcome: DisaggOutcome) => void;
  /** Never run a request aggregated: no prefill worker or a failed prefill is an error. */
  readonly enforceDisagg?: boolean;
  /**
   * Conditional disaggregation: run aggregated when the prompt tokens not cached on the chosen
   * prefill rank are fewer than this (0 = off). Needs an aggregated worker in the decode pool.
   */
  readonly minUncachedTokens?: number;
  /** Conditional disaggregation: run aggregated when every prefill rank is over these. */
  readonly prefillBusyThresholds?: BusyThresholds;
  /** Prefill attempts per request on distinct prefill workers (default 2). */
  readonly maxPrefillAttempts?: number;
}

export interface DisaggregatedModelRouterOptions extends DisaggregationOptions {
  readonly runtime: Runtime;
  /** The model's `backend` component: decode workers (and aggregated ones). */
  readonly decode: ModelRouter;
  /** The model's `prefill` component; a getter when it appears later (a ModelWatcher makes it). */
  readonly prefill: ModelRouter | (() => ModelRouter | undefined);
  /** Chooses the prefill (worker, rank) instead of the prefill router (e.g. a RemoteRouterClient). */
  readonly prefillSelector?: PrefillSelector;
}

export interface DisaggStats {
  readonly requests: number;
  readonly disaggregated: number;
  readonly aggregated: Readonly<Record<AggregatedReason, number>>;
  /** Prefills whose bootstrap room opened (the decode was dispatched). */
  readonly handoffs: number;
  readonly prefillFailures: number;
  readonly prefillRetries: number;
  /** Requests continued after their decode worker was lost mid-stream. */
  readonly decodeContinuations: number;
}

type Plan =
  | { readonly kind: 'aggregated'; readonly reason: AggregatedReason }
  | { readonly kind: 'disaggregated'; readonly target: PrefillTarget; readonly pinned: boolean };

export class DisaggregatedModelRouter {
  readonly model: string;
  readonly decode: ModelRouter;
  readonly enforceDisagg: boolean;
  readonly minUncachedTokens: number;
  readonly maxPrefillAttempts: number;

  private readonly runtime: Runtime;
  private readonly prefillSource: ModelRouter | (() => ModelRouter | undefined);
  private readonly selector: PrefillSelector | undefined;
  private readonly busyThresholds: BusyThresholds | undefined;
  private readonly onOutcome: ((outcome: DisaggOutcome) => void) | undefined;
  private counts = {
    requests: 0,
    disaggregated: 0,
    handoffs: 0,
    prefillFailures: 0,
    prefillRetries: 0,
    decodeContinuations: 0,
  };
  private readonly aggregatedCounts: Record<AggregatedReason, number> = {
    no_prefill_workers: 0,
    short_prompt: 0,
    prefill_busy: 0,
    prefill_failed: 0,
  };

  constructor(options: DisaggregatedModelRouterOptions) {
    this.runtime = options.runtime;
    this.decode = options.decode;
    this.model = options.decode.model;
    this.prefillSource = options.prefill;
    this.selector = options.prefillSelector;
    this.enforceDisagg = options.enforceDisagg ?? false;
    this.minUncachedTokens = options.minUncachedTokens ?? 0;
    this.maxPrefillAttempts = options.maxPrefillAttempts ?? 2;
    this.busyThresholds = options.prefillBusyThresholds;
    this.onOutcome = options.onOutcome;
    if (!Number.isInteger(this.minUncachedTokens) || this.minUncachedTokens < 0)
      throw new TypeError('minUncachedTokens must be an integer >= 0');
    if (!Number.isInteger(this.maxPrefillAttempts) || this.maxPrefillAttempts < 1)
      throw new TypeError('maxPrefillAttempts must be an integer >= 1');
  }

  /** The prefill router, when one exists for the model. */
  get prefill(): ModelRouter | undefined {
    return typeof this.prefillSource === 'function' ? this.prefillSource() : this.prefillSource;
  }

  /** Decode-pool and prefill-pool instances. */
  instances(): ModelInstance[] {
    return [...this.decode.instances(), ...(this.prefill?.instances() ?? [])];
  }

  /** Tracked loads of both pools. */
  loads(): ModelRankLoad[] {
    return [...this.decode.loads(), ...(this.prefill?.loads() ?? [])];
  }

  /** Busy when the decode pool is (prefill load only decides whether to disaggregate). */
  isBusy(thresholds: BusyThresholds): boolean {
    return this.decode.isBusy(thresholds);
  }

  waitForInstances(timeoutMs?: number, signal?: Cancellation): Promise<void> {
    return this.decode.waitForInstances(timeoutMs, signal);
  }

  stats(): DisaggStats {
    return { ...this.counts, aggregated: { ...this.aggregatedCounts } };
  }

  /**
   * Where the request would run now, both sides (no state changes). Uses the embedded prefill
   * router even when a remote selector is configured for generate.
   */
  decide(
    tokens: readonly number[],
    routing: RequestRouting = {},
    prefillRouting: RequestRouting = {},
  ): DisaggDecision {
    let chosen: RoutingDecision | undefined;
    const plan = this.plan(tokens, routing, prefillRouting, undefined, new Set(), (router) => {
      chosen = router.decide(tokens, prefillRouting);
      return chosen;
    });
    if (plan instanceof Promise)
      throw new Error('unreachable: a synchronous selection planned asynchronously');
    if (plan.kind === 'aggregated')
      return this.decode.decide(tokens, routingFor(this.decode, tokens, routing, 'local-prefill'));
    const decode = this.decode.decide(tokens, this.decodeRouting(tokens, routing));
    const prefill: RoutingDecision = {
      workerId: plan.target.workerId,
      dpRank: plan.target.dpRank ?? chosen!.dpRank,
      overlapBlocks: chosen?.workerId === plan.target.workerId ? chosen.overlapBlocks : 0,
    };
    return { ...decode, prefill };
  }

  /**
   * Routes and streams one request, disaggregated when a prefill worker serves the model. The
   * decode side's (worker, rank) is on every chunk; the prefill side's on every disaggregated one.
   */
  async *generate(request: DisaggRequest, signal?: Cancellation): AsyncGenerator<DisaggChunk> {
    this.counts.requests++;
    await this.decode.waitForInstances(undefined, signal);
    const prompt = request.tokenIds;
    const maxTokens = request.sampling.maxTokens;
    const generated: number[] = [];
    let last: DisaggChunk | undefined;
    for (let segment = 0; ; segment++) {
      // After a lost decode worker the request continues from prompt + output so far (re-prefilled,
      // as a migrated aggregated request is), under its own id.
      const current: DisaggRequest =
        segment === 0
          ? request
          : {
              ...request,
              requestId: `${request.requestId}:cont${segment}`,
              tokenIds: [...prompt, ...generated],
              sampling: { ...request.sampling, maxTokens: maxTokens - generated.length },
            };
      try {
        for await (const chunk of this.runOnce(current, signal)) {
          for (const token of chunk.tokenIds) generated.push(token);
          last = chunk;
          yield segment === 0 || chunk.usage === undefined
            ? chunk
            : {
                ...chunk,
                usage: {
                  promptTokens: prompt.length,
                  completionTokens: generated.length,
                  cachedTokens: Math.min(chunk.usage.cachedTokens, prompt.length),
                },
              };
        }
        return;
      } catch (error) {
        if (!(error instanceof DecodeLost)) throw error;
        if (segment >= MAX_DECODE_CONTINUATIONS) throw error.cause;
        this.counts.decodeContinuations++;
        log.warn(
          {
            model: this.model,
            requestId: request.requestId,
            generated: generated.length,
            err: errorMessage(error.cause),
          },
          'disagg: decode worker lost mid-stream; continuing from the output so far',
        );
        if (generated.length >= maxTokens && last !== undefined) {
          yield {
            ...last,
            tokenIds: [],
            finishReason: 'length',
            usage: { promptTokens: prompt.length, completionTokens: generated.length, cachedTokens: 0 },
          };
          return;
        }
      }
    }
  }

  /** One request (or continuation): planned, disaggregated with its fallbacks, or aggregated. */
  private async *runOnce(
    request: DisaggRequest,
    signal: Cancellation | undefined,
  ): AsyncGenerator<DisaggChunk> {
    const tokens = request.tokenIds;
    const prefillRouting = request.prefillRouting ?? {};
    const avoid = new Set<WorkerId>();
    for (let attempt = 0; ; attempt++) {
      const requestRank = prefillRouting.dpRank ?? request.dpRank;
      const plan = await this.plan(
        tokens,
        request.routing ?? {},
        prefillRouting,
        requestRank,
        avoid,
        (router) => this.select(router, tokens, prefillRouting, signal),
      );
      if (plan.kind === 'aggregated') {
        this.aggregatedCounts[plan.reason]++;
        yield* this.aggregated(request, plan.reason, signal);
        return;
      }
      const { target } = plan;
      let failure: DisaggError;
      try {
        // A retry gets its own id: the engines may not have seen the failed attempt's cancel yet.
        const attemptRequest =
          attempt === 0 ? request : { ...request, requestId: `${request.requestId}:retry${attempt}` };
        yield* this.disaggregated(attemptRequest, target, signal);
        return;
      } catch (error) {
        if (!(error instanceof PrefillFailure)) throw error;
        failure = error.error;
      }
      this.counts.prefillFailures++;
      this.emit({ kind: 'prefill_failed', model: this.model, prefillWorkerId: target.workerId });
      avoid.add(target.workerId);
      log.warn(
        {
          model: this.model,
          requestId: request.requestId,
          prefillWorkerId: target.workerId.toString(16),
          prefillDpRank: target.dpRank,
          err: failure.message,
        },
        'disagg: prefill failed',
      );
      if (!this.enforceDisagg && canPrefillLocally(this.decode)) {
        this.aggregatedCounts.prefill_failed++;
        yield* this.aggregated(
          { ...request, requestId: `${request.requestId}:agg` },
          'prefill_failed',
          signal,
        );
        return;
      }
      const others = (this.prefill?.instances() ?? []).filter((i) => !avoid.has(i.workerId));
      if (plan.pinned || attempt + 1 >= this.maxPrefillAttempts || others.length === 0)
        throw new DisaggError(
          'DISAGG_PREFILL_FAILED',
          `${failure.message}; ${
            this.enforceDisagg
              ? 'disaggregation is enforced'
              : `no worker of ${this.model} can prefill locally`
          } and ${plan.pinned ? 'the prefill worker was pinned' : 'no other prefill worker is left to retry on'}`,
          503,
          { cause: failure },
        );
      this.counts.prefillRetries++;
    }
  }

  // ---- planning --------------------------------------------------------------------------------

  /**
   * Aggregated or disaggregated, and where the prefill runs. Synchronous with a synchronous
   * selector (decide), so the two entry points share one rule set.
   */
  private plan(
    tokens: readonly number[],
    decodeRouting: RequestRouting,
    prefillRouting: RequestRouting,
    requestRank: number | undefined,
    avoid: ReadonlySet<WorkerId>,
    select: (router: ModelRouter) => WorkerSelection | Promise<WorkerSelection>,
  ): Plan | Promise<Plan> {
    const prefill = this.prefill;
    const pinned = prefillRouting.workerId !== undefined;
    const live = (prefill?.instances() ?? []).filter((i) => !avoid.has(i.workerId));
    if (prefill === undefined || live.length === 0) {
      if (pinned)
        throw new DisaggError(
          'DISAGG_NO_PREFILL_WORKER',
          `nvext.prefill_worker_id ${prefillRouting.workerId} names no prefill worker of ${this.model}`,
          404,
        );
      if (this.enforceDisagg)
        throw new DisaggError(
          'DISAGG_NO_PREFILL_WORKER',
          `disaggregation is enforced and no prefill worker serves ${this.model}`,
          503,
        );
      return { kind: 'aggregated', reason: 'no_prefill_workers' };
    }
    if (pinned && !live.some((i) => i.workerId === prefillRouting.workerId)) {
      const decodeWorker = this.decode.instances().some((i) => i.workerId === prefillRouting.workerId);
      throw new DisaggError(
        decodeWorker ? 'DISAGG_WRONG_ROLE' : 'DISAGG_NO_PREFILL_WORKER',
        decodeWorker
          ? `nvext.prefill_worker_id ${prefillRouting.workerId} is a decode worker of ${this.model}, not a prefill worker`
          : `nvext.prefill_worker_id ${prefillRouting.workerId} names no prefill worker of ${this.model}`,
        decodeWorker ? 400 : 404,
      );
    }
    // A pinned decode-only worker cannot prefill: such a request is never run aggregated by choice.
    const decodePin = decodeRouting.workerId;
    const pinnedRole = this.decode.instances().find((i) => i.workerId === decodePin)?.card.role;
    const conditional =
      !pinned &&
      !this.enforceDisagg &&
      canPrefillLocally(this.decode) &&
      (decodePin === undefined || pinnedRole === undefined || roleCanServe(pinnedRole, 'local-prefill'));
    if (conditional && this.busyThresholds !== undefined && prefill.isBusy(this.busyThresholds))
      return { kind: 'aggregated', reason: 'prefill_busy' };
    const selection = select(prefill);
    const finish = (chosen: WorkerSelection): Plan => {
      const instance = live.find((i) => i.workerId === chosen.workerId);
      if (instance === undefined) {
        const known = prefill.instances().find((i) => i.workerId === chosen.workerId);
        if (known === undefined && !avoid.has(chosen.workerId))
          throw new DisaggError(
            pinned ? 'DISAGG_NO_PREFILL_WORKER' : 'DISAGG_WRONG_ROLE',
            `worker ${chosen.workerId} is not a prefill worker of ${this.model}`,
            pinned ? 404 : 502,
          );
        // The selector chose a worker this request already failed on: take the least loaded other.
        return this.finishPlan(this.leastLoaded(prefill, live), pinned, requestRank);
      }
      if (conditional && this.minUncachedTokens > 0) {
        const uncached = tokens.length - chosen.overlapBlocks * prefill.blockSize;
        if (uncached < this.minUncachedTokens) return { kind: 'aggregated', reason: 'short_prompt' };
      }
      return this.finishPlan(chosen, pinned, requestRank, instance);
    };
    return selection instanceof Promise ? selection.then(finish) : finish(selection);
  }

  private finishPlan(
    chosen: WorkerSelection,
    pinned: boolean,
    requestRank: number | undefined,
    instance?: ModelInstance,
  ): Plan {
    const card = (instance ?? this.prefill!.instances().find((i) => i.workerId === chosen.workerId))!.card;
    const dpRank = effectiveRank(chosen.dpRank, requestRank);
    if (dpRank !== undefined && !(Number.isInteger(dpRank) && dpRank >= 0 && dpRank < card.dataParallelSize))
      throw new DisaggError(
        'DISAGG_RANK_OUT_OF_RANGE',
        `prefill rank ${dpRank} is outside [0, ${card.dataParallelSize}) of prefill worker ${chosen.workerId}`,
        400,
      );
    return { kind: 'disaggregated', pinned, target: { workerId: chosen.workerId, dpRank, card } };
  }

  private leastLoaded(prefill: ModelRouter, live: readonly ModelInstance[]): WorkerSelection {
    const busy = new Map<WorkerId, number>();
    for (const i of live) busy.set(i.workerId, 0);
    for (const load of prefill.loads())
      if (busy.has(load.workerId))
        busy.set(load.workerId, busy.get(load.workerId)! + load.activePrefillTokens + load.activeRequests);
    let best = live[0].workerId;
    for (const [workerId, load] of busy) if (load < busy.get(best)!) best = workerId;
    return { workerId: best, overlapBlocks: 0 };
  }

  private select(
    router: ModelRouter,
    tokens: readonly number[],
    routing: RequestRouting,
    signal: Cancellation | undefined,
  ): WorkerSelection | Promise<WorkerSelection> {
    if (this.selector !== undefined && routing.workerId === undefined)
      return this.selector.select(tokens, routing, signal);
    return router.decide(tokens, routing);
  }

  private decodeRouting(tokens: readonly number[], routing: RequestRouting): RequestRouting {
    const withOverrides: RequestRouting = {
      ...routing,
      overrides: { ...routing.overrides, ...DECODE_OVERRIDES },
    };
    return routingFor(this.decode, tokens, withOverrides, 'pull');
  }

  // ---- running ---------------------------------------------------------------------------------

  private async *aggregated(
    request: DisaggRequest,
    reason: AggregatedReason,
    signal: Cancellation | undefined,
  ): AsyncGenerator<DisaggChunk> {
    const routing = routingFor(this.decode, request.tokenIds, request.routing ?? {}, 'local-prefill');
    const { prefillRouting: _p, bootstrap: _b, ...rest } = request;
    let first = true;
    for await (const chunk of this.decode.generate({ ...rest, routing }, signal)) {
      if (first) {
        first = false;
        this.emit({
          kind: 'aggregated',
          model: this.model,
          reason,
          decode: { workerId: chunk.workerId, dpRank: chunk.dpRank },
        });
      }
      yield { ...chunk, disaggregated: false };
    }
  }

  private emit(outcome: DisaggOutcome): void {
    if (this.onOutcome === undefined) return;
    try {
      this.onOutcome(outcome);
    } catch (error) {
      log.error({ err: error }, 'disagg: outcome listener threw');
    }
  }

  /**
   * One disaggregated attempt. A prefill that fails before the decode produced anything throws a
   * PrefillFailure (the caller falls back); any other failure is the request's.
   */
  private async *disaggregated(
    request: DisaggRequest,
    target: PrefillTarget,
    signal: Cancellation | undefined,
  ): AsyncGenerator<DisaggChunk> {
    const prefill = this.prefill!;
    const tokens = request.tokenIds;
    const endpoint = endpointId(prefill.namespace, prefill.component, GENERATE_ENDPOINT);
    const trackId = request.requestId;
    let tracked = false;
    const track = (dpRank: number) => {
      try {
        prefill.policy.route(trackId, tokens, { pinned: { workerId: target.workerId, dpRank } });
        tracked = true;
      } catch (error) {
        log.debug({ err: errorMessage(error) }, 'disagg: prefill load not tracked');
      }
    };
    const routing = this.decodeRouting(tokens, request.routing ?? {});
    if (target.dpRank !== undefined) track(target.dpRank);
    let handoff: PrefillHandoff | undefined;
    try {
      try {
        handoff = await startPrefill({
          runtime: this.runtime,
          endpoint,
          target,
          request: { requestId: request.requestId, tokenIds: tokens, sampling: request.sampling },
          ...(signal !== undefined ? { signal } : {}),
        });
      } catch (error) {
        if (signal?.aborted) throw error;
        if (error instanceof DisaggError && error.code === 'DISAGG_RANK_MISMATCH') throw error;
        throw new PrefillFailure(asDisaggError(error, target));
      }
      this.counts.handoffs++;
      const bootstrap: BootstrapInfo = handoff.bootstrap;
      if (!tracked) track(bootstrap.prefillDpRank);
      void handoff.finished.then(
        () => prefill.policy.markPrefillCompleted(trackId),
        () => undefined,
      );

      const decodeAbort = new AbortController();
      const onAbort = () => decodeAbort.abort(signal?.reason);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      let produced = false;
      let prefillError: DisaggError | undefined;
      handoff.finished.catch((error: unknown) => {
        prefillError = asDisaggError(error, target);
        if (!produced) decodeAbort.abort(prefillError);
      });
      const { prefillRouting: _p, ...rest } = request;
      try {
        for await (const chunk of this.decode.generate({ ...rest, routing, bootstrap }, decodeAbort.signal)) {
          if (!produced && (chunk.tokenIds.length > 0 || chunk.finishReason !== undefined)) {
            produced = true;
            this.emit({
              kind: 'disaggregated',
              model: this.model,
              prefill: { workerId: bootstrap.prefillWorkerId, dpRank: bootstrap.prefillDpRank },
              decode: { workerId: chunk.workerId, dpRank: chunk.dpRank },
            });
          }
          yield {
            ...chunk,
            disaggregated: true,
            prefillWorkerId: bootstrap.prefillWorkerId,
            prefillDpRank: bootstrap.prefillDpRank,
          };
        }
        this.counts.disaggregated++;
      } catch (error) {
        if (signal?.aborted) throw error;
        // The decode worker died and its replacement found the room already claimed.
        if (produced) throw isBootstrapFailure(error) ? new DecodeLost(error) : error;
        // The decode may notice a lost prefill (its pull fails) before the prefill stream does.
        if (prefillError === undefined) await settledWithin(handoff.finished, PREFILL_SETTLE_MS);
        if (prefillError !== undefined) throw new PrefillFailure(prefillError);
        if (isBootstrapFailure(error))
          throw new PrefillFailure(
            new DisaggError(
              'DISAGG_PREFILL_FAILED',
              `the decode could not pull room ${bootstrap.room} from prefill worker ${bootstrap.prefillWorkerId.toString(16)} rank ${bootstrap.prefillDpRank}: ${errorMessage(error)}`,
              503,
              { cause: error },
            ),
          );
        throw error;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    } finally {
      handoff?.cancel();
      if (tracked) prefill.policy.free(trackId);
    }
  }
}

/** How long a failed decode waits to learn whether its prefill failed too. */
const PREFILL_SETTLE_MS = 1_000;

function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    promise.then(done, done);
  });
}

/** Continuations of one request after lost decode workers. */
const MAX_DECODE_CONTINUATIONS = 2;

/** The decode side was lost after it produced output (the caller continues the request). */
class DecodeLost extends Error {
  constructor(override readonly cause: unknown) {
    super(errorMessage(cause));
    this.name = 'DecodeLost';
  }
}

/** Thrown inside one attempt: the prefill side failed before the decode produced anything. */
class PrefillFailure extends Error {
  constructor(readonly error: DisaggError) {
    super(error.message);
    this.name = 'PrefillFailure';
  }
}

function asDisaggError(error: unknown, target: PrefillTarget): DisaggError {
  if (error instanceof DisaggError) return error;
  return new DisaggError(
    'DISAGG_PREFILL_FAILED',
    `prefill on worker ${target.workerId.toString(16)} rank ${target.dpRank ?? '(engine-chosen)'} failed: ${errorMessage(error)}`,
    503,
    { cause: error },
  );
}

/**
 * A decode that failed because its KV could not be pulled: the room is gone or the prefill worker
 * is. A wrong rank, a prompt mismatch or a doubly claimed room are bugs, reported as they are.
 */
const LOST_KV_CODES: ReadonlySet<string> = new Set([
  'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
  'ENGINE_BOOTSTRAP_UNKNOWN_WORKER',
  'ENGINE_BOOTSTRAP_EXPIRED',
]);

function isBootstrapFailure(error: unknown): boolean {
  return error instanceof WorkerRequestError && LOST_KV_CODES.has(error.workerCode ?? '');
}
