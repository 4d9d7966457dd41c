import { describe, expect, it, vi } from 'vitest';
import { encodeJson } from '../../src/runtime/codec.ts';
import { LocalCluster, type LocalRuntime } from '../../src/runtime/local/cluster.ts';
import { PushQueue, pushCall, pushCallValue } from '../../src/runtime/push.ts';
import { type DiscoveryEvent, endpointId, type RequestPlane, type Runtime } from '../../src/runtime/types.ts';
import { log } from '../../src/util/log.ts';
import { type PlaneFixture, runPlaneConformance } from './planes.conformance.ts';

/** The local cluster as the conformance suite drives it; `expose` picks what a runtime offers. */
function localPlanes(expose: (runtime: LocalRuntime) => Runtime = (runtime) => runtime) {
  return async (): Promise<PlaneFixture> => {
    const cluster = new LocalCluster();
    const originals = new WeakMap<Runtime, LocalRuntime>();
    return {
      createRuntime: async (options) => {
        const runtime = cluster.runtime(options);
        const exposed = expose(runtime);
        originals.set(exposed, runtime);
        return exposed;
      },
      crash: (runtime: Runtime) => originals.get(runtime)!.simulateCrash(),
      shortTtlSeconds: 0.3,
      crashDetectMs: 1_000,
      streamLossDetectMs: 1_000,
      garbage: {
        discovery: async (key, value) => cluster.store.putUnleased([{ key, value }]),
        event: async (subject, bytes) => cluster.events.publish(subject, bytes),
      },
      teardown: async () => {},
    };
  };
}

runPlaneConformance('local', localPlanes(), { requestWire: false });

/**
 * The push form of the local plane (`callPush`, what the router uses in process) must behave like
 * `call`: the same suite runs with every call made through it and read back through a PushQueue.
 */
function throughPush(plane: RequestPlane): RequestPlane {
  return {
    transportFor: (endpoint, instanceId) => plane.transportFor(endpoint, instanceId),
    serve: (endpoint, instanceId, handler) => plane.serve(endpoint, instanceId, handler),
    call: (endpoint, instanceId, payload, options) => ({
      [Symbol.asyncIterator]: () => {
        const queue = new PushQueue<Uint8Array>();
        const handle = pushCall(plane, endpoint, instanceId, payload, queue, options);
        queue.onReturn = () => handle.cancel();
        return queue;
      },
    }),
    close: () => plane.close(),
  };
}

runPlaneConformance(
  'local, calls in push form',
  localPlanes((runtime) => ({
    discovery: runtime.discovery,
    requests: throughPush(runtime.requests),
    events: runtime.events,
    malformed: runtime.malformed,
    close: () => runtime.close(),
  })),
  { requestWire: false },
);

/**
 * Payloads handed over as values (`callPushValue`, what the router uses for generate requests) must
 * behave the same too: every call's bytes travel inside a value, and every handler is also served
 * with a value handler that takes such values.
 */
interface WrappedPayload {
  readonly bytes: Uint8Array;
}
const unwrap = (value: WrappedPayload) => value.bytes;

function throughPushValues(plane: RequestPlane): RequestPlane {
  return {
    transportFor: (endpoint, instanceId) => plane.transportFor(endpoint, instanceId),
    serve: (endpoint, instanceId, handler) =>
      plane.serve(endpoint, instanceId, handler, {
        valueHandler: (value, ctx) => handler((value as WrappedPayload).bytes, ctx),
      }),
    call: (endpoint, instanceId, payload, options) => ({
      [Symbol.asyncIterator]: () => {
        const queue = new PushQueue<Uint8Array>();
        const value: WrappedPayload = { bytes: payload };
        const handle = pushCallValue(plane, endpoint, instanceId, value, unwrap, queue, options);
        queue.onReturn = () => handle.cancel();
        return queue;
      },
    }),
    close: () => plane.close(),
  };
}

runPlaneConformance(
  'local, calls in push form with value payloads',
  localPlanes((runtime) => ({
    discovery: runtime.discovery,
    requests: throughPushValues(runtime.requests),
    events: runtime.events,
    malformed: runtime.malformed,
    close: () => runtime.close(),
  })),
  { requestWire: false },
);

describe('value payloads on the local plane', () => {
  const setup = async (valueHandler?: (value: unknown) => AsyncIterable<Uint8Array> | undefined) => {
    const cluster = new LocalCluster();
    const runtime = cluster.runtime();
    const ep = endpointId('kvgate', 'backend', 'generate');
    const seen: { bytes: string[]; values: unknown[] } = { bytes: [], values: [] };
    await runtime.requests.serve(
      ep,
      7n,
      async function* (payload) {
        seen.bytes.push(new TextDecoder().decode(payload));
        yield payload;
      },
      valueHandler === undefined
        ? undefined
        : {
            valueHandler: (value) => {
              seen.values.push(value);
              return valueHandler(value);
            },
          },
    );
    const call = async (value: { text: string }) => {
      const queue = new PushQueue<Uint8Array>();
      pushCallValue(runtime.requests, ep, 7n, value, (v) => new TextEncoder().encode(v.text), queue);
      const frames: string[] = [];
      for await (const frame of queue) frames.push(new TextDecoder().decode(frame));
      return frames;
    };
    return { seen, call, close: () => runtime.close() };
  };

  it('a value handler gets the very value, and the bytes are never encoded', async () => {
    const { seen, call, close } = await setup(async function* (value) {
      yield new TextEncoder().encode(`value:${(value as { text: string }).text}`);
    });
    const value = { text: 'hello' };
    expect(await call(value)).toEqual(['value:hello']);
    expect(seen.values).toEqual([value]);
    expect(seen.values[0]).toBe(value);
    expect(seen.bytes).toEqual([]);
    await close();
  });

  it('a value the value handler does not take, or a handler without one, gets the encoded bytes', async () => {
    const refusing = await setup(() => undefined);
    expect(await refusing.call({ text: 'refused' })).toEqual(['refused']);
    expect(refusing.seen.values).toHaveLength(1);
    expect(refusing.seen.bytes).toEqual(['refused']);
    await refusing.close();
    const plain = await setup();
    expect(await plain.call({ text: 'bytes' })).toEqual(['bytes']);
    expect(plain.seen.bytes).toEqual(['bytes']);
    await plain.close();
  });
});

describe('push calls start on a later tick', () => {
  it('calls made in one tick start together after it, in one reaction, in order; one cancelled first never runs', async () => {
    const runtime = new LocalCluster().runtime();
    const ep = endpointId('kvgate', 'backend', 'generate');
    const started: string[] = [];
    await runtime.requests.serve(ep, 7n, (payload) => {
      started.push(new TextDecoder().decode(payload));
      return (async function* () {
        yield payload;
      })();
    });
    const call = (text: string) => {
      const queue = new PushQueue<Uint8Array>();
      const handle = pushCall(runtime.requests, ep, 7n, new TextEncoder().encode(text), queue);
      return { queue, handle };
    };
    const a = call('a');
    const cancelled = call('cancelled');
    // A reaction queued between two calls runs after both started: they share one reaction.
    Promise.resolve().then(() => started.push('between'));
    const b = call('b');
    cancelled.handle.cancel();
    expect(started).toEqual([]);
    await Promise.resolve();
    expect(started).toEqual(['a', 'b', 'between']);
    for (const { queue } of [a, b]) expect((await queue.next()).done).toBe(false);
    await runtime.close();
  });

  it('a caller whose sink throws when its handler fails is logged; the other calls start, nothing is thrown', async () => {
    const runtime = new LocalCluster().runtime();
    const ep = endpointId('kvgate', 'backend', 'generate');
    await runtime.requests.serve(ep, 7n, (payload) => {
      if (new TextDecoder().decode(payload) === 'bad') throw new Error('handler refused');
      return (async function* () {
        yield payload;
      })();
    });
    const logged = vi.spyOn(log, 'error').mockImplementation(() => undefined);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const sinkFailure = new Error('sink exploded');
      const throwingSink = {
        push() {},
        end() {},
        fail() {
          throw sinkFailure;
        },
      };
      pushCall(runtime.requests, ep, 7n, new TextEncoder().encode('bad'), throwingSink);
      const queue = new PushQueue<Uint8Array>();
      pushCall(runtime.requests, ep, 7n, new TextEncoder().encode('good'), queue);
      expect((await queue.next()).done).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(unhandled).toEqual([]);
      expect(logged).toHaveBeenCalledTimes(1);
      expect(logged.mock.calls[0][0]).toEqual({ err: sinkFailure });
    } finally {
      process.off('unhandledRejection', onUnhandled);
      logged.mockRestore();
      await runtime.close();
    }
  });
});

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
