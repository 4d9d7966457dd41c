import { describe, expect, it } from 'vitest';
import { encodeJson } from '../../src/runtime/codec.ts';
import { LocalCluster, type LocalRuntime } from '../../src/runtime/local/cluster.ts';
import { type DiscoveryEvent, endpointId, type Runtime } from '../../src/runtime/types.ts';
import { runPlaneConformance } from './planes.conformance.ts';

runPlaneConformance(
  'local',
  async () => {
    const cluster = new LocalCluster();
    return {
      createRuntime: async (options) => cluster.runtime(options),
      crash: (runtime: Runtime) => (runtime as LocalRuntime).simulateCrash(),
      shortTtlSeconds: 0.3,
      crashDetectMs: 1_000,
      streamLossDetectMs: 1_000,
      garbage: {
        discovery: async (key, value) => cluster.store.putUnleased([{ key, value }]),
        event: async (subject, bytes) => cluster.events.publish(subject, bytes),
      },
      teardown: async () => {},
    };
  },
  { requestWire: false },
);

describe('local runtime specifics', () => {
  it('expiring a lease from outside removes its instances, then the live runtime registers again', async () => {
    const cluster = new LocalCluster();
    const worker = cluster.runtime();
    const router = cluster.runtime();
    const ep = endpointId('kvgate', 'backend', 'generate');
    const reg = await worker.discovery.register({ endpoint: ep });
    const events: DiscoveryEvent[] = [];
    await router.discovery.watch({ namespace: 'kvgate' }, (e) => events.push(e));
    expect(cluster.store.expireLease(reg.instance.instanceId)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(events.map((e) => e.type)).toEqual(['added', 'removed', 'added']);
    expect(events[2].instance.instanceId).toBe(reg.instance.instanceId);
    await worker.close();
    await router.close();
  });

  it('passes payloads by reference (zero copy)', async () => {
    const cluster = new LocalCluster();
    const rt = cluster.runtime();
    const ep = endpointId('kvgate', 'backend', 'generate');
    const payload = encodeJson({ prompt: 'hi' });
    const reply = new Uint8Array([1, 2, 3]);
    let seen: Uint8Array | undefined;
    await rt.requests.serve(ep, 1n, async function* (p) {
      seen = p;
      yield reply;
    });
    const out: Uint8Array[] = [];
    for await (const c of rt.requests.call(ep, 1n, payload)) out.push(c);
    expect(seen).toBe(payload);
    expect(out[0]).toBe(reply);
    await rt.close();
  });
});
