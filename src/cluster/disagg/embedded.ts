/**
 * The disaggregated embedded layout: N prefill workers and M decode workers (real `Worker`s, each
 * with its own lease, ranks, KV events and load reports) on one in-process LocalCluster, their
 * engines handing KV over through one InProcessKvTransfer, and either a bare
 * DisaggregatedModelRouter (benchmarks, tests) or the full OpenAI frontend (`kvgate serve
 * --prefill-workers N --decode-workers M`) in front.
 */
import type { EngineOptions } from '../../engine/options.ts';
import { InProcessKvTransfer } from '../../engine/transfer.ts';
import type { ClusterFrontendOptions } from '../../frontend/cluster-frontend.ts';
import { listenFrontend } from '../../frontend/server.ts';
import { BACKEND_COMPONENT, PREFILL_COMPONENT } from '../../protocol/wire.ts';
import type { KvRouterConfigInput } from '../../routing/config.ts';
import type { PolicyName } from '../../routing/policy.ts';
import { LocalCluster, type LocalRuntime } from '../../runtime/local/cluster.ts';
import type { Runtime } from '../../runtime/types.ts';
import { waitUntil } from '../../runtime/wait.ts';
import { MockEngineAdapter } from '../../worker/engine-adapter.ts';
import { Worker } from '../../worker/worker.ts';
import { ModelWatcher } from '../model-watcher.ts';
import { DisaggregatedModelRouter, type DisaggregationOptions } from './disaggregated-model-router.ts';
import { type DisaggFrontend, PREFILL_ROUTER_CONFIG, startDisaggregatedFrontend } from './frontend.ts';
import type { PrefillSelector } from './selection.ts';

export type LayoutEngineOptions = Partial<
  Pick<
    EngineOptions,
    | 'dataParallelSize'
    | 'blockSize'
    | 'numGpuBlocks'
    | 'maxNumSeqs'
    | 'maxNumBatchedTokens'
    | 'speedupRatio'
    | 'enableChunkedPrefill'
    | 'perfModel'
    | 'bootstrapTimeoutMs'
    | 'placementHistory'
    | 'clock'
  >
>;

export interface DisaggregatedWorkersOptions {
  readonly model: string;
  readonly prefillWorkers: number;
  readonly decodeWorkers: number;
  /**
   * `decode` (default): decode-only engines. `aggregated`: engines that pull prefilled KV and can
   * also prefill themselves (conditional disaggregation, fallback; vLLM-style decode workers).
   */
  readonly decodeRole?: 'decode' | 'aggregated';
  /** Engine settings of every worker; `prefillEngine` / `decodeEngine` override per pool. */
  readonly engine: LayoutEngineOptions;
  readonly prefillEngine?: LayoutEngineOptions;
  readonly decodeEngine?: LayoutEngineOptions;
  /** Join this cluster (default a new one). */
  readonly cluster?: LocalCluster;
  /** Share this KV transfer (another set of workers on the same cluster; default a new one). */
  readonly transfer?: InProcessKvTransfer;
  /** How long stopping waits for in-flight requests (default 10 s). */
  readonly drainTimeoutMs?: number;
  /** First bootstrap port advertised by prefill workers (worker i gets port + i; default 8998). */
  readonly bootstrapPort?: number;
}

export interface DisaggregatedWorkers {
  readonly cluster: LocalCluster;
  readonly transfer: InProcessKvTransfer;
  readonly prefill: readonly Worker[];
  readonly decode: readonly Worker[];
  /** The mock engine of a worker (placements, metrics). */
  engineOf(worker: Worker): MockEngineAdapter;
  close(): Promise<void>;
}

/** Starts the workers and waits until each is registered. */
export async function startDisaggregatedWorkers(
  options: DisaggregatedWorkersOptions,
): Promise<DisaggregatedWorkers> {
  const cluster = options.cluster ?? new LocalCluster();
  const transfer = options.transfer ?? new InProcessKvTransfer();
  const runtimes: LocalRuntime[] = [];
  const prefill: Worker[] = [];
  const decode: Worker[] = [];
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const basePort = options.bootstrapPort ?? 8998;
  const host = '127.0.0.1';
  const close = async () => {
    await Promise.all([...prefill, ...decode].map((w) => w.shutdown({ drainTimeoutMs })));
    await Promise.all(runtimes.map((r) => r.close()));
  };
  const start = async (engine: Partial<EngineOptions>, bootstrapPort?: number): Promise<Worker> => {
    const runtime = cluster.runtime();
    runtimes.push(runtime);
    return Worker.start({
      runtime,
      modelName: options.model,
      engine: MockEngineAdapter.factory(engine),
      drainTimeoutMs,
      ...(bootstrapPort !== undefined ? { bootstrap: { host, port: bootstrapPort } } : {}),
    });
  };
  try {
    for (let i = 0; i < options.prefillWorkers; i++) {
      const port = basePort + i;
      prefill.push(
        await start(
          {
            ...options.engine,
            ...options.prefillEngine,
            mode: 'prefill',
            seed: i,
            transfer,
            bootstrapHost: host,
            bootstrapPort: port,
          },
          port,
        ),
      );
    }
    for (let i = 0; i < options.decodeWorkers; i++)
      decode.push(
        await start({
          ...options.engine,
          ...options.decodeEngine,
          mode: options.decodeRole ?? 'decode',
          seed: 1000 + i,
          transfer,
        }),
      );
    await Promise.all([...prefill, ...decode].map((w) => w.registered));
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    cluster,
    transfer,
    prefill,
    decode,
    engineOf: (worker) => worker.engine as MockEngineAdapter,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}

export interface DisaggregatedRouterOptions extends DisaggregationOptions {
  readonly runtime: Runtime;
  readonly model: string;
  /** Default `kvgate`. */
  readonly namespace?: string;
  readonly policy?: PolicyName;
  /** Router config of the decode pool (the prefill pool adds PREFILL_ROUTER_CONFIG). */
  readonly routerConfig?: KvRouterConfigInput;
  readonly prefillSelector?: PrefillSelector;
  /** Wait until the routers see this many workers of each pool (default: do not wait). */
  readonly expect?: { readonly prefill: number; readonly decode: number };
}

export interface DisaggregatedRouterHandle {
  readonly watcher: ModelWatcher;
  readonly router: DisaggregatedModelRouter;
  close(): Promise<void>;
}

/** A ModelWatcher and the model's DisaggregatedModelRouter, without HTTP. */
export async function startDisaggregatedRouter(
  options: DisaggregatedRouterOptions,
): Promise<DisaggregatedRouterHandle> {
  const watcher = await ModelWatcher.start({
    runtime: options.runtime,
    ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
    ...(options.policy !== undefined ? { policy: options.policy } : {}),
    ...(options.routerConfig !== undefined ? { config: options.routerConfig } : {}),
    componentConfig: { [PREFILL_COMPONENT]: PREFILL_ROUTER_CONFIG },
  });
  try {
    if (options.expect !== undefined) await waitForPools(watcher, options.model, options.expect);
    const decode = watcher.routerFor(options.model, BACKEND_COMPONENT);
    if (decode === undefined) throw new Error(`no backend worker serves ${options.model}`);
    const {
      runtime,
      model: _m,
      namespace: _n,
      policy: _p,
      routerConfig: _c,
      expect: _e,
      ...disagg
    } = options;
    const router = new DisaggregatedModelRouter({
      ...disagg,
      runtime,
      decode,
      prefill: () => watcher.routerFor(options.model, PREFILL_COMPONENT),
    });
    return { watcher, router, close: () => watcher.close() };
  } catch (error) {
    await watcher.close();
    throw error;
  }
}

/** Resolves once the routers of both pools see the expected number of workers. */
export async function waitForPools(
  watcher: ModelWatcher,
  model: string,
  expect: { readonly prefill: number; readonly decode: number },
  timeoutMs = 10_000,
): Promise<void> {
  const count = (component: string) => watcher.routerFor(model, component)?.instances().length ?? 0;
  const ready = () => count(PREFILL_COMPONENT) >= expect.prefill && count(BACKEND_COMPONENT) >= expect.decode;
  if (!(await waitUntil(ready, timeoutMs, 5)))
    throw new Error(
      `the router saw ${count(PREFILL_COMPONENT)}/${expect.prefill} prefill and ${count(BACKEND_COMPONENT)}/${expect.decode} decode workers after ${timeoutMs} ms`,
    );
}

export interface DisaggEmbeddedServerOptions
  extends Omit<ClusterFrontendOptions, 'runtime' | 'namespace'>,
    DisaggregationOptions,
    Omit<DisaggregatedWorkersOptions, 'cluster'> {
  readonly host?: string;
  /** 0 = any free port (default 8000). */
  readonly port?: number;
  readonly prefillSelector?: PrefillSelector;
}

export interface DisaggEmbeddedServer {
  readonly url: string;
  readonly port: number;
  readonly frontend: DisaggFrontend;
  readonly workers: DisaggregatedWorkers;
  /** Stops the HTTP server (in-flight requests finish), then the workers, then the runtimes. */
  close(): Promise<void>;
}

/** `kvgate serve --prefill-workers N --decode-workers M`: the layout plus the OpenAI frontend. */
export async function startDisaggEmbeddedServer(
  options: DisaggEmbeddedServerOptions,
): Promise<DisaggEmbeddedServer> {
  const {
    model,
    prefillWorkers,
    decodeWorkers,
    decodeRole,
    engine,
    prefillEngine,
    decodeEngine,
    drainTimeoutMs,
    bootstrapPort,
    host,
    port,
    ...frontendOptions
  } = options;
  const workers = await startDisaggregatedWorkers({
    model,
    prefillWorkers,
    decodeWorkers,
    engine,
    ...(decodeRole !== undefined ? { decodeRole } : {}),
    ...(prefillEngine !== undefined ? { prefillEngine } : {}),
    ...(decodeEngine !== undefined ? { decodeEngine } : {}),
    ...(drainTimeoutMs !== undefined ? { drainTimeoutMs } : {}),
    ...(bootstrapPort !== undefined ? { bootstrapPort } : {}),
  });
  const runtime = workers.cluster.runtime();
  let frontend: DisaggFrontend | undefined;
  try {
    frontend = await startDisaggregatedFrontend({
      ...frontendOptions,
      runtime,
      routerConfig: { ...frontendOptions.routerConfig, blockSize: engine.blockSize ?? 64 },
    });
    await waitForPools(frontend.watcher, model, { prefill: prefillWorkers, decode: decodeWorkers });
    const address = await listenFrontend(frontend.app, { host: host ?? '127.0.0.1', port: port ?? 8000 });
    let closing: Promise<void> | undefined;
    const server: DisaggEmbeddedServer = {
      ...address,
      frontend,
      workers,
      close: () => {
        closing ??= (async () => {
          await frontend?.close();
          await workers.close();
          await runtime.close();
        })();
        return closing;
      },
    };
    return server;
  } catch (error) {
    await frontend?.close().catch(() => undefined);
    await workers.close().catch(() => undefined);
    await runtime.close().catch(() => undefined);
    throw error;
  }
}
