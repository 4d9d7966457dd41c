/**
 * One behaviour suite for every runtime implementation (hono's router `runTest` pattern): each
 * implementation's test file calls runPlaneConformance with a fixture that makes runtimes, crashes
 * them and writes raw garbage where the planes read.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJson, encodeJson } from '../../src/runtime/codec.ts';
import { subscribeDecoded } from '../../src/runtime/decoded-events.ts';
import { instanceKey, modelCardKey } from '../../src/runtime/discovery-keys.ts';
import { watchDiscovery } from '../../src/runtime/discovery-stream.ts';
import { isRuntimeError, RemoteError, type RuntimeErrorCode } from '../../src/runtime/errors.ts';
import { encodeInstance } from '../../src/runtime/instance-record.ts';
import type { ModelCard } from '../../src/runtime/model-card.ts';
import {
  type DiscoveryEvent,
  type EndpointId,
  endpointId,
  type InstanceId,
  type RequestHandler,
  type Runtime,
} from '../../src/runtime/types.ts';
import { CancelSource } from '../../src/util/cancel.ts';

export interface PlaneFixture {
  createRuntime(options?: { leaseTtlSeconds?: number }): Promise<Runtime>;
  /** The process dies: no goodbye on any plane, its lease is no longer kept alive. */
  crash(runtime: Runtime): Promise<void>;
  /** Short lease TTL (seconds) for crash tests, and how long until such an instance must be gone. */
  readonly shortTtlSeconds: number;
  readonly crashDetectMs: number;
  /** How long a caller may take to notice that its server died mid-stream. */
  readonly streamLossDetectMs: number;
  /** Raw writes that bypass the planes' encoders. `request` is absent when there is no wire. */
  readonly garbage: {
    discovery(key: string, value: Uint8Array): Promise<void>;
    request?(endpoint: EndpointId, instanceId: InstanceId, bytes: Uint8Array, reply?: string): Promise<void>;
    event(subject: string, bytes: Uint8Array): Promise<void>;
  };
  teardown(): Promise<void>;
}

const CARD: ModelCard = {
  modelName: 'mock-model',
  role: 'prefill',
  kvBlockSize: 16,
  totalKvBlocks: 8192,
  maxNumSeqs: 256,
  maxNumBatchedTokens: 8192,
  dataParallelSize: 4,
  bootstrap: { host: '10.0.0.7', port: 8998 },
  runtimeConfig: { engine: 'mock', hashSeed: 18446744073709551557n, speedup: 1.5, tags: ['a', 'b'] },
};

const utf8 = new TextEncoder();

let nsCounter = 0;
function uniqueNamespace(): string {
  return `t${process.pid.toString(36)}${Date.now().toString(36)}${(nsCounter++).toString(36)}`;
}

function tokenChunk(index: number): Uint8Array {
  return encodeJson({ index, token: 1000 + index });
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}

async function expectCode(promise: Promise<unknown>, code: RuntimeErrorCode): Promise<unknown> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRuntimeError(error), `expected ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
  return error;
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function abortedPromise(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

async function waitForSignal(seen: AbortSignal[]): Promise<AbortSignal> {
  await waitFor(() => seen.length > 0, 5_000, 'the handler to start');
  return seen[0];
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface PlaneCapabilities {
  /** The request plane has a wire that garbage can be written to (not the in-process plane). */
  readonly requestWire: boolean;
}

export function runPlaneConformance(
  name: string,
  setup: () => Promise<PlaneFixture>,
  capabilities: PlaneCapabilities,
): void {
  describe(`runtime planes: ${name}`, () => {
    let fx: PlaneFixture;
    const runtimes: Runtime[] = [];
    const newRuntime = async (options?: { leaseTtlSeconds?: number }) => {
      const runtime = await fx.createRuntime(options);
      runtimes.push(runtime);
      return runtime;
    };

    beforeAll(async () => {
      fx = await setup();
    });
    afterAll(async () => {
      await Promise.allSettled(runtimes.map((r) => r.close()));
      await fx?.teardown();
    });

    describe('discovery', () => {
      it('delivers current instances first, then added and removed, with model cards', async () => {
        const ns = uniqueNamespace();
        const worker = await newRuntime();
        const router = await newRuntime();
        const generate = endpointId(ns, 'backend', 'generate');
        const early = await worker.discovery.register({ endpoint: generate }, CARD);
        expect(early.instance.instanceId).toBe(await worker.discovery.primaryInstanceId());

        const events: DiscoveryEvent[] = [];
        const watch = await router.discovery.watch({ namespace: ns, component: 'backend' }, (e) =>
          events.push(e),
        );
        expect(events.map((e) => e.type)).toEqual(['added']);
        expect(events[0].instance).toEqual(early.instance);
        expect(events[0].card).toEqual(CARD);

        const other = await newRuntime();
        const late = await other.discovery.register({ endpoint: generate });
        const ignored = await other.discovery.register({ endpoint: endpointId(ns, 'prefill', 'generate') });
        await waitFor(() => events.length >= 2, 5_000, 'added event');
        expect(events[1].type).toBe('added');
        expect(events[1].instance.instanceId).toBe(late.instance.instanceId);
        expect(events[1].card).toBeUndefined();

        const listed = await router.discovery.list({ namespace: ns });
        expect(listed.map((d) => d.instance.instanceId).sort()).toEqual(
          [early.instance.instanceId, late.instance.instanceId, ignored.instance.instanceId].sort(),
        );
        expect(listed.find((d) => d.instance.instanceId === early.instance.instanceId)?.card).toEqual(CARD);

        await early.deregister();
        await waitFor(() => events.length >= 3, 5_000, 'removed event');
        expect(events[2]).toMatchObject({ type: 'removed', card: CARD });
        expect(events[2].instance.instanceId).toBe(early.instance.instanceId);
        expect(events).toHaveLength(3);
        watch.close();
      });

      it('watches as an async iterable until aborted', async () => {
        const ns = uniqueNamespace();
        const ep = endpointId(ns, 'backend', 'generate');
        const first = await (await newRuntime()).discovery.register({ endpoint: ep });
        const watcher = await newRuntime();
        const controller = new AbortController();
        const seen: DiscoveryEvent[] = [];
        const loop = (async () => {
          for await (const event of watchDiscovery(watcher.discovery, { namespace: ns }, controller.signal)) {
            seen.push(event);
            if (seen.length === 2) controller.abort();
          }
        })();
        await waitFor(() => seen.length === 1, 5_000, 'current state');
        const second = await (await newRuntime()).discovery.register({ endpoint: ep });
        await withTimeout(loop, 5_000, 'the loop to end');
        expect(seen.map((e) => [e.type, e.instance.instanceId])).toEqual([
          ['added', first.instance.instanceId],
          ['added', second.instance.instanceId],
        ]);
      });

      it('round-trips model cards, including u64 values in the runtime config', async () => {
        const ns = uniqueNamespace();
        const worker = await newRuntime();
        await worker.discovery.register(
          { endpoint: endpointId(ns, 'prefill', 'generate'), instanceId: 0xfedcba9876543210n },
          CARD,
        );
        const [found] = await (await newRuntime()).discovery.list({ namespace: ns, component: 'prefill' });
        expect(found.instance.instanceId).toBe(0xfedcba9876543210n);
        expect(found.card).toEqual(CARD);
        expect(typeof found.card?.runtimeConfig?.hashSeed).toBe('bigint');
      });

      it('rejects an invalid card at registration', async () => {
        const worker = await newRuntime();
        await expect(
          worker.discovery.register(
            { endpoint: endpointId(uniqueNamespace(), 'backend', 'generate') },
            { ...CARD, kvBlockSize: 0 },
          ),
        ).rejects.toThrow(/invalid model card/);
      });

      it('drops the instances of a crashed runtime once its lease runs out', async () => {
        const ns = uniqueNamespace();
        const doomed = await newRuntime({ leaseTtlSeconds: fx.shortTtlSeconds });
        const survivor = await newRuntime();
        const generate = endpointId(ns, 'backend', 'generate');
        const dead = await doomed.discovery.register({ endpoint: generate }, CARD);
        const alive = await survivor.discovery.register({ endpoint: generate });
        const events: DiscoveryEvent[] = [];
        const watcher = await newRuntime();
        await watcher.discovery.watch({ namespace: ns }, (e) => events.push(e));
        expect(events.filter((e) => e.type === 'added')).toHaveLength(2);

        const crashedAt = Date.now();
        await fx.crash(doomed);
        await waitFor(() => events.some((e) => e.type === 'removed'), fx.crashDetectMs, 'lease expiry');
        const removed = events.filter((e) => e.type === 'removed');
        expect(removed).toHaveLength(1);
        expect(removed[0].instance.instanceId).toBe(dead.instance.instanceId);
        expect(removed[0].card).toEqual(CARD);
        // A kept-alive lease outlives its TTL.
        expect(Date.now() - crashedAt).toBeGreaterThanOrEqual(fx.shortTtlSeconds * 1000 * 0.5);
        const listed = await watcher.discovery.list({ namespace: ns });
        expect(listed.map((d) => d.instance.instanceId)).toEqual([alive.instance.instanceId]);
      });

      it('drops malformed records with a counter and keeps watching', async () => {
        const ns = uniqueNamespace();
        const watcher = await newRuntime();
        const events: DiscoveryEvent[] = [];
        await watcher.discovery.watch({ namespace: ns }, (e) => events.push(e));
        const ep = endpointId(ns, 'backend', 'generate');
        const before = watcher.malformed.counts.discovery;
        await fx.garbage.discovery(instanceKey(ep, 0xaan), utf8.encode('{not json'));
        await fx.garbage.discovery(
          instanceKey(ep, 0xbbn),
          encodeInstance({ endpoint: ep, instanceId: 0xccn, transport: { kind: 'local' } }),
        );
        await fx.garbage.discovery(instanceKey(ep, 0xddn), encodeJson({ namespace: ns, instance_id: -1 }));
        await fx.garbage.discovery(modelCardKey(ep, 0xeen), encodeJson({ model_name: 'x', role: 'boss' }));
        await fx.garbage.discovery(`v1/instances/${ns}/backend/generate/not-hex`, utf8.encode('{}'));
        const good = await (await newRuntime()).discovery.register({ endpoint: ep });
        await waitFor(() => events.length > 0, 5_000, 'the valid instance');
        expect(events).toHaveLength(1);
        expect(events[0].instance.instanceId).toBe(good.instance.instanceId);
        expect(watcher.malformed.counts.discovery - before).toBe(5);
        const listed = await watcher.discovery.list({ namespace: ns });
        expect(listed.map((d) => d.instance.instanceId)).toEqual([good.instance.instanceId]);
      });
    });

    describe('request plane', () => {
      const serveTokens = (
        count: number,
        opts: { failAfter?: number; delayMs?: number; seen?: AbortSignal[] } = {},
      ): RequestHandler =>
        async function* (payload, { signal }) {
          opts.seen?.push(signal);
          const request = decodeJson(payload) as { prompt: string };
          expect(request.prompt).toBe('hello');
          for (let i = 0; i < count; i++) {
            if (opts.failAfter === i) throw new Error(`engine exploded at token ${i}`);
            if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
            if (signal.aborted) return;
            yield tokenChunk(i);
          }
        };

      async function served(handler: RequestHandler) {
        const server = await newRuntime();
        const client = await newRuntime();
        const ep = endpointId(uniqueNamespace(), 'backend', 'generate');
        const id = await server.discovery.primaryInstanceId();
        const handle = await server.requests.serve(ep, id, handler);
        return { server, client, ep, id, handle };
      }

      it('streams 64 tokens in order and ends the stream', async () => {
        const { client, ep, id } = await served(serveTokens(64));
        for (let round = 0; round < 3; round++) {
          const chunks = await collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' })));
          expect(chunks.map((c) => decodeJson(c))).toEqual(
            Array.from({ length: 64 }, (_, i) => ({ index: i, token: 1000 + i })),
          );
        }
      });

      it('runs concurrent calls independently', async () => {
        const { client, ep, id } = await served(serveTokens(20, { delayMs: 1 }));
        const results = await Promise.all(
          Array.from({ length: 8 }, () =>
            collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))),
          ),
        );
        for (const chunks of results)
          expect(chunks.map((c) => (decodeJson(c) as { index: number }).index)).toEqual(
            Array.from({ length: 20 }, (_, i) => i),
          );
      });

      it('surfaces a handler error as RemoteError after the chunks sent before it', async () => {
        const { client, ep, id } = await served(serveTokens(64, { failAfter: 3 }));
        const got: unknown[] = [];
        const error = await (async () => {
          for await (const c of client.requests.call(ep, id, encodeJson({ prompt: 'hello' })))
            got.push(decodeJson(c));
        })().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(got).toHaveLength(3);
        expect(error).toBeInstanceOf(RemoteError);
        expect((error as RemoteError).message).toBe('engine exploded at token 3');
      });

      it('fails fast when nobody serves the instance', async () => {
        const client = await newRuntime();
        const ep = endpointId(uniqueNamespace(), 'backend', 'generate');
        await expectCode(collect(client.requests.call(ep, 0x1234n, encodeJson({}))), 'RUNTIME_NO_RESPONDERS');
      });

      it('caller abort aborts the handler and throws RUNTIME_CANCELLED', async () => {
        const seen: AbortSignal[] = [];
        const { client, ep, id } = await served(serveTokens(10_000, { delayMs: 2, seen }));
        const controller = new AbortController();
        let received = 0;
        const run = (async () => {
          for await (const _ of client.requests.call(ep, id, encodeJson({ prompt: 'hello' }), {
            signal: controller.signal,
          })) {
            if (++received === 3) controller.abort();
          }
        })();
        await expectCode(run, 'RUNTIME_CANCELLED');
        expect(received).toBe(3);
        await withTimeout(abortedPromise(seen[0]), 3_000, 'handler abort');
      });

      it('a CancelSource cancels a call as an AbortSignal does', async () => {
        const seen: AbortSignal[] = [];
        const { client, ep, id } = await served(serveTokens(10_000, { delayMs: 2, seen }));
        const cancel = new CancelSource();
        let received = 0;
        const run = (async () => {
          for await (const _ of client.requests.call(ep, id, encodeJson({ prompt: 'hello' }), {
            signal: cancel,
          })) {
            if (++received === 3) cancel.abort();
          }
        })();
        await expectCode(run, 'RUNTIME_CANCELLED');
        expect(received).toBe(3);
        await withTimeout(abortedPromise(seen[0]), 3_000, 'handler abort');
      });

      it('a call given an already cancelled CancelSource fails as cancelled', async () => {
        const { client, ep, id } = await served(serveTokens(3));
        const cancel = new CancelSource();
        cancel.abort();
        const run = (async () => {
          for await (const _ of client.requests.call(ep, id, encodeJson({ prompt: 'hello' }), {
            signal: cancel,
          }));
        })();
        await expectCode(run, 'RUNTIME_CANCELLED');
      });

      it('breaking out of the loop cancels the handler', async () => {
        const seen: AbortSignal[] = [];
        const { client, ep, id } = await served(serveTokens(10_000, { delayMs: 2, seen }));
        let received = 0;
        for await (const _ of client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))) {
          if (++received === 2) break;
        }
        await withTimeout(abortedPromise(seen[0]), 3_000, 'handler abort');
      });

      it('times out a call and cancels the handler', async () => {
        const seen: AbortSignal[] = [];
        const { client, ep, id } = await served(serveTokens(10_000, { delayMs: 20, seen }));
        await expectCode(
          collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' }), { timeoutMs: 150 })),
          'RUNTIME_TIMEOUT',
        );
        await withTimeout(abortedPromise(seen[0]), 3_000, 'handler abort');
      });

      it('stopping the server cancels running calls and refuses new ones', async () => {
        const seen: AbortSignal[] = [];
        const { client, ep, id, handle } = await served(serveTokens(10_000, { delayMs: 2, seen }));
        let received = 0;
        const run = (async () => {
          for await (const _ of client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))) {
            if (++received === 2) void handle.stop();
          }
        })();
        await expectCode(run, 'RUNTIME_SERVER_CANCELLED');
        await withTimeout(abortedPromise(seen[0]), 3_000, 'handler abort');
        await expectCode(
          collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))),
          'RUNTIME_NO_RESPONDERS',
        );
      });

      it('a graceful stop lets running calls finish and turns new ones away', async () => {
        const { client, ep, id, handle } = await served(serveTokens(40, { delayMs: 5 }));
        const running = collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' })));
        await new Promise((r) => setTimeout(r, 30));
        const stopping = handle.stop({ graceMs: 5_000 });
        await new Promise((r) => setTimeout(r, 20));
        await expectCode(
          collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))),
          'RUNTIME_SERVER_CANCELLED',
        );
        expect(await running).toHaveLength(40);
        await stopping;
        await expectCode(
          collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))),
          'RUNTIME_NO_RESPONDERS',
        );
      });

      it('a graceful stop cancels what is still running when the grace period ends', async () => {
        const seen: AbortSignal[] = [];
        const { client, ep, id, handle } = await served(serveTokens(100_000, { delayMs: 5, seen }));
        const outcome = expectCode(
          collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))),
          'RUNTIME_SERVER_CANCELLED',
        );
        await waitForSignal(seen);
        await handle.stop({ graceMs: 100 });
        await outcome;
        expect(seen[0].aborted).toBe(true);
      });

      it('a server that dies mid-stream fails the caller within a bounded time', async () => {
        const { server, client, ep, id } = await served(serveTokens(10_000, { delayMs: 5 }));
        let received = 0;
        let diedAt = 0;
        const run = (async () => {
          for await (const _ of client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))) {
            if (++received === 3) {
              diedAt = Date.now();
              void fx.crash(server);
            }
          }
        })();
        await withTimeout(
          expectCode(run, 'RUNTIME_STREAM_LOST'),
          fx.streamLossDetectMs + 2_000,
          'stream loss',
        );
        expect(Date.now() - diedAt).toBeLessThanOrEqual(fx.streamLossDetectMs);
      });

      it('a caller that dies mid-stream gets its handler aborted', async () => {
        const seen: AbortSignal[] = [];
        const { client, ep, id } = await served(serveTokens(100_000, { delayMs: 5, seen }));
        let received = 0;
        const reading = (async () => {
          for await (const _ of client.requests.call(ep, id, encodeJson({ prompt: 'hello' }))) {
            if (++received === 3) void fx.crash(client);
          }
        })().catch(() => {});
        await withTimeout(
          abortedPromise(await waitForSignal(seen)),
          fx.streamLossDetectMs + 2_000,
          'handler abort',
        );
        await reading;
      });

      // Only where there is a wire to write garbage to (not defined, rather than skipped, elsewhere).
      if (capabilities.requestWire)
        it('drops malformed request frames with a counter and keeps serving', async () => {
          const garbage = fx.garbage.request!;
          const { server, client, ep, id } = await served(serveTokens(4));
          const before = server.malformed.counts.request;
          await garbage(ep, id, utf8.encode('garbage'), 'garbage.reply');
          await garbage(ep, id, new Uint8Array([1, 2, 3]));
          await garbage(ep, id, new Uint8Array(0), 'garbage.reply');
          await waitFor(() => server.malformed.counts.request - before >= 3, 3_000, 'malformed count');
          const chunks = await collect(client.requests.call(ep, id, encodeJson({ prompt: 'hello' })));
          expect(chunks).toHaveLength(4);
        });
    });

    describe('event plane', () => {
      it('delivers by subject with * and > wildcards, in publish order', async () => {
        const ns = uniqueNamespace();
        const publisher = await newRuntime();
        const subscriber = await newRuntime();
        const star: string[] = [];
        const tail: string[] = [];
        const exact: number[] = [];
        subscriber.events.subscribe(`${ns}.*.kv`, (m) => star.push(m.subject));
        subscriber.events.subscribe(`${ns}.>`, (m) => tail.push(m.subject));
        subscriber.events.subscribe(`${ns}.w1.kv`, (m) => exact.push(m.payload[0]));
        await subscriber.events.flush();
        for (let i = 0; i < 50; i++) publisher.events.publish(`${ns}.w1.kv`, new Uint8Array([i]));
        publisher.events.publish(`${ns}.w2.kv`, new Uint8Array([0]));
        publisher.events.publish(`${ns}.w2.load`, new Uint8Array([0]));
        publisher.events.publish(`${ns}.w2.kv.extra`, new Uint8Array([0]));
        publisher.events.publish(`other${ns}.w1.kv`, new Uint8Array([0]));
        await publisher.events.flush();
        await waitFor(() => tail.length >= 53, 5_000, 'events');
        await new Promise((r) => setTimeout(r, 50));
        expect(exact).toEqual(Array.from({ length: 50 }, (_, i) => i));
        expect(star).toHaveLength(51);
        expect(star.at(-1)).toBe(`${ns}.w2.kv`);
        expect(tail).toHaveLength(53);
        expect(tail.slice(50)).toEqual([`${ns}.w2.kv`, `${ns}.w2.load`, `${ns}.w2.kv.extra`]);
      });

      it('stops delivering after unsubscribe', async () => {
        const ns = uniqueNamespace();
        const rt = await newRuntime();
        const got: number[] = [];
        const sub = rt.events.subscribe(`${ns}.x`, (m) => got.push(m.payload[0]));
        await rt.events.flush();
        rt.events.publish(`${ns}.x`, new Uint8Array([1]));
        await waitFor(() => got.length === 1, 5_000, 'first event');
        sub.unsubscribe();
        rt.events.publish(`${ns}.x`, new Uint8Array([2]));
        await rt.events.flush();
        await new Promise((r) => setTimeout(r, 50));
        expect(got).toEqual([1]);
      });

      it('rejects invalid subjects', async () => {
        const rt = await newRuntime();
        expect(() => rt.events.publish('a.*.b', new Uint8Array())).toThrow(/invalid publish subject/);
        expect(() => rt.events.subscribe('a.>.b', () => {})).toThrow(/invalid subscribe subject/);
      });

      it('drops events that do not decode with a counter', async () => {
        const ns = uniqueNamespace();
        const rt = await newRuntime();
        const got: { n: number }[] = [];
        subscribeDecoded(
          rt,
          `${ns}.load`,
          (bytes) => {
            const value = decodeJson(bytes) as { n?: unknown };
            if (typeof value?.n !== 'number') throw new TypeError('n must be a number');
            return { n: value.n };
          },
          (v) => got.push(v),
        );
        await rt.events.flush();
        const before = rt.malformed.counts.event;
        await fx.garbage.event(`${ns}.load`, utf8.encode('{"n":'));
        await fx.garbage.event(`${ns}.load`, new Uint8Array([0xff, 0xfe]));
        await fx.garbage.event(`${ns}.load`, encodeJson({ n: 'seven' }));
        rt.events.publish(`${ns}.load`, encodeJson({ n: 7 }));
        await waitFor(() => got.length === 1, 5_000, 'valid event');
        expect(got).toEqual([{ n: 7 }]);
        expect(rt.malformed.counts.event - before).toBe(3);
      });

      it('durable consumers get unacked messages again and resume after their last ack', async () => {
        const ns = uniqueNamespace();
        const rt = await newRuntime();
        const stream = `${ns}-kv-events`;
        await rt.events.ensureStream({ name: stream, subjects: [`${ns}.kv.>`] });
        for (let i = 1; i <= 5; i++)
          expect(await rt.events.publishDurable(`${ns}.kv.w1`, new Uint8Array([i]))).toBe(i);

        const first: number[] = [];
        const sub1 = await rt.events.subscribeDurable(stream, 'router-a', (m) => {
          first.push(m.payload[0]);
          if (m.payload[0] <= 3) m.ack();
        });
        await waitFor(() => first.length === 5, 5_000, 'first delivery');
        expect(first).toEqual([1, 2, 3, 4, 5]);
        await new Promise((r) => setTimeout(r, 100));
        sub1.unsubscribe();

        await rt.events.publishDurable(`${ns}.kv.w2`, new Uint8Array([6]));
        const second: { v: number; deliveries: number }[] = [];
        const sub2 = await rt.events.subscribeDurable(stream, 'router-a', (m) => {
          second.push({ v: m.payload[0], deliveries: m.deliveries });
          m.ack();
        });
        await waitFor(() => second.length >= 3, 5_000, 'redelivery');
        expect(second.map((s) => s.v)).toEqual([4, 5, 6]);
        rt.events.publish(`${ns}.kv.w3`, new Uint8Array([7]));
        await waitFor(() => second.length === 4, 5_000, 'live message');
        expect(second[3].v).toBe(7);
        sub2.unsubscribe();
        await rt.events.deleteConsumer(stream, 'router-a');
      });

      it("redelivers a nak'd durable message", async () => {
        const ns = uniqueNamespace();
        const rt = await newRuntime();
        const stream = `${ns}-events`;
        await rt.events.ensureStream({ name: stream, subjects: [`${ns}.e.*`], maxAgeMs: 3_600_000 });
        for (let i = 1; i <= 3; i++) await rt.events.publishDurable(`${ns}.e.x`, new Uint8Array([i]));
        const got: { v: number; deliveries: number }[] = [];
        const sub = await rt.events.subscribeDurable(stream, 'c1', (m) => {
          got.push({ v: m.payload[0], deliveries: m.deliveries });
          if (m.payload[0] === 2 && m.deliveries === 1) m.nak();
          else m.ack();
        });
        await waitFor(() => got.length === 4, 5_000, 'redelivery');
        expect(got.filter((g) => g.v === 2)).toEqual([
          { v: 2, deliveries: 1 },
          { v: 2, deliveries: 2 },
        ]);
        sub.unsubscribe();
      });
    });
  });
}
