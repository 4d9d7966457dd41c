/**
 * A frontend's handle on a standalone router service, used instead of an embedded router: finds
 * the service instances of a namespace in discovery, asks `best_worker_id` (round-robin over the
 * instances, moving on when one is gone) and streams routed `generate` calls. Answers from older
 * routers without a `dp_rank` come back with `dpRank` undefined, so the caller falls back to the
 * request's own rank (or lets the engine choose) instead of assuming rank 0.
 */

import type { PrefillSelector, WorkerSelection } from '../cluster/disagg/selection.ts';
import type { RequestRouting, RoutedChunk } from '../cluster/model-router.ts';
import type { WorkerId } from '../kv/events.ts';
import type { GenerateRequest } from '../protocol/generate.ts';
import { DEFAULT_NAMESPACE, generateChunkFromWire, generateRequestToWire } from '../protocol/wire.ts';
import { NoWorkersError } from '../routing/errors.ts';
import { decodeJson, encodeJson } from '../runtime/codec.ts';
import { isRuntimeError, RuntimeError } from '../runtime/errors.ts';
import { type DiscoveryWatch, type EndpointId, endpointId, type Runtime } from '../runtime/types.ts';
import type { Cancellation } from '../util/cancel.ts';
import { Wakeups } from '../util/wakeups.ts';
import {
  BEST_WORKER_ENDPOINT,
  type BestWorkerAnswer,
  bestWorkerAnswerFromWire,
  bestWorkerQueryToWire,
  ROUTER_COMPONENT,
  ROUTER_GENERATE_ENDPOINT,
  routingToWire,
} from './protocol.ts';

export interface RemoteRouterClientOptions {
  readonly runtime: Runtime;
  /** The namespace the router service serves (default `kvgate`). */
  readonly namespace?: string;
  /** Sent with every query (needed when the routed endpoint serves several models). */
  readonly model?: string;
  /** Deadline of one best_worker_id call (default 5 s). */
  readonly timeoutMs?: number;
  /** How long a call waits for a first router instance to appear (default 10 s). */
  readonly waitForRouterMs?: number;
}

export interface BestWorkerOptions {
  readonly dpRank?: number;
  readonly workerId?: WorkerId;
  readonly overrides?: RequestRouting['overrides'];
  readonly signal?: Cancellation;
}

export class RemoteRouterClient implements PrefillSelector {
  readonly namespace: string;
  private readonly runtime: Runtime;
  private readonly bestWorkerEndpoint: EndpointId;
  private readonly generateEndpoint: EndpointId;
  private readonly instances: WorkerId[] = [];
  private readonly wakeups = new Wakeups();
  private watch: Promise<DiscoveryWatch> | undefined;
  private next = 0;
  private closed = false;

  constructor(private readonly options: RemoteRouterClientOptions) {
    this.runtime = options.runtime;
    this.namespace = options.namespace ?? DEFAULT_NAMESPACE;
    this.bestWorkerEndpoint = endpointId(this.namespace, ROUTER_COMPONENT, BEST_WORKER_ENDPOINT);
    this.generateEndpoint = endpointId(this.namespace, ROUTER_COMPONENT, ROUTER_GENERATE_ENDPOINT);
  }

  /** The (worker, rank) the service would pick; `dpRank` is undefined in a legacy answer. */
  async bestWorker(tokens: readonly number[], options: BestWorkerOptions = {}): Promise<BestWorkerAnswer> {
    const payload = encodeJson(
      bestWorkerQueryToWire({
        tokenIds: tokens,
        ...(options.dpRank !== undefined ? { dpRank: options.dpRank } : {}),
        ...(options.workerId !== undefined ? { workerId: options.workerId } : {}),
        ...(options.overrides !== undefined ? { overrides: options.overrides } : {}),
        ...(this.options.model !== undefined ? { model: this.options.model } : {}),
      }),
    );
    const frame = await this.callOnce(this.bestWorkerEndpoint, payload, options.signal);
    const answer = bestWorkerAnswerFromWire(decodeJson(frame));
    if (!answer.ok)
      throw new RuntimeError(
        'RUNTIME_MALFORMED',
        `router service sent a malformed best_worker_id answer: ${answer.error}`,
      );
    return answer.value;
  }

  /** PrefillSelector: the service's choice for a prompt (pins and rank passed through). */
  select(
    tokens: readonly number[],
    routing: RequestRouting,
    signal?: Cancellation,
  ): Promise<WorkerSelection> {
    return this.bestWorker(tokens, {
      ...(routing.workerId !== undefined ? { workerId: routing.workerId } : {}),
      ...(routing.dpRank !== undefined ? { dpRank: routing.dpRank } : {}),
      ...(routing.overrides !== undefined ? { overrides: routing.overrides } : {}),
      ...(signal !== undefined ? { signal } : {}),
    });
  }

  /** Routes and streams a request through the service; every chunk names the worker and rank. */
  async *generate(
    request: GenerateRequest & { readonly routing?: RequestRouting },
    signal?: Cancellation,
  ): AsyncGenerator<RoutedChunk> {
    const { routing, ...plain } = request;
    const payload = encodeJson({
      ...generateRequestToWire(plain),
      ...(routing !== undefined ? { routing: routingToWire(routing) } : {}),
      ...(this.options.model !== undefined ? { model: this.options.model } : {}),
    });
    const instance = await this.pick(signal);
    for await (const frame of this.runtime.requests.call(
      this.generateEndpoint,
      instance,
      payload,
      signal ? { signal } : {},
    )) {
      const value = decodeJson(frame) as Record<string, unknown>;
      const chunk = generateChunkFromWire(value);
      const workerId = value?.worker_id;
      if (
        !chunk.ok ||
        chunk.value.dpRank === undefined ||
        (typeof workerId !== 'bigint' && typeof workerId !== 'number')
      )
        throw new RuntimeError('RUNTIME_MALFORMED', 'router service sent a malformed generate chunk');
      yield { ...chunk.value, workerId: BigInt(workerId), dpRank: chunk.value.dpRank };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    (await this.watch?.catch(() => undefined))?.close();
    this.wakeups.wakeAll();
  }

  private async callOnce(
    endpoint: EndpointId,
    payload: Uint8Array,
    signal?: Cancellation,
  ): Promise<Uint8Array> {
    const tried = new Set<WorkerId>();
    for (;;) {
      const instance = await this.pick(signal, tried);
      tried.add(instance);
      try {
        for await (const frame of this.runtime.requests.call(endpoint, instance, payload, {
          timeoutMs: this.options.timeoutMs ?? 5_000,
          ...(signal ? { signal } : {}),
        }))
          return frame;
        throw new RuntimeError('RUNTIME_STREAM_LOST', 'router service answered nothing');
      } catch (error) {
        const gone =
          isRuntimeError(error, 'RUNTIME_NO_RESPONDERS') || isRuntimeError(error, 'RUNTIME_STREAM_LOST');
        if (!gone || this.instances.every((i) => tried.has(i))) throw error;
      }
    }
  }

  /** The next service instance round-robin (skipping `tried`); waits for a first one. */
  private async pick(signal?: Cancellation, tried: ReadonlySet<WorkerId> = new Set()): Promise<WorkerId> {
    this.watch ??= this.runtime.discovery.watch(
      { namespace: this.namespace, component: ROUTER_COMPONENT, endpoint: BEST_WORKER_ENDPOINT },
      (event) => {
        const id = event.instance.instanceId;
        const at = this.instances.indexOf(id);
        if (event.type === 'removed') {
          if (at >= 0) this.instances.splice(at, 1);
        } else if (at < 0) {
          this.instances.push(id);
          this.wakeups.wakeAll();
        }
      },
    );
    await this.watch;
    const deadline = Date.now() + (this.options.waitForRouterMs ?? 10_000);
    while (this.instances.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0 || this.closed || signal?.aborted)
        throw new NoWorkersError(`no router service is registered in namespace ${this.namespace}`);
      await this.wakeups.next(left, signal);
    }
    for (let i = 0; i < this.instances.length; i++) {
      const candidate = this.instances[this.next++ % this.instances.length];
      if (!tried.has(candidate)) return candidate;
    }
    return this.instances[this.next++ % this.instances.length];
  }
}
