/**
 * The standalone router service (`kvgate router`): a KV-aware, DP-aware router for the workers of
 * one `ns.component.generate` endpoint, shared by frontends in other processes. It keeps one
 * ModelRouter per model registered on that endpoint (discovery, KV events with gap recovery,
 * loads) and serves `{ns}.router.best_worker_id` and `{ns}.router.generate` on the request plane,
 * registered in discovery so clients find it. The block size is given (there is no model card to
 * take it from); workers with another block size are skipped.
 */

import { ModelRouter, type ModelRouterOptions } from '../cluster/model-router.ts';
import type { WorkerId } from '../kv/events.ts';
import {
  GENERATE_ENDPOINT,
  generateChunkToWire,
  WORKER_BAD_REQUEST,
  workerErrorText,
} from '../protocol/wire.ts';
import type { KvRouterConfigInput } from '../routing/config.ts';
import { NoWorkersError, RoutingError } from '../routing/errors.ts';
import { decodeJson, encodeJson } from '../runtime/codec.ts';
import { errorMessage } from '../runtime/errors.ts';
import {
  type DiscoveryWatch,
  type EndpointId,
  endpointId,
  formatEndpointId,
  type HandlerContext,
  type Registration,
  type Runtime,
  type ServeHandle,
} from '../runtime/types.ts';
import { log } from '../util/log.ts';
import { Wakeups } from '../util/wakeups.ts';
import {
  BEST_WORKER_ENDPOINT,
  bestWorkerAnswerToWire,
  bestWorkerQueryFromWire,
  ROUTER_COMPONENT,
  ROUTER_GENERATE_ENDPOINT,
  routerGenerateRequestFromWire,
} from './protocol.ts';

export interface RouterServiceOptions
  extends Omit<ModelRouterOptions, 'runtime' | 'model' | 'namespace' | 'component' | 'config'> {
  readonly runtime: Runtime;
  /** The workers' endpoint, `ns.component.generate`. */
  readonly endpoint: EndpointId;
  /** Router config; `blockSize` is required (it must match the workers' kv_block_size). */
  readonly config: KvRouterConfigInput & { readonly blockSize: number };
}

export interface RouterServiceStats {
  readonly models: readonly string[];
  readonly queries: number;
  readonly generates: number;
  readonly badRequests: number;
}

export class RouterService {
  readonly endpoint: EndpointId;
  readonly namespace: string;
  /** This service's instance id on the request plane. */
  readonly instanceId: WorkerId;

  private readonly routers = new Map<string, ModelRouter>();
  private readonly wakeups = new Wakeups();
  private readonly handles: ServeHandle[] = [];
  private readonly registrations: Registration[] = [];
  private watch: DiscoveryWatch | undefined;
  private queries = 0;
  private generates = 0;
  private badRequests = 0;
  private closed: Promise<void> | undefined;

  private constructor(
    private readonly options: RouterServiceOptions,
    instanceId: WorkerId,
  ) {
    this.endpoint = options.endpoint;
    this.namespace = options.endpoint.namespace;
    this.instanceId = instanceId;
  }

  /** Watches the routed endpoint, serves and registers `{ns}.router.*`. */
  static async start(options: RouterServiceOptions): Promise<RouterService> {
    if (options.endpoint.endpoint !== GENERATE_ENDPOINT)
      throw new TypeError(
        `the router routes ${GENERATE_ENDPOINT} endpoints; got ${formatEndpointId(options.endpoint)}`,
      );
    const runtime = options.runtime;
    const service = new RouterService(options, await runtime.discovery.primaryInstanceId());
    try {
      service.watch = await runtime.discovery.watch(
        { namespace: service.namespace, component: options.endpoint.component, endpoint: GENERATE_ENDPOINT },
        (event) => {
          if (event.type === 'added' && event.card !== undefined) service.ensureRouter(event.card.modelName);
        },
      );
      await Promise.all([...service.routers.values()].map((r) => r.start()));
      const serve = async (
        name: string,
        handler: (payload: Uint8Array, ctx: HandlerContext) => AsyncIterable<Uint8Array>,
      ) => {
        const ep = endpointId(service.namespace, ROUTER_COMPONENT, name);
        service.handles.push(await runtime.requests.serve(ep, service.instanceId, handler));
        service.registrations.push(
          await runtime.discovery.register({ endpoint: ep, instanceId: service.instanceId }),
        );
      };
      await serve(BEST_WORKER_ENDPOINT, (payload) => service.bestWorker(payload));
      await serve(ROUTER_GENERATE_ENDPOINT, (payload, ctx) => service.generate(payload, ctx));
    } catch (error) {
      await service.close();
      throw error;
    }
    log.info(
      { endpoint: formatEndpointId(options.endpoint), instanceId: service.instanceId.toString(16) },
      'router service: serving best_worker_id and generate',
    );
    return service;
  }

  /** The router of a model (undefined before its first worker registered). */
  routerFor(model: string): ModelRouter | undefined {
    return this.routers.get(model);
  }

  stats(): RouterServiceStats {
    return {
      models: [...this.routers.keys()].sort(),
      queries: this.queries,
      generates: this.generates,
      badRequests: this.badRequests,
    };
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      this.watch?.close();
      await Promise.all(this.registrations.map((r) => r.deregister().catch(() => undefined)));
      await Promise.all(this.handles.map((h) => h.stop().catch(() => undefined)));
      await Promise.all([...this.routers.values()].map((r) => r.close()));
      this.wakeups.wakeAll();
    })();
    return this.closed;
  }

  private ensureRouter(model: string): void {
    if (this.closed !== undefined || this.routers.has(model)) return;
    const { runtime, endpoint, config, ...rest } = this.options;
    const router = new ModelRouter({
      ...rest,
      runtime,
      model,
      namespace: endpoint.namespace,
      component: endpoint.component,
      config,
    });
    this.routers.set(model, router);
    void router.start().catch((error: unknown) => {
      log.error({ err: error, model }, 'router service: starting a model router failed');
    });
    this.wakeups.wakeAll();
  }

  /** The model's router: the one named, else the only one; waits for a first worker if needed. */
  private async resolve(model: string | undefined, signal?: AbortSignal): Promise<ModelRouter> {
    const waitMs = this.options.waitForWorkersMs ?? 30_000;
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (model !== undefined) {
        const router = this.routers.get(model);
        if (router !== undefined) {
          await router.waitForInstances(Math.max(0, deadline - Date.now()), signal);
          return router;
        }
      } else if (this.routers.size === 1) {
        const router = this.routers.values().next().value!;
        await router.waitForInstances(Math.max(0, deadline - Date.now()), signal);
        return router;
      } else if (this.routers.size > 1) {
        throw new Error(
          workerErrorText(
            WORKER_BAD_REQUEST,
            `${formatEndpointId(this.endpoint)} serves several models (${[...this.routers.keys()].join(', ')}); name one with "model"`,
          ),
        );
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed !== undefined || signal?.aborted)
        throw coded(
          new NoWorkersError(
            `no worker serves ${model === undefined ? 'any model' : `model ${JSON.stringify(model)}`} on ${formatEndpointId(this.endpoint)}`,
          ),
        );
      await this.wakeups.next(left, signal);
    }
  }

  private badRequest(what: string, detail: string): Error {
    this.badRequests++;
    this.options.runtime.malformed.drop('request', what, detail);
    return new Error(workerErrorText(WORKER_BAD_REQUEST, `invalid ${what}: ${detail}`));
  }

  private parse<T>(
    payload: Uint8Array,
    what: string,
    decode: (value: unknown) => { ok: true; value: T } | { ok: false; error: string },
  ): T {
    let value: unknown;
    try {
      value = decodeJson(payload);
    } catch (error) {
      throw this.badRequest(what, errorMessage(error));
    }
    const result = decode(value);
    if (!result.ok) throw this.badRequest(what, result.error);
    return result.value;
  }

  private async *bestWorker(payload: Uint8Array): AsyncIterable<Uint8Array> {
    const query = this.parse(payload, 'best_worker_id request', bestWorkerQueryFromWire);
    this.queries++;
    const router = await this.resolve(query.model);
    try {
      const decision = router.decide(query.tokenIds, {
        ...(query.workerId !== undefined ? { workerId: query.workerId } : {}),
        ...(query.dpRank !== undefined ? { dpRank: query.dpRank } : {}),
        ...(query.overrides !== undefined ? { overrides: query.overrides } : {}),
      });
      yield encodeJson(bestWorkerAnswerToWire(decision));
    } catch (error) {
      throw coded(error);
    }
  }

  private async *generate(payload: Uint8Array, ctx: HandlerContext): AsyncIterable<Uint8Array> {
    const request = this.parse(payload, 'router generate request', routerGenerateRequestFromWire);
    this.generates++;
    const router = await this.resolve(request.model, ctx.signal);
    const { model: _m, ...routed } = request;
    try {
      for await (const chunk of router.generate(routed, ctx.signal)) {
        const { workerId, dpRank, ...rest } = chunk;
        yield encodeJson({ ...generateChunkToWire({ ...rest, dpRank }), worker_id: workerId });
      }
    } catch (error) {
      throw coded(error);
    }
  }
}

/** `CODE: message` for coded errors (routing, cluster), so callers can tell them apart. */
function coded(error: unknown): Error {
  if (error instanceof RoutingError) return new Error(workerErrorText(error.code, error.message));
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && !errorMessage(error).startsWith(`${code}:`))
    return new Error(workerErrorText(code, errorMessage(error)));
  return error instanceof Error ? error : new Error(String(error));
}
