/**
 * In-process leased key-value store with etcd's semantics where discovery relies on them: a lease
 * expires `ttl` after its keepalive stops (or at once through `expireLease`) and takes its keys
 * with it in one change batch; watches start from a snapshot and then see every later batch, in
 * order, asynchronously (as a remote watcher would).
 */

import { RuntimeError } from '../errors.ts';
import { randomU64 } from '../ids.ts';
import type { KvChange, KvEntry, KvWatch, LeasedKvStore, StoreLease } from '../kv-store.ts';

interface LeaseState {
  readonly id: bigint;
  readonly ttlMs: number;
  readonly keys: Set<string>;
  readonly lost: (() => void)[];
  expiry: ReturnType<typeof setTimeout> | undefined;
  /** Revoked by its owner or abandoned: no loss notification. */
  quiet: boolean;
}

interface Watcher {
  readonly prefix: string;
  readonly onChanges: (changes: readonly KvChange[]) => void;
  open: boolean;
}

export class LocalKvStore implements LeasedKvStore {
  private readonly entries = new Map<string, { value: Uint8Array; lease: bigint }>();
  private readonly leases = new Map<bigint, LeaseState>();
  private readonly watchers = new Set<Watcher>();

  async grantLease(ttlSeconds: number): Promise<StoreLease> {
    if (!(ttlSeconds > 0)) throw new RuntimeError('RUNTIME_INVALID', 'lease TTL must be positive');
    let id = randomU64();
    while (id === 0n || this.leases.has(id)) id = randomU64();
    const state: LeaseState = {
      id,
      ttlMs: ttlSeconds * 1000,
      keys: new Set(),
      lost: [],
      expiry: undefined,
      quiet: false,
    };
    this.leases.set(id, state);
    return {
      id,
      onLost: (listener) => state.lost.push(listener),
      revoke: async () => {
        state.quiet = true;
        this.expireLease(id);
      },
      abandon: () => {
        if (!this.leases.has(id) || state.expiry) return;
        state.quiet = true;
        state.expiry = setTimeout(() => this.expireLease(id), state.ttlMs);
        state.expiry.unref?.();
      },
    };
  }

  /** Ends a lease now and deletes its keys, as etcd does when a TTL runs out. */
  expireLease(id: bigint): boolean {
    const state = this.leases.get(id);
    if (!state) return false;
    this.leases.delete(id);
    if (state.expiry) clearTimeout(state.expiry);
    const changes: KvChange[] = [];
    for (const key of state.keys) {
      this.entries.delete(key);
      changes.push({ type: 'delete', key });
    }
    this.notify(changes);
    if (!state.quiet) for (const listener of state.lost) queueMicrotask(listener);
    return true;
  }

  leaseIds(): bigint[] {
    return [...this.leases.keys()];
  }

  async putAll(entries: readonly KvEntry[], lease: StoreLease): Promise<void> {
    const state = this.leases.get(lease.id);
    if (!state) throw new RuntimeError('RUNTIME_INVALID', `lease ${lease.id.toString(16)} not found`);
    this.putRaw(entries, state);
  }

  /** Writes entries with no lease check (tests put garbage through this, like a raw etcd put). */
  putUnleased(entries: readonly KvEntry[]): void {
    this.putRaw(entries, undefined);
  }

  async deleteAll(keys: readonly string[]): Promise<void> {
    const changes: KvChange[] = [];
    for (const key of keys) {
      const entry = this.entries.get(key);
      if (!entry) continue;
      this.entries.delete(key);
      this.leases.get(entry.lease)?.keys.delete(key);
      changes.push({ type: 'delete', key });
    }
    this.notify(changes);
  }

  async getPrefix(prefix: string): Promise<KvEntry[]> {
    return this.snapshot(prefix);
  }

  async watchPrefix(prefix: string, onChanges: (changes: readonly KvChange[]) => void): Promise<KvWatch> {
    const watcher: Watcher = { prefix, onChanges, open: true };
    const initial = this.snapshot(prefix);
    this.watchers.add(watcher);
    return {
      initial,
      close: () => {
        watcher.open = false;
        this.watchers.delete(watcher);
      },
    };
  }

  async close(): Promise<void> {}

  private putRaw(entries: readonly KvEntry[], lease: LeaseState | undefined): void {
    const changes: KvChange[] = [];
    for (const { key, value } of entries) {
      const previous = this.entries.get(key);
      if (previous && previous.lease !== lease?.id) this.leases.get(previous.lease)?.keys.delete(key);
      this.entries.set(key, { value, lease: lease?.id ?? 0n });
      lease?.keys.add(key);
      changes.push({ type: 'put', key, value });
    }
    this.notify(changes);
  }

  private snapshot(prefix: string): KvEntry[] {
    const out: KvEntry[] = [];
    for (const [key, { value }] of this.entries) if (key.startsWith(prefix)) out.push({ key, value });
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private notify(changes: readonly KvChange[]): void {
    if (changes.length === 0) return;
    for (const watcher of this.watchers) {
      const mine = changes.filter((c) => c.key.startsWith(watcher.prefix));
      if (mine.length === 0) continue;
      queueMicrotask(() => {
        if (watcher.open) watcher.onChanges(mine);
      });
    }
  }
}
