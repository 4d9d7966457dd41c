/**
 * Keeps a worker registered exactly while its external engine is healthy. It probes the engine
 * (server info) and starts a Worker when the engine answers; it health-checks the engine every
 * interval, and after `failuresBeforeDown` failed checks in a row it shuts the worker down
 * (deregistered: routers stop sending it requests; in-flight ones fail fast as the engine is gone).
 * A request that finds the engine unreachable triggers a check at once instead of at the next
 * interval. When the engine answers again it is probed afresh (it may have restarted with other settings)
 * and a new Worker registers under the same instance id, with a fresh KV view.
 */

import type { WorkerId } from '../../kv/events.ts';
import { randomU64 } from '../../runtime/ids.ts';
import type { BootstrapEndpoint } from '../../runtime/model-card.ts';
import { log } from '../../util/log.ts';
import { Wakeups } from '../../util/wakeups.ts';
import type { EngineAdapter, EngineContext } from '../../worker/engine-adapter.ts';
import { Worker, type WorkerOptions } from '../../worker/worker.ts';
import { RemoteEngineAdapter } from './remote-engine.ts';

export interface EngineConnection {
  readonly engine: (context: EngineContext) => EngineAdapter;
  readonly bootstrap?: BootstrapEndpoint;
  readonly runtimeConfig?: Readonly<Record<string, unknown>>;
}

export interface SupervisedWorkerOptions
  extends Omit<WorkerOptions, 'engine' | 'bootstrap' | 'runtimeConfig'> {
  /** Probes the engine and returns how to build its adapter; throws while the engine is unreachable. */
  readonly connect: (signal: AbortSignal) => Promise<EngineConnection>;
  /** True when the engine answers its health check. */
  readonly healthy: (signal: AbortSignal) => Promise<boolean>;
  /** Default 2000 ms. */
  readonly healthIntervalMs?: number;
  /** How long one health check may take (default max(interval, 2000 ms)); a refused connection fails at once. */
  readonly healthTimeoutMs?: number;
  /** Consecutive failed checks before the worker deregisters (default 2). */
  readonly failuresBeforeDown?: number;
}

export type EngineState = 'connecting' | 'up' | 'down' | 'stopped';

export class SupervisedWorker {
  readonly instanceId: WorkerId;
  private readonly options: SupervisedWorkerOptions;
  private readonly stopping = new AbortController();
  private current: Worker | null = null;
  private engineState: EngineState = 'connecting';
  private readonly stateChanges = new Wakeups();
  private readonly loop: Promise<void>;
  private transitions = 0;
  /** Ends the wait before the next health check (a request just found the engine unreachable). */
  private wakeNow: (() => void) | null = null;

  private constructor(options: SupervisedWorkerOptions) {
    this.options = options;
    this.instanceId = options.instanceId ?? randomU64();
    this.loop = this.run();
  }

  /** Starts supervising; the worker registers once the engine answers. */
  static start(options: SupervisedWorkerOptions): SupervisedWorker {
    return new SupervisedWorker(options);
  }

  /** The registered worker while the engine is up, else null. */
  get worker(): Worker | null {
    return this.current;
  }

  get state(): EngineState {
    return this.engineState;
  }

  /** Up/down transitions so far. */
  get changes(): number {
    return this.transitions;
  }

  /** Resolves when the state is `state` (at once if it already is). */
  async waitFor(state: EngineState, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.engineState !== state) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`engine state is ${this.engineState}, not ${state}, after ${timeoutMs} ms`);
      await this.stateChanges.next(left);
    }
  }

  async stop(drainTimeoutMs?: number): Promise<void> {
    this.stopping.abort();
    await this.loop;
    const worker = this.current;
    this.current = null;
    if (worker !== null) await worker.shutdown(drainTimeoutMs === undefined ? {} : { drainTimeoutMs });
    this.setState('stopped');
  }

  private setState(state: EngineState): void {
    if (state === this.engineState) return;
    if ((state === 'up' || state === 'down') && this.engineState !== 'connecting') this.transitions++;
    this.engineState = state;
    this.stateChanges.wakeAll();
  }

  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    const interval = this.options.healthIntervalMs ?? 2000;
    const threshold = this.options.failuresBeforeDown ?? 2;
    const timeout = this.options.healthTimeoutMs ?? Math.max(interval, 2000);
    let failures = 0;
    let loggedUnreachable = false;
    while (!signal.aborted) {
      if (this.current === null) {
        try {
          const connection = await this.options.connect(
            AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
          );
          if (signal.aborted) return;
          const {
            connect: _c,
            healthy: _h,
            healthIntervalMs: _i,
            healthTimeoutMs: _t,
            failuresBeforeDown: _f,
            ...workerOptions
          } = this.options;
          this.current = await Worker.start({
            ...workerOptions,
            instanceId: this.instanceId,
            engine: (context) => {
              const adapter = connection.engine(context);
              if (adapter instanceof RemoteEngineAdapter) adapter.onUnreachable = () => this.wakeNow?.();
              return adapter;
            },
            ...(connection.bootstrap !== undefined ? { bootstrap: connection.bootstrap } : {}),
            ...(connection.runtimeConfig !== undefined ? { runtimeConfig: connection.runtimeConfig } : {}),
          });
          failures = 0;
          loggedUnreachable = false;
          log.info({ instanceId: this.instanceId.toString(16) }, 'engine up: worker serving');
          this.setState('up');
        } catch (error) {
          if (!loggedUnreachable)
            log.warn(
              { err: error instanceof Error ? error.message : String(error) },
              'engine unreachable; waiting',
            );
          loggedUnreachable = true;
        }
      } else {
        const ok = await this.options
          .healthy(AbortSignal.any([signal, AbortSignal.timeout(timeout)]))
          .catch(() => false);
        if (signal.aborted) return;
        failures = ok ? 0 : failures + 1;
        if (failures >= threshold) {
          log.warn(
            { instanceId: this.instanceId.toString(16), failures },
            'engine down: deregistering the worker',
          );
          const worker = this.current;
          this.current = null;
          this.setState('down');
          await worker.shutdown({ drainTimeoutMs: 0 });
          failures = 0;
        }
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', wake);
          this.wakeNow = null;
          resolve();
        };
        this.wakeNow = wake;
        const timer = setTimeout(wake, interval);
        signal.addEventListener('abort', wake, { once: true });
      });
    }
  }
}

/** A health check: `GET {url}/health` answers 200. */
export function httpHealthCheck(url: string): (signal: AbortSignal) => Promise<boolean> {
  const base = url.replace(/\/+$/, '');
  return async (signal) => {
    try {
      const response = await fetch(`${base}/health`, { signal });
      await response.arrayBuffer();
      return response.ok;
    } catch {
      return false;
    }
  };
}
