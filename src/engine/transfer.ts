/**
 * Moving a prefilled prompt's KV state from a prefill worker to a decode worker (DESIGN §8).
 * The decode engine pulls from exactly the worker and rank named in the bootstrap info; the
 * in-process implementation serves embedded mode (every engine in one process), a distributed
 * one goes over the runtime's planes.
 */
import type { WorkerId } from '../kv/events.ts';
import type { BootstrapInfo } from '../protocol/generate.ts';
import { EngineError } from './errors.ts';

export interface PulledKv {
  /** Sequence hashes of the prompt's full blocks. */
  readonly blocks: readonly bigint[];
  /** The prompt the KV belongs to. */
  readonly tokens: readonly number[];
}

export interface KvTransfer {
  /** Claims the room's KV from the named prefill worker and rank; rejects with an EngineError. */
  pull(info: BootstrapInfo, signal?: AbortSignal): Promise<PulledKv>;
}

/** What a prefill engine offers to a transfer: claim one room of one of its ranks. */
export interface KvSource {
  claimRoom(room: number, dpRank: number, signal?: AbortSignal): Promise<PulledKv>;
}

/** Transfer between engines of one process, keyed by prefill worker id. */
export class InProcessKvTransfer implements KvTransfer {
  private readonly sources = new Map<WorkerId, KvSource>();

  /** Makes `source` reachable as `workerId`; returns the unregister function. */
  register(workerId: WorkerId, source: KvSource): () => void {
    if (this.sources.has(workerId)) throw new Error(`prefill worker ${workerId} is already registered`);
    this.sources.set(workerId, source);
    return () => {
      if (this.sources.get(workerId) === source) this.sources.delete(workerId);
    };
  }

  pull(info: BootstrapInfo, signal?: AbortSignal): Promise<PulledKv> {
    const source = this.sources.get(info.prefillWorkerId);
    if (source === undefined)
      return Promise.reject(
        new EngineError(
          'ENGINE_BOOTSTRAP_UNKNOWN_WORKER',
          `no prefill worker ${info.prefillWorkerId} to pull room ${info.room} from`,
        ),
      );
    return source.claimRoom(info.room, info.prefillDpRank, signal);
  }
}
