import { describe, expect, it } from 'vitest';
import { instanceKey, modelCardKey } from '../../src/runtime/discovery-keys.ts';
import { DiscoveryView } from '../../src/runtime/discovery-view.ts';
import { encodeInstance } from '../../src/runtime/instance-record.ts';
import { encodeModelCard, type ModelCard } from '../../src/runtime/model-card.ts';
import { MalformedCounter } from '../../src/runtime/stats.ts';
import { endpointId, type Instance } from '../../src/runtime/types.ts';

const ep = endpointId('kvgate', 'backend', 'generate');
const card: ModelCard = {
  modelName: 'm',
  role: 'aggregated',
  kvBlockSize: 16,
  totalKvBlocks: 100,
  maxNumSeqs: 8,
  maxNumBatchedTokens: 512,
  dataParallelSize: 1,
};
const instance = (id: bigint): Instance => ({ endpoint: ep, instanceId: id, transport: { kind: 'local' } });
const put = (id: bigint, withCard = false) => [
  { key: instanceKey(ep, id), value: encodeInstance(instance(id)) },
  ...(withCard ? [{ key: modelCardKey(ep, id), value: encodeModelCard(card) }] : []),
];

describe('DiscoveryView', () => {
  it('emits one event per instance per batch, with the card written in the same batch', () => {
    const view = new DiscoveryView({ namespace: 'kvgate' }, new MalformedCounter());
    const events = view.applyEntries([...put(1n, true), ...put(2n)]);
    expect(events.map((e) => [e.type, e.instance.instanceId, e.card?.modelName])).toEqual([
      ['added', 1n, 'm'],
      ['added', 2n, undefined],
    ]);
    const removed = view.apply([
      { type: 'delete', key: modelCardKey(ep, 1n) },
      { type: 'delete', key: instanceKey(ep, 1n) },
    ]);
    expect(removed.map((e) => [e.type, e.instance.instanceId, e.card?.modelName])).toEqual([
      ['removed', 1n, 'm'],
    ]);
  });

  it('repeats added when a known instance gets a new card, ignores cards without an instance', () => {
    const view = new DiscoveryView({ namespace: 'kvgate' }, new MalformedCounter());
    view.applyEntries(put(1n));
    const updated = view.apply([{ type: 'put', key: modelCardKey(ep, 1n), value: encodeModelCard(card) }]);
    expect(updated.map((e) => [e.type, e.card?.modelName])).toEqual([['added', 'm']]);
    expect(view.apply([{ type: 'put', key: modelCardKey(ep, 9n), value: encodeModelCard(card) }])).toEqual(
      [],
    );
  });

  it('resync removes what vanished from the snapshot and re-adds what is there', () => {
    const view = new DiscoveryView({ namespace: 'kvgate' }, new MalformedCounter());
    view.applyEntries([...put(1n, true), ...put(2n)]);
    const events = view.resync([...put(2n), ...put(3n)]);
    expect(events.map((e) => [e.type, e.instance.instanceId])).toEqual([
      ['removed', 1n],
      ['added', 2n],
      ['added', 3n],
    ]);
    expect(view.current().map((d) => d.instance.instanceId)).toEqual([2n, 3n]);
  });

  it('ignores other namespaces without counting them as malformed', () => {
    const counter = new MalformedCounter();
    const view = new DiscoveryView({ namespace: 'other' }, counter);
    expect(view.applyEntries(put(1n))).toEqual([]);
    expect(counter.counts.discovery).toBe(0);
  });
});
