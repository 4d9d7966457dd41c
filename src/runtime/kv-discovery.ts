/**
 * Discovery over a leased key-value store (etcd or the in-process store). One lease per runtime
 * (TTL 10 s by default, kept alive); its id is the default instance id. When the lease is lost
 * while the process lives (expired during a partition, revoked elsewhere), a new lease is granted
 * and every registration is written again under it, keeping its instance id. Store failures are
 * retried with back-off and logged, never thrown at a worker that could serve.
 */
import { log } from '../util/log.ts';
import { retryWithBackoff } from './backoff.ts';
import { DISCOVERY_ROOT, instanceKey, modelCardKey } from './discovery-keys.ts';
import { DiscoveryView } from './discovery-view.ts';
import { RuntimeError } from './errors.ts';
import { encodeInstance } from './instance-record.ts';
import type { KvEntry, LeasedKvStore, StoreLease } from './kv-store.ts';
import { assertValidModelCard, encodeModelCard, type ModelCard } from './model-card.ts';
import { MalformedCounter } from './stats.ts';
import {
  type DiscoveredInstance,
  type Discovery,
  type DiscoveryEvent,
  type DiscoveryWatch,
  type EndpointId,
  type EndpointPrefix,
  type Instance,
  type InstanceId,
  type InstanceTransport,
  type RegisterOptions,
  type Registration,
  validatePrefix,
} from './types.ts';

export interface KvDiscoveryOptions {
  /** Lease TTL in seconds (default 10). */
  readonly leaseTtlSeconds?: number;
  /** Transport recorded when register() is not given one (usually the request plane's). */
  readonly defaultTransport?: (endpoint: EndpointId, instanceId: InstanceId) => InstanceTransport;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  readonly malformed?: MalformedCounter;
}

interface RegisteredEntries {
  readonly entries: KvEntry[];
}

export class KvDiscovery implements Discovery {
  readonly malformed: MalformedCounter;
  private readonly ttl: number;
  private lease: Promise<StoreLease> | undefined;
  private primaryId: Promise<InstanceId> | undefined;
  private readonly registrations = new Map<string, RegisteredEntries>();
  private readonly watches = new Set<DiscoveryWatch>();
  private readonly stop = new AbortController();
  private crashed = false;

  constructor(
    private readonly store: LeasedKvStore,
    private readonly options: KvDiscoveryOptions = {},
  ) {
    this.ttl = options.leaseTtlSeconds ?? 10;
    this.malformed = options.malformed ?? new MalformedCounter();
  }

  primaryInstanceId(): Promise<InstanceId> {
    this.primaryId ??= this.currentLease().then((lease) => lease.id);
    return this.primaryId;
  }

  async register(options: RegisterOptions, card?: ModelCard): Promise<Registration> {
    this.assertOpen();
    if (card) assertValidModelCard(card);
    const instanceId = options.instanceId ?? (await this.primaryInstanceId());
    const transport =
      options.transport ??
      this.options.defaultTransport?.(options.endpoint, instanceId) ??
      ({ kind: 'local' } as const);
    const instance: Instance = { endpoint: options.endpoint, instanceId, transport };
    const key = instanceKey(options.endpoint, instanceId);
    const entries: KvEntry[] = [{ key, value: encodeInstance(instance) }];
    if (card) entries.push({ key: modelCardKey(options.endpoint, instanceId), value: encodeModelCard(card) });
    const registered: RegisteredEntries = { entries };
    this.registrations.set(key, registered);
    await this.retry(`register ${key}`, async () => this.store.putAll(entries, await this.currentLease()));
    return {
      instance,
      card,
      deregister: async () => {
        if (this.registrations.get(key) !== registered) return;
        this.registrations.delete(key);
        await this.retry(`deregister ${key}`, () => this.store.deleteAll(entries.map((e) => e.key)));
      },
    };
  }

  async watch(prefix: EndpointPrefix, listener: (event: DiscoveryEvent) => void): Promise<DiscoveryWatch> {
    this.assertOpen();
    validatePrefix(prefix);
    const view = new DiscoveryView(prefix, this.malformed);
    const deliver = (events: DiscoveryEvent[]) => {
      for (const event of events) {
        try {
          listener(event);
        } catch (error) {
          log.error({ err: error }, 'runtime: discovery listener threw');
        }
      }
    };
    // Changes that arrive before the snapshot is applied wait for it, so order is kept.
    let early: (() => DiscoveryEvent[])[] | undefined = [];
    const onUpdate = (update: () => DiscoveryEvent[]) => {
      if (early) early.push(update);
      else deliver(update());
    };
    const kvWatch = await this.retry('watch discovery', () =>
      this.store.watchPrefix(
        DISCOVERY_ROOT,
        (changes) => onUpdate(() => view.apply(changes)),
        (entries) => onUpdate(() => view.resync(entries)),
      ),
    );
    deliver(view.applyEntries(kvWatch.initial));
    const queued = early;
    early = undefined;
    for (const update of queued) deliver(update());
    const handle: DiscoveryWatch = {
      close: () => {
        if (!this.watches.delete(handle)) return;
        kvWatch.close();
      },
    };
    this.watches.add(handle);
    return handle;
  }

  async list(prefix: EndpointPrefix): Promise<DiscoveredInstance[]> {
    this.assertOpen();
    validatePrefix(prefix);
    const view = new DiscoveryView(prefix, this.malformed);
    view.applyEntries(await this.retry('list discovery', () => this.store.getPrefix(DISCOVERY_ROOT)));
    return view.current();
  }

  /** Simulates a crash: stops the keepalive and never re-registers; the lease runs out its TTL. */
  async abandonLease(): Promise<void> {
    this.crashed = true;
    this.stop.abort();
    const lease = await this.lease?.catch(() => undefined);
    lease?.abandon();
  }

  async close(): Promise<void> {
    if (this.stop.signal.aborted) return;
    this.stop.abort();
    for (const w of [...this.watches]) w.close();
    const lease = await this.lease?.catch(() => undefined);
    this.registrations.clear();
    if (lease) {
      await lease.revoke().catch((error: unknown) => {
        log.warn({ err: error }, 'runtime: lease revoke failed; it expires after its TTL');
      });
    }
  }

  private currentLease(): Promise<StoreLease> {
    if (!this.lease) {
      const lease = this.retry('grant lease', () => this.store.grantLease(this.ttl));
      this.lease = lease;
      lease.then(
        (granted) => granted.onLost(() => this.onLeaseLost(lease)),
        () => {
          if (this.lease === lease) this.lease = undefined;
        },
      );
    }
    return this.lease;
  }

  private onLeaseLost(lost: Promise<StoreLease>): void {
    if (this.lease !== lost) return;
    this.lease = undefined;
    if (this.crashed || this.stop.signal.aborted) return;
    log.warn({ registrations: this.registrations.size }, 'runtime: discovery lease lost; registering again');
    void this.reRegister();
  }

  private async reRegister(): Promise<void> {
    try {
      const lease = await this.currentLease();
      const entries = [...this.registrations.values()].flatMap((r) => r.entries);
      if (entries.length > 0) await this.retry('re-register', () => this.store.putAll(entries, lease));
    } catch (error) {
      if (!this.stop.signal.aborted) log.error({ err: error }, 'runtime: re-registration failed');
    }
  }

  private retry<T>(what: string, operation: () => Promise<T>): Promise<T> {
    return retryWithBackoff(what, operation, {
      initialMs: this.options.retryInitialMs ?? 100,
      maxMs: this.options.retryMaxMs ?? 5_000,
      signal: this.stop.signal,
    });
  }

  private assertOpen(): void {
    if (this.stop.signal.aborted) throw new RuntimeError('RUNTIME_CLOSED', 'discovery is closed');
  }
}
