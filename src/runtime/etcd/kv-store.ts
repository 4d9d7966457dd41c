/**
 * The leased key-value store over etcd (v3 API through etcd3/gRPC): leases kept alive by etcd3
 * (a keepalive every TTL/3), multi-key puts in one transaction, prefix watches started at the
 * revision right after a snapshot read, so nothing between the two is missed or seen twice.
 * etcd3 re-establishes a broken watch stream from the last revision it saw.
 */
import { Etcd3, type IOptions, type Lease, type Watcher } from 'etcd3';
import { log } from '../../util/log.ts';
import { retryWithBackoff } from '../backoff.ts';
import { errorMessage, RuntimeError } from '../errors.ts';
import type { KvChange, KvEntry, KvWatch, LeasedKvStore, StoreLease } from '../kv-store.ts';

export interface EtcdStoreOptions {
  /** `host:port` or URLs; default `ETCD_ENDPOINTS` (comma separated) or 127.0.0.1:2379. */
  readonly hosts?: string | readonly string[];
  readonly auth?: { readonly username: string; readonly password: string };
  /** TLS: CA, and client certificate and key for mutual TLS. */
  readonly credentials?: {
    readonly rootCertificate: Buffer;
    readonly privateKey?: Buffer;
    readonly certChain?: Buffer;
  };
  readonly dialTimeoutMs?: number;
}

export function defaultEtcdHosts(): string[] {
  const fromEnv = process.env.ETCD_ENDPOINTS;
  return fromEnv ? fromEnv.split(',').map((h) => h.trim()) : ['127.0.0.1:2379'];
}

export class EtcdKvStore implements LeasedKvStore {
  readonly client: Etcd3;
  private readonly leases = new Set<Lease>();
  private readonly stop = new AbortController();

  constructor(options: EtcdStoreOptions = {}) {
    const hosts = options.hosts ?? defaultEtcdHosts();
    const etcdOptions: IOptions = {
      hosts: typeof hosts === 'string' ? hosts : [...hosts],
      dialTimeout: options.dialTimeoutMs ?? 3_000,
      ...(options.auth ? { auth: { ...options.auth } } : {}),
      ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
    };
    this.client = new Etcd3(etcdOptions);
  }

  async grantLease(ttlSeconds: number): Promise<StoreLease> {
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    const lease = this.client.lease(ttl, { autoKeepAlive: true });
    let id: bigint;
    try {
      id = BigInt(await lease.grant());
    } catch (error) {
      lease.release();
      throw new RuntimeError('RUNTIME_CLOSED', `etcd lease grant failed: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    this.leases.add(lease);
    const lost: (() => void)[] = [];
    let quiet = false;
    lease.on('lost', (error) => {
      this.leases.delete(lease);
      if (quiet) return;
      log.warn({ lease: id.toString(16), err: errorMessage(error) }, 'runtime: etcd lease lost');
      for (const listener of lost) listener();
    });
    return {
      id,
      onLost: (listener) => lost.push(listener),
      revoke: async () => {
        quiet = true;
        this.leases.delete(lease);
        await lease.revoke();
      },
      abandon: () => {
        quiet = true;
        this.leases.delete(lease);
        lease.release();
      },
    };
  }

  async putAll(entries: readonly KvEntry[], lease: StoreLease): Promise<void> {
    await this.client.kv.txn({
      compare: [],
      success: entries.map((e) => ({
        request_put: { key: Buffer.from(e.key), value: Buffer.from(e.value), lease: lease.id.toString() },
      })),
      failure: [],
    });
  }

  /** A raw put with no lease (tests write garbage through this). */
  async putRaw(key: string, value: Uint8Array): Promise<void> {
    await this.client.put(key).value(Buffer.from(value)).exec();
  }

  async deleteAll(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.client.kv.txn({
      compare: [],
      success: keys.map((key) => ({ request_delete_range: { key: Buffer.from(key) } })),
      failure: [],
    });
  }

  async getPrefix(prefix: string): Promise<KvEntry[]> {
    const res = await this.client.getAll().prefix(prefix).exec();
    return res.kvs.map((kv) => ({ key: kv.key.toString(), value: new Uint8Array(kv.value) }));
  }

  async watchPrefix(
    prefix: string,
    onChanges: (changes: readonly KvChange[]) => void,
    onResync?: (entries: readonly KvEntry[]) => void,
  ): Promise<KvWatch> {
    let closed = false;
    let current: Watcher | undefined;
    const start = async (): Promise<KvEntry[]> => {
      const snapshot = await this.client.getAll().prefix(prefix).exec();
      const entries = snapshot.kvs.map((kv) => ({ key: kv.key.toString(), value: new Uint8Array(kv.value) }));
      const next = (BigInt(snapshot.header.revision) + 1n).toString();
      const watcher = await this.client.watch().prefix(prefix).startRevision(next).create();
      if (closed) {
        void watcher.cancel().catch(() => {});
        return entries;
      }
      current = watcher;
      watcher.on('data', (res) => {
        if (!res.events || res.events.length === 0) return;
        onChanges(
          res.events.map((e) =>
            e.type === 'Delete'
              ? { type: 'delete', key: e.kv.key.toString() }
              : { type: 'put', key: e.kv.key.toString(), value: new Uint8Array(e.kv.value) },
          ),
        );
      });
      watcher.on('disconnected', () => log.warn({ prefix }, 'runtime: etcd watch disconnected; resuming'));
      // etcd3 resumes a broken stream by itself; an error means the watch was cancelled (e.g. its
      // revision was compacted away): start over from a fresh snapshot.
      watcher.once('error', (error) => {
        log.error({ err: errorMessage(error), prefix }, 'runtime: etcd watch cancelled; resyncing');
        if (closed || current !== watcher) return;
        current = undefined;
        void retryWithBackoff('etcd watch resync', start, { maxMs: 5_000, signal: this.stop.signal }).then(
          (entries) => {
            if (!closed) onResync?.(entries);
          },
          () => {},
        );
      });
      return entries;
    };
    const initial = await start();
    return {
      initial,
      close: () => {
        closed = true;
        void current?.cancel().catch(() => {});
        current = undefined;
      },
    };
  }

  async close(): Promise<void> {
    this.stop.abort();
    for (const lease of this.leases) lease.release();
    this.leases.clear();
    this.client.close();
  }
}
