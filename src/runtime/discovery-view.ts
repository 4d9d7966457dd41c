/**
 * Turns discovery key changes into instance events: an instance key put is `added` (with the card
 * stored beside it, if any), a card put for a known instance repeats `added`, an instance key
 * delete is `removed`. Malformed keys and values are dropped with a log line and a counter.
 */
import { type ParsedDiscoveryKey, parseDiscoveryKey } from './discovery-keys.ts';
import { decodeInstance } from './instance-record.ts';
import type { KvChange, KvEntry } from './kv-store.ts';
import { decodeModelCard, type ModelCard } from './model-card.ts';
import type { MalformedCounter } from './stats.ts';
import {
  type DiscoveredInstance,
  type DiscoveryEvent,
  type EndpointPrefix,
  type Instance,
  prefixMatches,
} from './types.ts';

interface Slot {
  instance: Instance | undefined;
  card: ModelCard | undefined;
}

export class DiscoveryView {
  private readonly slots = new Map<string, Slot>();

  constructor(
    private readonly prefix: EndpointPrefix,
    private readonly malformed: MalformedCounter,
  ) {}

  /** Applies a batch; returns the events it causes, one per touched instance. */
  apply(changes: readonly KvChange[]): DiscoveryEvent[] {
    const touched = new Map<
      string,
      { before: Instance | undefined; cardBefore: ModelCard | undefined; cardChanged: boolean }
    >();
    for (const change of changes) {
      const parsed = parseDiscoveryKey(change.key);
      if (!parsed) {
        if (change.type === 'put') this.malformed.drop('discovery', 'key', change.key);
        continue;
      }
      if (!prefixMatches(this.prefix, parsed.endpoint)) continue;
      const id = slotId(parsed);
      let slot = this.slots.get(id);
      if (!touched.has(id))
        touched.set(id, { before: slot?.instance, cardBefore: slot?.card, cardChanged: false });
      if (change.type === 'delete') {
        if (!slot) continue;
        if (parsed.kind === 'instances') slot.instance = undefined;
        else slot.card = undefined;
        continue;
      }
      if (!slot) {
        slot = { instance: undefined, card: undefined };
        this.slots.set(id, slot);
      }
      if (parsed.kind === 'instances') {
        const instance = this.decodeInstance(parsed, change.key, change.value);
        if (instance) slot.instance = instance;
      } else {
        const decoded = decodeModelCard(change.value);
        if ('error' in decoded)
          this.malformed.drop('discovery', 'model card', `${change.key}: ${decoded.error}`);
        else {
          slot.card = decoded.card;
          touched.get(id)!.cardChanged = true;
        }
      }
    }
    const events: DiscoveryEvent[] = [];
    for (const [id, { before, cardBefore, cardChanged }] of touched) {
      const slot = this.slots.get(id);
      if (!slot) continue;
      const now = slot.instance;
      if (now && (now !== before || cardChanged))
        events.push({ type: 'added', instance: now, card: slot.card });
      else if (!now && before)
        events.push({ type: 'removed', instance: before, card: slot.card ?? cardBefore });
      if (!slot.instance && !slot.card) this.slots.delete(id);
    }
    return events;
  }

  /** Replaces the state by a fresh snapshot: what vanished is removed, the rest is (re)added. */
  resync(entries: readonly KvEntry[]): DiscoveryEvent[] {
    const present = new Set(entries.map((e) => e.key));
    const changes: KvChange[] = [];
    for (const [id, slot] of this.slots) {
      const keys = [slot.instance ? `v1/instances/${id}` : undefined, slot.card ? `v1/mdc/${id}` : undefined];
      for (const key of keys) if (key && !present.has(key)) changes.push({ type: 'delete', key });
    }
    for (const e of entries) changes.push({ type: 'put', key: e.key, value: e.value });
    return this.apply(changes);
  }

  applyEntries(entries: readonly KvEntry[]): DiscoveryEvent[] {
    return this.apply(entries.map((e) => ({ type: 'put', key: e.key, value: e.value })));
  }

  current(): DiscoveredInstance[] {
    const out: DiscoveredInstance[] = [];
    for (const slot of this.slots.values())
      if (slot.instance) out.push({ instance: slot.instance, card: slot.card });
    return out;
  }

  private decodeInstance(parsed: ParsedDiscoveryKey, key: string, value: Uint8Array): Instance | undefined {
    const decoded = decodeInstance(value);
    if ('error' in decoded) {
      this.malformed.drop('discovery', 'instance', `${key}: ${decoded.error}`);
      return undefined;
    }
    const { instance } = decoded;
    const e = instance.endpoint;
    if (
      instance.instanceId !== parsed.instanceId ||
      e.namespace !== parsed.endpoint.namespace ||
      e.component !== parsed.endpoint.component ||
      e.endpoint !== parsed.endpoint.endpoint
    ) {
      this.malformed.drop('discovery', 'instance', `${key}: record does not match its key`);
      return undefined;
    }
    return instance;
  }
}

/** `{ns}/{comp}/{ep}/{hex}`: the instance key and the card key are this under `v1/instances/`, `v1/mdc/`. */
function slotId(key: ParsedDiscoveryKey): string {
  const e = key.endpoint;
  return `${e.namespace}/${e.component}/${e.endpoint}/${key.instanceId.toString(16)}`;
}
