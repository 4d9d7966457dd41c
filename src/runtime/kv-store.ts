/**
 * The small slice of etcd that discovery needs: leases kept alive, atomic multi-key puts under a
 * lease, prefix reads and prefix watches that start from a consistent snapshot. Implemented
 * in-process (`local/kv-store.ts`) and over etcd (`etcd/kv-store.ts`), so both discovery variants
 * share one implementation (`kv-discovery.ts`).
 */

export interface KvEntry {
  readonly key: string;
  readonly value: Uint8Array;
}

export type KvChange =
  | { readonly type: 'put'; readonly key: string; readonly value: Uint8Array }
  | { readonly type: 'delete'; readonly key: string };

export interface StoreLease {
  readonly id: bigint;
  /** Called once when the lease is lost although it was kept alive (expired, revoked elsewhere). */
  onLost(listener: () => void): void;
  revoke(): Promise<void>;
  /** Stops the keepalive without revoking: the lease expires after its TTL (a simulated crash). */
  abandon(): void;
}

export interface KvWatch {
  /** The entries under the prefix when the watch started; changes after that snapshot follow. */
  readonly initial: readonly KvEntry[];
  close(): void;
}

export interface LeasedKvStore {
  grantLease(ttlSeconds: number): Promise<StoreLease>;
  /** Puts all entries in one transaction, attached to the lease. */
  putAll(entries: readonly KvEntry[], lease: StoreLease): Promise<void>;
  deleteAll(keys: readonly string[]): Promise<void>;
  getPrefix(prefix: string): Promise<KvEntry[]>;
  /**
   * Each call of onChanges carries the changes of one or more whole transactions, in order. When
   * the watch had to be restarted from a fresh snapshot (history compacted away while
   * disconnected), onResync gets that snapshot; changes after it follow as usual.
   */
  watchPrefix(
    prefix: string,
    onChanges: (changes: readonly KvChange[]) => void,
    onResync?: (entries: readonly KvEntry[]) => void,
  ): Promise<KvWatch>;
  close(): Promise<void>;
}
