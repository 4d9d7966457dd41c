/**
 * Replica sync (Dynamo's `router_replica_sync`): router replicas share their load-tracking changes
 * (add / prefill completed / free) so each sees the same active load. Messages are Dynamo's
 * ActiveSequenceEvent; a replica ignores its own router id and applies the others'. The transport
 * is a ReplicaSyncBus (in-memory here; NATS on the event plane elsewhere).
 */
import type { WorkerId } from '../kv/events.ts';
import { isU64, packU64s, type U64, u64FromHalves, unpackU64s } from '../tokens/u64.ts';
import { log } from '../util/log.ts';
import type { KvRouter, SequenceEvent } from './kv-router.ts';
import { mathRandom, type RandomSource } from './random.ts';

export interface AddRequestData {
  /** Sequence hashes of the request's blocks; null when blocks are not tracked. */
  readonly token_sequence: readonly U64[] | null;
  readonly isl: number;
  /** Leading blocks cached on the chosen rank at decision time. */
  readonly overlap: number;
  readonly expected_output_tokens?: number;
}

export type ActiveSequenceEventData =
  | { readonly AddRequest: AddRequestData }
  | 'Free'
  | 'MarkPrefillCompleted';

/** Dynamo's ActiveSequenceEvent (PascalCase data tags), u64 fields as bigint. */
export interface ActiveSequenceEvent {
  readonly request_id: string;
  readonly worker: { readonly worker_id: WorkerId; readonly dp_rank: number };
  readonly data: ActiveSequenceEventData;
  readonly router_id: U64;
  readonly lora_name?: string;
}

export interface ReplicaSyncBus {
  publish(event: ActiveSequenceEvent): void | Promise<void>;
  /** Returns an unsubscribe function. */
  subscribe(handler: (event: ActiveSequenceEvent) => void): () => void;
}

/** Delivers every event to every subscriber, synchronously and in publish order. */
export class InMemoryReplicaSyncBus implements ReplicaSyncBus {
  private readonly handlers = new Set<(event: ActiveSequenceEvent) => void>();

  publish(event: ActiveSequenceEvent): void {
    for (const handler of [...this.handlers]) handler(event);
  }

  subscribe(handler: (event: ActiveSequenceEvent) => void): () => void {
    this.handlers.add(handler);
    return () => {
      this.handlers.delete(handler);
    };
  }
}

export interface ReplicaSyncOptions {
  /** This replica's id (u64); events carrying it are ignored on receipt. */
  readonly routerId: U64;
  /** Source of the stand-in hashes sent for blocks tracked without deduplication. */
  readonly random?: RandomSource;
}

export interface ReplicaSyncStats {
  readonly published: number;
  readonly applied: number;
  readonly ignoredOwn: number;
  readonly rejected: number;
  readonly publishErrors: number;
}

export class ReplicaSync {
  readonly routerId: U64;
  private readonly random: RandomSource;
  private readonly unsubscribe: () => void;
  private published = 0;
  private applied = 0;
  private ignoredOwn = 0;
  private rejected = 0;
  private publishErrors = 0;

  constructor(
    private readonly router: KvRouter,
    private readonly bus: ReplicaSyncBus,
    options: ReplicaSyncOptions,
  ) {
    this.routerId = options.routerId;
    this.random = options.random ?? mathRandom;
    router.setSequenceListener((event) => this.publish(event));
    this.unsubscribe = bus.subscribe((event) => this.receive(event));
  }

  close(): void {
    this.router.setSequenceListener(null);
    this.unsubscribe();
  }

  stats(): ReplicaSyncStats {
    return {
      published: this.published,
      applied: this.applied,
      ignoredOwn: this.ignoredOwn,
      rejected: this.rejected,
      publishErrors: this.publishErrors,
    };
  }

  private publish(event: SequenceEvent): void {
    const message: ActiveSequenceEvent = {
      request_id: event.requestId,
      worker: { worker_id: event.workerId, dp_rank: event.dpRank },
      data:
        event.kind === 'add'
          ? {
              AddRequest: {
                token_sequence: this.tokenSequence(event.blocks, event.unsharedBlocks),
                isl: event.isl,
                overlap: event.overlapBlocks,
              },
            }
          : event.kind === 'free'
            ? 'Free'
            : 'MarkPrefillCompleted',
      router_id: this.routerId,
    };
    this.published++;
    try {
      const pending = this.bus.publish(message);
      if (pending !== undefined) pending.catch((error: unknown) => this.onPublishError(error));
    } catch (error) {
      this.onPublishError(error);
    }
  }

  /**
   * Hashes for the wire: the tracked sequence hashes, or (as Dynamo does without KV reuse) random
   * ones that deduplicate with nothing, so receivers count the same number of blocks.
   */
  private tokenSequence(blocks: Uint32Array | null, unshared: number): U64[] | null {
    if (blocks !== null) return unpackU64s(blocks);
    if (unshared === 0) return null;
    const out = new Array<U64>(unshared);
    for (let i = 0; i < unshared; i++)
      out[i] = u64FromHalves((this.random() * 2 ** 32) >>> 0, (this.random() * 2 ** 32) >>> 0);
    return out;
  }

  private onPublishError(error: unknown): void {
    this.publishErrors++;
    log.warn({ err: error }, 'replica sync: publish failed');
  }

  private receive(message: ActiveSequenceEvent): void {
    try {
      if (message.router_id === this.routerId) {
        this.ignoredOwn++;
        return;
      }
      const event = toSequenceEvent(message);
      if (event !== null && this.router.applySequenceEvent(event)) this.applied++;
      else this.rejected++;
    } catch (error) {
      this.rejected++;
      log.warn({ err: error }, 'replica sync: bad event');
    }
  }
}

/** Validates a received message into a SequenceEvent, or null when malformed. */
function toSequenceEvent(message: ActiveSequenceEvent): SequenceEvent | null {
  if (typeof message !== 'object' || message === null) return null;
  const { request_id: requestId, worker, data } = message;
  if (typeof requestId !== 'string' || requestId.length === 0) return null;
  if (typeof worker !== 'object' || worker === null || typeof worker.worker_id !== 'bigint') return null;
  const workerId = worker.worker_id;
  const dpRank = worker.dp_rank ?? 0; // absent means rank 0, as on every Dynamo wire shape
  if (data === 'Free') return { kind: 'free', requestId, workerId, dpRank };
  if (data === 'MarkPrefillCompleted') return { kind: 'prefill_completed', requestId, workerId, dpRank };
  if (
    typeof data !== 'object' ||
    data === null ||
    typeof data.AddRequest !== 'object' ||
    data.AddRequest === null
  )
    return null;
  const { token_sequence: sequence, isl, overlap } = data.AddRequest;
  if (!Number.isSafeInteger(isl) || isl < 0 || !Number.isSafeInteger(overlap) || overlap < 0) return null;
  if (sequence !== null && (!Array.isArray(sequence) || sequence.some((h) => !isU64(h)))) return null;
  return {
    kind: 'add',
    requestId,
    workerId,
    dpRank,
    blocks: sequence === null || sequence.length === 0 ? null : packU64s(sequence),
    unsharedBlocks: 0,
    isl,
    overlapBlocks: overlap,
  };
}
