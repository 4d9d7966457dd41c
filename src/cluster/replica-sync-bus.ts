/**
 * Router replica sync over the runtime's event plane: Dynamo's ActiveSequenceEvent as JSON on
 * `namespace.{ns}.component.{comp}.active_sequences_events` (one subject per worker pool). u64 fields (router and worker ids, sequence
 * hashes) travel as exact JSON integers and come back as bigint; messages that do not decode are
 * dropped, logged and counted.
 */
import { parseLosslessJson } from '../kv/codec.ts';
import { replicaSyncSubject } from '../protocol/wire.ts';
import type { ActiveSequenceEvent, ReplicaSyncBus } from '../routing/replica-sync.ts';
import { encodeJson } from '../runtime/codec.ts';
import type { MalformedCounter } from '../runtime/stats.ts';
import type { EventPlane } from '../runtime/types.ts';

const decoder = new TextDecoder('utf-8', { fatal: true });

export class EventPlaneReplicaSyncBus implements ReplicaSyncBus {
  readonly subject: string;

  constructor(
    private readonly events: EventPlane,
    namespace: string,
    component: string,
    private readonly malformed: MalformedCounter,
  ) {
    this.subject = replicaSyncSubject(namespace, component);
  }

  publish(event: ActiveSequenceEvent): void {
    this.events.publish(this.subject, encodeJson(event));
  }

  subscribe(handler: (event: ActiveSequenceEvent) => void): () => void {
    const subscription = this.events.subscribe(this.subject, (message) => {
      const event = decodeActiveSequenceEvent(message.payload);
      if (event === null) {
        this.malformed.drop(
          'event',
          'replica sync event',
          `${message.payload.length} bytes on ${this.subject}`,
        );
        return;
      }
      handler(event);
    });
    return () => subscription.unsubscribe();
  }
}

function smallInt(value: unknown): number | undefined {
  return typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

/** Decodes and normalises one message (u64 fields as bigint, counts as numbers); null when malformed. */
export function decodeActiveSequenceEvent(bytes: Uint8Array): ActiveSequenceEvent | null {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return null;
  }
  const parsed = parseLosslessJson(text);
  if (!parsed.ok || typeof parsed.value !== 'object' || parsed.value === null) return null;
  const m = parsed.value as Record<string, unknown>;
  const worker = m.worker as Record<string, unknown> | null | undefined;
  if (typeof m.request_id !== 'string' || typeof m.router_id !== 'bigint') return null;
  if (typeof worker !== 'object' || worker === null || typeof worker.worker_id !== 'bigint') return null;
  const dpRank = worker.dp_rank === undefined ? 0 : smallInt(worker.dp_rank);
  if (dpRank === undefined) return null;
  const base = {
    request_id: m.request_id,
    worker: { worker_id: worker.worker_id, dp_rank: dpRank },
    router_id: m.router_id,
  };
  if (m.data === 'Free' || m.data === 'MarkPrefillCompleted') return { ...base, data: m.data };
  const add = (m.data as Record<string, unknown> | null)?.AddRequest as Record<string, unknown> | undefined;
  if (typeof add !== 'object' || add === null) return null;
  const isl = smallInt(add.isl);
  const overlap = smallInt(add.overlap);
  const sequence = add.token_sequence;
  if (isl === undefined || overlap === undefined) return null;
  if (sequence !== null && !(Array.isArray(sequence) && sequence.every((h) => typeof h === 'bigint')))
    return null;
  return {
    ...base,
    data: { AddRequest: { token_sequence: sequence as bigint[] | null, isl, overlap } },
  };
}
