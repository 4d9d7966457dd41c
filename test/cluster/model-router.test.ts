import { afterEach, describe, expect, it } from 'vitest';
import { WorkerLostError, WorkerRequestError } from '../../src/cluster/errors.ts';
import type { ModelRouter, RoutedChunk, RoutedRequest } from '../../src/cluster/model-router.ts';
import { ModelWatcher } from '../../src/cluster/model-watcher.ts';
import { kvMetricsSubject } from '../../src/protocol/wire.ts';
import { NoWorkersError } from '../../src/routing/errors.ts';
import { encodeJson } from '../../src/runtime/codec.ts';
import { modelCardKey } from '../../src/runtime/discovery-keys.ts';
import { LocalCluster, type LocalRuntime } from '../../src/runtime/local/cluster.ts';
import { PUSH, type PushHandle } from '../../src/runtime/push.ts';
import { kvEventsSubject } from '../../src/runtime/subjects.ts';
import { endpointId } from '../../src/runtime/types.ts';
import { CancelSource } from '../../src/util/cancel.ts';
import type { MockEngineAdapter } from '../../src/worker/engine-adapter.ts';
import { modelRouterKit } from '../helpers/model-routers.ts';
import { uniqueNamespace, waitFor } from '../worker/fixtures.ts';
import { BLOCK_SIZE, canonical, drain, prompt, req, startWorker, workersDump, zeroLoads } from './helpers.ts';

/** A 30-token request on a 21-token prompt that began on `doomed`: all of it arrived, its end from another worker. */
function expectMigrated(chunks: readonly RoutedChunk[], doomed: bigint, r: ModelRouter): void {
  expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(30);
  expect(chunks[0].workerId).toBe(doomed);
  expect(chunks.at(-1)?.workerId).not.toBe(doomed);
  expect(chunks.at(-1)).toMatchObject({
    finishReason: 'length',
    usage: { promptTokens: 21, completionTokens: 30 },
  });
  expect(r.stats().migrations).toBe(1);
  expect(zeroLoads(r)).toBe(true);
}

describe('ModelRouter over the local runtime', () => {
  let cluster: LocalCluster;
  const runtimes: LocalRuntime[] = [];
  const rt = ({ leaseTtlSeconds = 2 }: { leaseTtlSeconds?: number } = {}) => {
    cluster ??= new LocalCluster();
    const r = cluster.runtime({ leaseTtlSeconds });
    runtimes.push(r);
    return r;
  };
  // Registered before the kit's: after-each hooks run in reverse order, so the routers and workers
  // close before their runtimes.
  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((r) => r.close().catch(() => undefined)));
  });
  const { router, worker, workers } = modelRouterKit(rt, { waitForWorkersMs: 2_000, recoveryDelayMs: 20 });

  it('routes to a (worker, rank), sends the rank (0 included), and its index equals the workers’ dumps', async () => {
    const ns = uniqueNamespace();
    const [a, b] = [await worker(ns), await worker(ns)];
    const r = await router(ns);
    expect(
      r
        .instances()
        .map((i) => i.workerId)
        .sort(),
    ).toEqual([a.instanceId, b.instanceId].sort());
    const seenRanks = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const chunks = await drain(r.generate(req(prompt(i % 6, 17 + (i % 5), i), 5)));
      expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(5);
      const first = chunks[0];
      expect(chunks.every((c) => c.workerId === first.workerId && c.dpRank === first.dpRank)).toBe(true);
      const engine = (first.workerId === a.instanceId ? a : b).engine;
      expect(first.dpRank).toBeGreaterThanOrEqual(0);
      expect(first.dpRank).toBeLessThan(engine.description.dataParallelSize);
      seenRanks.add(`${first.workerId}:${first.dpRank}`);
    }
    expect(seenRanks.size).toBeGreaterThan(2);
    await r.settled();
    await waitFor(() => canonical(r.dump()).join() === workersDump([a, b]).join(), 2_000, 'dumps equal');
    expect(canonical(r.dump()).length).toBeGreaterThan(0);
    expect(zeroLoads(r)).toBe(true);
    await waitFor(() => r.loads().every((l) => l.reported !== undefined), 2_000, 'kv_metrics of every rank');
    expect(r.loads()).toHaveLength(8);
    expect(
      r.loads().every((l) => l.reported?.totalKvBlocks === 128 && l.reported.workerId === l.workerId),
    ).toBe(true);
  });

  it('graceful shutdown: deregisters first, finishes in-flight work, and new requests go elsewhere', async () => {
    const ns = uniqueNamespace();
    const leaving = await worker(ns, { speedupRatio: 0.3 });
    const staying = await worker(ns);
    const r = await router(ns);
    const chunks: RoutedChunk[] = [];
    const inFlight = (async () => {
      for await (const c of r.generate(req(prompt(4, 20), 40, { workerId: leaving.instanceId })))
        chunks.push(c);
    })();
    await waitFor(() => chunks.length > 0, 3_000, 'first chunk');
    const shutdown = leaving.shutdown({ drainTimeoutMs: 10_000 });
    await waitFor(() => r.instances().length === 1, 2_000, 'deregistration');
    expect(chunks.at(-1)?.finishReason).toBeUndefined();
    const other = await drain(r.generate(req(prompt(5, 9), 2)));
    expect(other[0].workerId).toBe(staying.instanceId);
    await inFlight;
    await shutdown;
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(40);
    expect(chunks.every((c) => c.workerId === leaving.instanceId)).toBe(true);
    expect(r.stats().migrations).toBe(0);
  });

  it('a request outliving the drain timeout is migrated when the worker stops', async () => {
    const ns = uniqueNamespace();
    const leaving = await worker(ns, { speedupRatio: 0.3 });
    await worker(ns);
    const r = await router(ns);
    const chunks: RoutedChunk[] = [];
    const inFlight = (async () => {
      for await (const c of r.generate(req(prompt(4, 20), 60, { workerId: leaving.instanceId })))
        chunks.push(c);
    })();
    await waitFor(() => chunks.length > 0, 3_000, 'first chunk');
    await leaving.shutdown({ drainTimeoutMs: 100 });
    await inFlight;
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(60);
    expect(chunks.at(-1)?.workerId).not.toBe(leaving.instanceId);
    expect(r.stats().migrations).toBe(1);
  });

  it('routes with another policy (round-robin) through the same machinery', async () => {
    const ns = uniqueNamespace();
    await worker(ns, { dataParallelSize: 2 });
    await worker(ns, { dataParallelSize: 2 });
    const r = await router(ns, { policy: 'round-robin' });
    const targets = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const chunks = await drain(r.generate(req(prompt(1, 12), 2)));
      expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(2);
      targets.add(`${chunks[0].workerId}:${chunks[0].dpRank}`);
    }
    expect(targets.size).toBe(4);
    expect(r.dump()).toEqual([]);
    expect(zeroLoads(r)).toBe(true);
  });

  it('a cached prefix wins: the same prompt goes back to the rank that holds it', async () => {
    const ns = uniqueNamespace();
    await worker(ns);
    await worker(ns);
    const r = await router(ns);
    const p = prompt(42, 40);
    const first = await drain(r.generate(req(p, 2)));
    await waitFor(() => r.decide(p).overlapBlocks === 10, 2_000, 'blocks indexed');
    const decision = r.decide(p);
    expect({ workerId: decision.workerId, dpRank: decision.dpRank }).toEqual({
      workerId: first[0].workerId,
      dpRank: first[0].dpRank,
    });
    const second = await drain(r.generate(req(p, 2)));
    expect(second[0].dpRank).toBe(first[0].dpRank);
    expect(second.at(-1)?.usage?.cachedTokens).toBeGreaterThan(0);
  });

  it('honours a pinned worker and rank 0, and reports a bad pinned rank as a 400', async () => {
    const ns = uniqueNamespace();
    const a = await worker(ns);
    await worker(ns);
    const r = await router(ns);
    const pinned = req(prompt(1, 12), 3, { workerId: a.instanceId, dpRank: 0 });
    const chunks = await drain(r.generate(pinned));
    expect(chunks[0]).toMatchObject({ workerId: a.instanceId, dpRank: 0 });
    expect((a.engine as MockEngineAdapter).engine.placement(pinned.requestId)?.dpRank).toBe(0);
    await expect(
      drain(r.generate(req(prompt(1, 12), 3, { workerId: a.instanceId, dpRank: 9 }))),
    ).rejects.toMatchObject({
      statusCode: 400,
    });
  });

  it('frees the load when the consumer stops early, and the engine cancels the request', async () => {
    const ns = uniqueNamespace();
    const a = await worker(ns, { speedupRatio: 0.2 });
    const r = await router(ns);
    const stream = r.generate(req(prompt(3, 20), 100));
    for await (const chunk of stream) {
      expect(chunk.tokenIds.length).toBeGreaterThan(0);
      expect(r.loads().some((l) => l.activeRequests === 1)).toBe(true);
      break;
    }
    expect(zeroLoads(r)).toBe(true);
    const engine = (a.engine as MockEngineAdapter).engine;
    await waitFor(
      () => engine.rankMetrics().every((m) => m.activeBlocks === 0),
      3_000,
      'engine blocks freed',
    );
  });

  it('a CancelSource aborted mid-stream fails the stream as cancelled, frees the load and cancels the engine request', async () => {
    const ns = uniqueNamespace();
    const a = await worker(ns, { speedupRatio: 0.2 });
    const r = await router(ns);
    const cancel = new CancelSource();
    const stream = r.generate(req(prompt(4, 20), 100), cancel);
    let received = 0;
    const run = (async () => {
      for await (const chunk of stream) {
        received += chunk.tokenIds.length;
        if (received >= 2) cancel.abort(new Error('client went away'));
      }
    })();
    await expect(run).rejects.toMatchObject({ code: 'RUNTIME_CANCELLED' });
    expect(zeroLoads(r)).toBe(true);
    const engine = (a.engine as MockEngineAdapter).engine;
    await waitFor(
      () => engine.rankMetrics().every((m) => m.activeBlocks === 0 && m.running === 0),
      3_000,
      'engine request cancelled',
    );
  });

  it('ignores cards of another model and skips a worker whose block size differs', async () => {
    const ns = uniqueNamespace();
    await worker(ns, {}, { model: 'other-model' });
    await worker(ns, { blockSize: 8 });
    const good = await worker(ns);
    const r = await router(ns);
    expect(r.instances().map((i) => i.workerId)).toEqual([good.instanceId]);
    expect(r.stats().skippedCards).toBe(1);
  });

  it('migrates a request whose worker dies mid-stream and completes it with the right token count', async () => {
    const ns = uniqueNamespace();
    const doomedRuntime = rt();
    const doomed = await startWorker(doomedRuntime, ns, { speedupRatio: 0.2 });
    await worker(ns, { speedupRatio: 0.2 });
    const r = await router(ns);
    const chunks = [];
    let crashed = false;
    for await (const chunk of r.generate(req(prompt(7, 21), 30, { workerId: doomed.instanceId }))) {
      chunks.push(chunk);
      const count = chunks.flatMap((c) => c.tokenIds).length;
      if (!crashed && count >= 3) {
        crashed = true;
        await doomedRuntime.simulateCrash();
      }
    }
    expectMigrated(chunks, doomed.instanceId, r);
    doomed.engine.close();
  });

  describe('push mode (the stream as a PushSource)', () => {
    /** Pushes the stream to a sink; `onChunk` may cancel through the handle. */
    const pushed = (
      stream: ReturnType<ModelRouter['generate']>,
      onChunk: (chunk: RoutedChunk, handle: PushHandle) => void = () => {},
    ) =>
      new Promise<{ chunks: RoutedChunk[]; error?: unknown }>((resolve) => {
        const chunks: RoutedChunk[] = [];
        let handle: PushHandle | undefined;
        handle = stream[PUSH]({
          push: (chunk) => {
            chunks.push(chunk);
            onChunk(chunk, handle!);
          },
          end: () => resolve({ chunks }),
          fail: (error) => resolve({ chunks, error }),
        });
      });

    it('pushes the chunks a pulled stream would yield, then ends, with the load freed', async () => {
      const ns = uniqueNamespace();
      await worker(ns);
      const r = await router(ns);
      const { chunks, error } = await pushed(r.generate(req(prompt(5, 21), 12)));
      expect(error).toBeUndefined();
      expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(12);
      expect(chunks[0].dpRank).toBeGreaterThanOrEqual(0);
      expect(new Set(chunks.map((c) => c.workerId)).size).toBe(1);
      expect(chunks.at(-1)).toMatchObject({
        finishReason: 'length',
        usage: { promptTokens: 21, completionTokens: 12 },
      });
      expect(zeroLoads(r)).toBe(true);
    });

    it('a stream is consumed once: pushing after pulling (or twice) throws', async () => {
      const ns = uniqueNamespace();
      await worker(ns);
      const r = await router(ns);
      const pulled = r.generate(req(prompt(6, 21), 2));
      await drain(pulled);
      expect(() => pulled[PUSH]({ push() {}, end() {}, fail() {} })).toThrow(TypeError);
      const twice = r.generate(req(prompt(6, 21), 2));
      await pushed(twice);
      expect(() => twice[PUSH]({ push() {}, end() {}, fail() {} })).toThrow(TypeError);
    });

    it('cancelling from inside push stops the stream, frees the load and cancels the engine request', async () => {
      const ns = uniqueNamespace();
      const a = await worker(ns, { speedupRatio: 0.2 });
      const r = await router(ns);
      let after = 0;
      let cancelled = false;
      const stream = r.generate(req(prompt(8, 20), 100));
      let handle: PushHandle | undefined;
      handle = stream[PUSH]({
        push: (chunk) => {
          if (cancelled) after++;
          else if (chunk.tokenIds.length > 0) {
            cancelled = true;
            handle?.cancel();
          }
        },
        end: () => after++,
        fail: () => after++,
      });
      await waitFor(() => cancelled, 3_000, 'a first chunk');
      expect(zeroLoads(r)).toBe(true);
      const engine = (a.engine as MockEngineAdapter).engine;
      await waitFor(
        () => engine.rankMetrics().every((m) => m.activeBlocks === 0 && m.running === 0),
        3_000,
        'engine request cancelled',
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(after).toBe(0);
    });

    it('a request refused at once fails the sink with the mapped error', async () => {
      const ns = uniqueNamespace();
      await worker(ns);
      const r = await router(ns);
      const { chunks, error } = await pushed(
        r.generate(req(prompt(9, 21), 4, { workerId: 0xdeadn }), undefined, {
          mapError: (e) => new Error(`mapped: ${(e as Error).name}`),
        }),
      );
      expect(chunks).toEqual([]);
      expect((error as Error).message).toBe('mapped: UnknownWorkerError');
      expect(zeroLoads(r)).toBe(true);
    });

    it('migrates a request whose worker dies mid-stream', async () => {
      const ns = uniqueNamespace();
      const doomedRuntime = rt();
      const doomed = await startWorker(doomedRuntime, ns, { speedupRatio: 0.2 });
      await worker(ns, { speedupRatio: 0.2 });
      const r = await router(ns);
      let count = 0;
      const { chunks, error } = await pushed(
        r.generate(req(prompt(7, 21), 30, { workerId: doomed.instanceId })),
        (chunk) => {
          count += chunk.tokenIds.length;
          if (count >= 3 && count - chunk.tokenIds.length < 3) void doomedRuntime.simulateCrash();
        },
      );
      expect(error).toBeUndefined();
      expectMigrated(chunks, doomed.instanceId, r);
      doomed.engine.close();
    });

    it("output kind 'final': the first token, then the rest in one chunk; migrated after the first token, still complete", async () => {
      const ns = uniqueNamespace();
      const doomedRuntime = rt();
      const doomed = await startWorker(doomedRuntime, ns, { speedupRatio: 0.2 });
      await worker(ns, { speedupRatio: 0.2 });
      const r = await router(ns);
      const final = (request: RoutedRequest): RoutedRequest => ({
        ...request,
        sampling: { ...request.sampling, outputKind: 'final' },
      });
      const whole = await pushed(r.generate(final(req(prompt(8, 21), 30))));
      expect(whole.error).toBeUndefined();
      expect(whole.chunks.map((c) => c.tokenIds.length)).toEqual([1, 29]);
      expect(whole.chunks[1]).toMatchObject({ finishReason: 'length', usage: { completionTokens: 30 } });

      const { chunks, error } = await pushed(
        r.generate(final(req(prompt(7, 21), 30, { workerId: doomed.instanceId }))),
        (chunk) => {
          if (chunk.workerId === doomed.instanceId) void doomedRuntime.simulateCrash();
        },
      );
      expect(error).toBeUndefined();
      expect(chunks[0].tokenIds).toHaveLength(1);
      expectMigrated(chunks, doomed.instanceId, r);
      doomed.engine.close();
    });
  });

  it('with migration off, a dead worker is a clear error at once', async () => {
    const ns = uniqueNamespace();
    const doomedRuntime = rt();
    const doomed = await startWorker(doomedRuntime, ns, { speedupRatio: 0.2 });
    await worker(ns);
    const r = await router(ns, { migrationLimit: 0 });
    const run = async () => {
      for await (const _ of r.generate(req(prompt(7, 21), 30, { workerId: doomed.instanceId })))
        await doomedRuntime.simulateCrash();
    };
    const error = await run().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerLostError);
    expect((error as Error).message).toMatch(/migration is off/);
    expect(zeroLoads(r)).toBe(true);
    doomed.engine.close();
  });

  it('waits for a first worker instead of failing, and fails with NoWorkersError after the wait', async () => {
    const ns = uniqueNamespace();
    const r = await router(ns, { waitForWorkersMs: 3_000 });
    const pending = drain(r.generate(req(prompt(1, 9), 2)));
    await new Promise((res) => setTimeout(res, 200));
    await worker(ns);
    expect((await pending).flatMap((c) => c.tokenIds)).toHaveLength(2);
    const empty = await router(uniqueNamespace(), { waitForWorkersMs: 100 });
    await expect(drain(empty.generate(req(prompt(1, 9), 2)))).rejects.toBeInstanceOf(NoWorkersError);
  });

  it('drops the worker’s blocks and load on every rank when its lease runs out', async () => {
    const ns = uniqueNamespace();
    const doomedRuntime = rt();
    const doomed = await startWorker(doomedRuntime, ns);
    const other = await worker(ns);
    const r = await router(ns);
    for (let i = 0; i < 12; i++)
      await drain(r.generate(req(prompt(i, 30), 2, { workerId: doomed.instanceId, dpRank: i % 4 })));
    await waitFor(
      () => canonical(r.dump()).some((s) => s.startsWith(`${doomed.instanceId}:3:`)),
      2_000,
      'doomed blocks',
    );
    await doomedRuntime.simulateCrash();
    await waitFor(() => r.instances().length === 1, 5_000, 'instance removed');
    expect(canonical(r.dump()).every((s) => s.startsWith(`${other.instanceId}:`))).toBe(true);
    expect(r.loads().every((l) => l.workerId === other.instanceId)).toBe(true);
    doomed.engine.close();
  });

  it('drops malformed messages on every plane with a count, and keeps routing', async () => {
    const ns = uniqueNamespace();
    const w = await worker(ns);
    const r = await router(ns);
    const routerRuntime = runtimes.at(-1)!;
    const raw = rt();
    const before = { ...routerRuntime.malformed.counts };
    raw.events.publish(kvEventsSubject(ns, 'backend'), new TextEncoder().encode('{"worker_id":1,"event":'));
    raw.events.publish(kvEventsSubject(ns, 'backend'), new Uint8Array([0xc3, 0x28]));
    raw.events.publish(kvMetricsSubject(ns, 'backend'), encodeJson({ worker_id: 'nope' }));
    cluster.store.putUnleased([
      {
        key: modelCardKey(endpointId(ns, 'backend', 'generate'), 0xbadn),
        value: new TextEncoder().encode('{"model_name":'),
      },
    ]);
    await waitFor(
      () => routerRuntime.malformed.counts.event - before.event >= 3,
      2_000,
      'event drops counted',
    );
    await waitFor(
      () => routerRuntime.malformed.counts.discovery > before.discovery,
      2_000,
      'card drop counted',
    );
    expect(r.stats().events.malformed).toBe(2);
    expect(r.stats().malformedMetrics).toBe(1);
    const bad = raw.requests.call(w.generateEndpoint, w.instanceId, new TextEncoder().encode('nonsense'));
    await expect(drain(bad)).rejects.toThrow(/WORKER_BAD_REQUEST/);
    const chunks = await drain(r.generate(req(prompt(2, 10), 4)));
    expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(4);
    expect(r.instances()).toHaveLength(1);
  });

  it('reports a worker-side refusal as a WorkerRequestError', async () => {
    const ns = uniqueNamespace();
    await worker(ns, { numGpuBlocks: 8 });
    const r = await router(ns);
    const error = await drain(r.generate(req(prompt(2, 40), 4))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkerRequestError);
    expect(error).toMatchObject({ workerCode: 'ENGINE_REQUEST_TOO_LARGE', statusCode: 400 });
    expect(zeroLoads(r)).toBe(true);
  });

  it('is busy only when every rank is over a threshold', async () => {
    const ns = uniqueNamespace();
    await worker(ns, { dataParallelSize: 2, speedupRatio: 0.05 });
    const r = await router(ns);
    expect(r.isBusy({ activeDecodeBlocksThreshold: 0 })).toBe(false);
    const streams = [
      r.generate(req(prompt(1, 40), 50, { dpRank: 0 })),
      r.generate(req(prompt(2, 40), 50, { dpRank: 1 })),
    ];
    const iterators = streams.map((s) => s[Symbol.asyncIterator]());
    await Promise.all(iterators.map((it) => it.next()));
    expect(r.isBusy({ activeDecodeBlocksThreshold: 0 })).toBe(true);
    expect(r.isBusy({ activeDecodeBlocksThreshold: 0.9 })).toBe(false);
    expect(r.isBusy({ activePrefillTokensThreshold: 0 })).toBe(false); // prefill done on both
    await Promise.all(iterators.map((it) => it.return?.(undefined)));
    expect(r.isBusy({ activeDecodeBlocksThreshold: 0 })).toBe(false);
  });

  it('queues a request while every rank is busy (queueThreshold) and runs it once a prefill completes', async () => {
    const ns = uniqueNamespace();
    await worker(ns, { dataParallelSize: 2, speedupRatio: 0.05 });
    // Busy = more than 0.01 × 512 = 5.12 prompt tokens waiting for prefill on the rank.
    const r = await router(ns, { config: { queueThreshold: 0.01 } });
    const first = [r.generate(req(prompt(1, 40), 4)), r.generate(req(prompt(2, 40), 4))];
    const firstIterators = first.map((s) => s[Symbol.asyncIterator]());
    const firstChunks = firstIterators.map((it) => it.next());
    const third = r.generate(req(prompt(3, 40), 4))[Symbol.asyncIterator]();
    const thirdChunk = third.next();
    await waitFor(() => r.queued === 1, 2_000, 'a queued request');
    const ranks = new Set(
      r
        .loads()
        .filter((l) => l.activeRequests > 0)
        .map((l) => l.dpRank),
    );
    expect(ranks).toEqual(new Set([0, 1])); // one request on each rank, the third waits
    let thirdStarted = false;
    void thirdChunk.then(() => {
      thirdStarted = true;
    });
    const order = await Promise.race([
      Promise.any(firstChunks).then(() => 'a first request' as const),
      thirdChunk.then(() => 'the queued one' as const),
    ]);
    expect(order).toBe('a first request');
    const [done] = await Promise.all([
      (async () => {
        const chunks = [(await thirdChunk).value];
        for (let c = await third.next(); !c.done; c = await third.next()) chunks.push(c.value);
        return chunks.flatMap((c) => c.tokenIds).length;
      })(),
      ...firstIterators.map(async (it) => {
        while (!(await it.next()).done);
      }),
    ]);
    expect(thirdStarted).toBe(true);
    expect(done).toBe(4);
    expect(r.queued).toBe(0);
    expect(zeroLoads(r)).toBe(true);
  });

  it('a queued request with a priority jump overtakes those that arrived shortly before it', async () => {
    const ns = uniqueNamespace();
    await worker(ns, { dataParallelSize: 1, speedupRatio: 0.05 });
    const r = await router(ns, { config: { queueThreshold: 0.01 } });
    const order: string[] = [];
    const run = async (name: string, routing?: { priorityJumpMs: number }) => {
      const stream = r.generate(req(prompt(order.length + 10 + name.length, 40), 2, routing));
      let first = true;
      for await (const chunk of stream) {
        if (first && chunk.tokenIds.length > 0) {
          order.push(name);
          first = false;
        }
      }
    };
    const running = run('running');
    await waitFor(
      () => order.length === 0 && r.loads().some((l) => l.activeRequests > 0),
      2_000,
      'a routed request',
    );
    const queued = [run('a'), run('b')];
    await waitFor(() => r.queued === 2, 2_000, 'two queued requests');
    queued.push(run('urgent', { priorityJumpMs: 60_000 }));
    await waitFor(() => r.queued === 3, 2_000, 'three queued requests');
    await Promise.all([running, ...queued]);
    expect(order).toEqual(['running', 'urgent', 'a', 'b']);
  });

  it.each([
    ['an AbortSignal', () => new AbortController()],
    ['a CancelSource', () => new CancelSource()],
  ])(
    'a request cancelled (through %s) while queued fails as cancelled and leaves the queue',
    async (_, cancellation) => {
      const ns = uniqueNamespace();
      await worker(ns, { dataParallelSize: 1, speedupRatio: 0.05 });
      const r = await router(ns, { config: { queueThreshold: 0.01 } });
      const running = r.generate(req(prompt(1, 40), 2))[Symbol.asyncIterator]();
      const runningChunk = running.next();
      const controller = cancellation();
      const queued = r.generate(req(prompt(2, 40), 2), controller.signal)[Symbol.asyncIterator]();
      const queuedChunk = queued.next();
      await waitFor(() => r.queued === 1, 2_000, 'a queued request');
      controller.abort();
      await expect(queuedChunk).rejects.toMatchObject({ code: 'RUNTIME_CANCELLED' });
      expect(r.queued).toBe(0);
      await runningChunk;
      while (!(await running.next()).done);
      expect(zeroLoads(r)).toBe(true);
    },
  );

  it('a ModelWatcher keeps one router per model and component', async () => {
    const ns = uniqueNamespace();
    await worker(ns, {}, { model: 'alpha' });
    const watcher = await ModelWatcher.start({ runtime: rt(), namespace: ns, waitForWorkersMs: 1_000 });
    try {
      expect(watcher.models()).toEqual(['alpha']);
      const changes: string[] = [];
      watcher.onChange((c) => changes.push(`${c.type}:${c.model}:${c.component}`));
      await worker(ns, { mode: 'prefill' }, { model: 'beta' });
      await waitFor(() => changes.length === 1, 2_000, 'beta announced');
      expect(changes).toEqual(['added:beta:prefill']);
      expect(watcher.models()).toEqual(['alpha', 'beta']);
      expect(watcher.routerFor('beta', 'prefill')?.instances()).toHaveLength(1);
      expect(watcher.routerFor('beta')).toBeUndefined();
      const prefill = watcher.routerFor('beta', 'prefill')!;
      expect(prefill.component).toBe('prefill');
      const alpha = watcher.routerFor('alpha')!;
      expect(alpha.blockSize).toBe(BLOCK_SIZE);
      const chunks = await drain(alpha.generate(req(prompt(1, 9), 3)));
      expect(chunks.flatMap((c) => c.tokenIds)).toHaveLength(3);
      const prefillChunks = await drain(prefill.generate(req(prompt(1, 9), 3)));
      expect(prefillChunks[0].bootstrap?.prefillDpRank).toBe(prefillChunks[0].dpRank);
      await workers.find((w) => w.card.modelName === 'beta')!.shutdown({ drainTimeoutMs: 0 });
      await waitFor(() => changes.length === 2, 2_000, 'beta gone');
      expect(changes[1]).toBe('removed:beta:prefill');
      expect(watcher.models()).toEqual(['alpha']);
      expect(watcher.routerFor('beta', 'prefill')).toBe(prefill); // kept: requests wait for a worker
    } finally {
      await watcher.close();
    }
  });
});
