/**
 * Watches every model card in a namespace and keeps one ModelRouter per (model, component): the
 * frontend's view of what it can serve. A router is created when the first worker of its model and
 * component registers and kept when the last one leaves (requests then wait for a worker to come
 * back, up to the router's waitForWorkersMs); `models()` lists the models that have workers now.
 */
import type { WorkerId } from '../kv/events.ts';
import { BACKEND_COMPONENT, DEFAULT_NAMESPACE, GENERATE_ENDPOINT } from '../protocol/wire.ts';
import type { KvRouterConfigInput } from '../routing/config.ts';
import type { ModelCard } from '../runtime/model-card.ts';
import type { DiscoveryEvent, DiscoveryWatch, Runtime } from '../runtime/types.ts';
import { log } from '../util/log.ts';
import { ModelRouter, type ModelRouterOptions } from './model-router.ts';

export interface ModelWatcherOptions
  extends Omit<ModelRouterOptions, 'runtime' | 'model' | 'component' | 'namespace' | 'config'> {
  readonly runtime: Runtime;
  /** Default `kvgate`. */
  readonly namespace?: string;
  /** Router config for every model; without a blockSize each router takes its first card's. */
  readonly config?: KvRouterConfigInput;
  /** Per-component config overrides (e.g. `prefill: { trackActiveBlocks: false }`). */
  readonly componentConfig?: Readonly<Record<string, KvRouterConfigInput>>;
}

export interface ModelChange {
  readonly type: 'added' | 'removed';
  readonly model: string;
  readonly component: string;
}

interface Entry {
  readonly router: ModelRouter;
  readonly workers: Set<WorkerId>;
}

export class ModelWatcher {
  readonly namespace: string;
  /** Component → model → its router and live workers (looked up per request without building a key). */
  private readonly byComponent = new Map<string, Map<string, Entry>>();
  /** instance id → the (model, component) entry it counts for. */
  private readonly instanceEntries = new Map<WorkerId, Entry>();
  private readonly listeners = new Set<(change: ModelChange) => void>();
  private watch: DiscoveryWatch | undefined;
  private closed = false;

  private constructor(private readonly options: ModelWatcherOptions) {
    this.namespace = options.namespace ?? DEFAULT_NAMESPACE;
  }

  static async start(options: ModelWatcherOptions): Promise<ModelWatcher> {
    const watcher = new ModelWatcher(options);
    watcher.watch = await options.runtime.discovery.watch({ namespace: watcher.namespace }, (event) =>
      watcher.onDiscovery(event),
    );
    await Promise.all([...watcher.entries()].map((e) => e.router.start()));
    return watcher;
  }

  /** Models with at least one live worker (any component), sorted. */
  models(): string[] {
    const names = new Set<string>();
    for (const entry of this.entries()) if (entry.workers.size > 0) names.add(entry.router.model);
    return [...names].sort();
  }

  /** The router of a model's component (default `backend`); undefined before its first worker. */
  routerFor(model: string, component: string = BACKEND_COMPONENT): ModelRouter | undefined {
    return this.byComponent.get(component)?.get(model)?.router;
  }

  routers(): ModelRouter[] {
    return [...this.entries()].map((e) => e.router);
  }

  /** Called when a model's component gains its first worker or loses its last; returns unsubscribe. */
  onChange(listener: (change: ModelChange) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch?.close();
    await Promise.all([...this.entries()].map((e) => e.router.close()));
  }

  private *entries(): IterableIterator<Entry> {
    for (const models of this.byComponent.values()) yield* models.values();
  }

  private onDiscovery(event: DiscoveryEvent): void {
    if (this.closed || event.instance.endpoint.endpoint !== GENERATE_ENDPOINT) return;
    const workerId = event.instance.instanceId;
    const component = event.instance.endpoint.component;
    if (event.type === 'removed') {
      const entry = this.instanceEntries.get(workerId);
      if (entry === undefined) return;
      this.instanceEntries.delete(workerId);
      if (entry.workers.delete(workerId) && entry.workers.size === 0)
        this.emit({ type: 'removed', model: entry.router.model, component });
      return;
    }
    const card = event.card;
    if (card === undefined) return;
    let models = this.byComponent.get(component);
    if (models === undefined) {
      models = new Map();
      this.byComponent.set(component, models);
    }
    const entry = models.get(card.modelName);
    const previous = this.instanceEntries.get(workerId);
    if (previous !== undefined && previous !== entry) previous.workers.delete(workerId);
    const change: ModelChange = { type: 'added', model: card.modelName, component };
    if (entry === undefined) {
      const created: Entry = { router: this.createRouter(card, component), workers: new Set([workerId]) };
      models.set(card.modelName, created);
      this.instanceEntries.set(workerId, created);
      // Announced once the new router knows its workers (its own watch delivered them).
      created.router.start().then(
        () => {
          if (!this.closed && created.workers.size > 0) this.emit(change);
        },
        (error: unknown) => {
          log.error(
            { err: error, model: card.modelName, component },
            'router: starting a model router failed',
          );
        },
      );
      return;
    }
    this.instanceEntries.set(workerId, entry);
    const wasEmpty = entry.workers.size === 0;
    entry.workers.add(workerId);
    if (wasEmpty) this.emit(change);
  }

  private createRouter(card: ModelCard, component: string): ModelRouter {
    const { runtime, config, componentConfig, namespace: _ns, ...rest } = this.options;
    const merged: KvRouterConfigInput = { ...config, ...componentConfig?.[component] };
    return new ModelRouter({
      ...rest,
      runtime,
      namespace: this.namespace,
      model: card.modelName,
      component,
      config: { ...merged, blockSize: merged.blockSize ?? card.kvBlockSize },
    });
  }

  private emit(change: ModelChange): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        log.error({ err: error }, 'model watcher: listener threw');
      }
    }
  }
}
