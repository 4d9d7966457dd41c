import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataParallelEngine } from '../../src/engine/data-parallel-engine.ts';
import type { EngineOptions } from '../../src/engine/options.ts';
import { decodeRouterEvent } from '../../src/kv/codec.ts';
import type { RouterEvent } from '../../src/kv/events.ts';
import type { GenerateChunk, GenerateRequest } from '../../src/protocol/generate.ts';
import {
  decodeKvIndexerAnswer,
  encodeGenerateRequest,
  generateChunkFromWire,
  generateRequestToWire,
  KV_INDEXER_QUERY_ENDPOINT,
  type KvIndexerAnswer,
  kvIndexerQueryToWire,
  kvMetricsSubject,
  WORKER_BAD_REQUEST,
  type WorkerRankLoad,
  workerErrorCode,
  workerLoadFromWire,
} from '../../src/protocol/wire.ts';
import { decodeJson, encodeJson } from '../../src/runtime/codec.ts';
import { RemoteError } from '../../src/runtime/errors.ts';
import { type FrameSink, pushCallValue } from '../../src/runtime/push.ts';
import { kvEventsSubject } from '../../src/runtime/subjects.ts';
import { endpointId, type Runtime } from '../../src/runtime/types.ts';
import { MockEngineAdapter } from '../../src/worker/engine-adapter.ts';
import { Worker } from '../../src/worker/worker.ts';
import {
  distributedFixture,
  localFixture,
  type RuntimeFixture,
  range,
  uniqueNamespace,
  waitFor,
} from './fixtures.ts';

const ENGINE: Partial<EngineOptions> = {
  dataParallelSize: 4,
  blockSize: 4,
  numGpuBlocks: 64,
  maxNumSeqs: 8,
  maxNumBatchedTokens: 256,
  speedupRatio: 0,
  seed: 11,
};

async function collect(stream: AsyncIterable<Uint8Array>): Promise<GenerateChunk[]> {
  const out: GenerateChunk[] = [];
  for await (const frame of stream) {
    const chunk = generateChunkFromWire(decodeJson(frame));
    if (!chunk.ok) throw new Error(chunk.error);
    out.push(chunk.value);
  }
  return out;
}

async function query(
  runtime: Runtime,
  worker: Worker,
  q: Parameters<typeof kvIndexerQueryToWire>[0],
): Promise<KvIndexerAnswer> {
  const endpoint = endpointId(worker.namespace, worker.component, KV_INDEXER_QUERY_ENDPOINT);
  for await (const frame of runtime.requests.call(
    endpoint,
    worker.instanceId,
    encodeJson(kvIndexerQueryToWire(q)),
  )) {
    const answer = decodeKvIndexerAnswer(frame);
    if (!answer.ok) throw new Error(answer.error);
    return answer.value;
  }
  throw new Error('no answer');
}

function request(id: string, tokens: number[], maxTokens: number, dpRank?: number): GenerateRequest {
  return {
    requestId: id,
    tokenIds: tokens,
    sampling: { maxTokens, ignoreEos: true },
    ...(dpRank !== undefined ? { dpRank } : {}),
  };
}

function canonical(events: readonly RouterEvent[]): string[] {
  return events
    .flatMap((e) =>
      e.event.data.kind === 'stored'
        ? e.event.data.blocks.map((b) => `${e.workerId}:${e.event.dpRank}:${b.blockHash}:${b.tokensHash}`)
        : [],
    )
    .sort();
}

function workerSuite(name: string, makeFixture: () => Promise<RuntimeFixture>): void {
  describe(`worker over the ${name} runtime`, () => {
    let fixture: RuntimeFixture;
    let runtime: Runtime;
    let client: Runtime;

    beforeAll(async () => {
      fixture = await makeFixture();
      runtime = await fixture.runtime();
      client = await fixture.runtime();
    }, 60_000);
    afterAll(async () => fixture?.teardown(), 30_000);

    const start = async (
      namespace: string,
      engine: Partial<typeof ENGINE> & {
        mode?: 'aggregated' | 'prefill' | 'decode';
        speedupRatio?: number;
      } = {},
    ) => {
      const worker = await Worker.start({
        runtime,
        namespace,
        modelName: 'mock-model',
        engine: MockEngineAdapter.factory({ ...ENGINE, ...engine }),
        metricsIntervalMs: 100,
        drainTimeoutMs: 2_000,
        ...(engine.mode === 'prefill' ? { bootstrap: { host: '10.1.2.3', port: 8998 } } : {}),
      });
      await worker.registered;
      return worker;
    };

    it('registers its instance and a correct model card under the backend component', async () => {
      const ns = uniqueNamespace();
      const worker = await start(ns);
      const found = await client.discovery.list({ namespace: ns });
      expect(found).toHaveLength(1);
      expect(found[0].instance.instanceId).toBe(worker.instanceId);
      expect(found[0].instance.endpoint).toEqual({
        namespace: ns,
        component: 'backend',
        endpoint: 'generate',
      });
      expect(found[0].card).toEqual({
        modelName: 'mock-model',
        role: 'aggregated',
        kvBlockSize: 4,
        totalKvBlocks: 64,
        maxNumSeqs: 8,
        maxNumBatchedTokens: 256,
        dataParallelSize: 4,
      });
      await worker.shutdown();
      expect(await client.discovery.list({ namespace: ns })).toEqual([]);
    });

    it('registers a prefill worker under the prefill component with its bootstrap endpoint', async () => {
      const ns = uniqueNamespace();
      const worker = await start(ns, { mode: 'prefill' });
      const [found] = await client.discovery.list({ namespace: ns });
      expect(found.instance.endpoint.component).toBe('prefill');
      expect(found.card?.role).toBe('prefill');
      expect(found.card?.bootstrap).toEqual({ host: '10.1.2.3', port: 8998 });
      await worker.shutdown();
    });

    it('streams the tokens the engine generates, on the requested rank (rank 0 included)', async () => {
      const ns = uniqueNamespace();
      const worker = await start(ns);
      const reference = new DataParallelEngine({ ...ENGINE, workerId: worker.instanceId });
      for (const rank of [0, 3]) {
        const req = request(`r${rank}`, range(100 * rank, 13), 9, rank);
        const expected: number[] = [];
        for await (const c of reference.generate(req)) expected.push(...c.tokenIds);
        const chunks = await collect(
          client.requests.call(
            worker.generateEndpoint,
            worker.instanceId,
            encodeJson(generateRequestToWire(req)),
          ),
        );
        expect(chunks.flatMap((c) => c.tokenIds)).toEqual(expected);
        expect(chunks[0].dpRank).toBe(rank);
        expect(chunks.at(-1)?.finishReason).toBe('length');
        expect(chunks.at(-1)?.usage).toMatchObject({ promptTokens: 13, completionTokens: 9 });
      }
      reference.close();
      await worker.shutdown();
    });

    it('cancelling the call frees the engine’s blocks', async () => {
      const ns = uniqueNamespace();
      const worker = await start(ns, { speedupRatio: 0.2 });
      const engine = (worker.engine as MockEngineAdapter).engine;
      const controller = new AbortController();
      const req = request('long', range(0, 40), 200, 2);
      const stream = client.requests.call(
        worker.generateEndpoint,
        worker.instanceId,
        encodeJson(generateRequestToWire(req)),
        {
          signal: controller.signal,
        },
      );
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next();
      expect(engine.rankMetrics(2).activeBlocks).toBeGreaterThan(0);
      controller.abort();
      await expect(iterator.next()).rejects.toThrow();
      await waitFor(
        () => engine.rankMetrics(2).activeBlocks === 0 && worker.stats().inFlight === 0,
        5_000,
        'blocks freed',
      );
      await worker.shutdown();
    });

    it('answers malformed payloads with an error response and keeps serving', async () => {
      const ns = uniqueNamespace();
      const worker = await start(ns);
      const before = runtime.malformed.counts.request;
      const bad = [
        new Uint8Array([0xff, 0xfe, 0x00]),
        new TextEncoder().encode('{"request_id":"x"'),
        encodeJson({ request_id: 'x', token_ids: [], sampling: { max_tokens: 1 } }),
        encodeJson({ request_id: 'x', token_ids: [1, -2], sampling: { max_tokens: 1 } }),
        encodeJson(generateRequestToWire(request('x', [1, 2, 3], 2, 9))),
      ];
      for (const payload of bad) {
        const error = await collect(
          client.requests.call(worker.generateEndpoint, worker.instanceId, payload),
        ).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(RemoteError);
        const code = workerErrorCode((error as Error).message);
        expect([WORKER_BAD_REQUEST, 'ENGINE_RANK_OUT_OF_RANGE']).toContain(code);
      }
      expect(runtime.malformed.counts.request - before).toBeGreaterThanOrEqual(4);
      const ok = await collect(
        client.requests.call(
          worker.generateEndpoint,
          worker.instanceId,
          encodeJson(generateRequestToWire(request('y', [1, 2, 3], 2))),
        ),
      );
      expect(ok.flatMap((c) => c.tokenIds)).toHaveLength(2);
      await worker.shutdown();
    });

    it('publishes KV events with per-rank ids from 0 and answers range and dump recovery queries', async () => {
      const ns = uniqueNamespace();
      const published: RouterEvent[] = [];
      const sub = client.events.subscribe(kvEventsSubject(ns, 'backend'), (m) => {
        const decoded = decodeRouterEvent(new TextDecoder().decode(m.payload));
        if (decoded.ok) published.push(decoded.event);
      });
      const loads: WorkerRankLoad[] = [];
      const loadSub = client.events.subscribe(kvMetricsSubject(ns, 'backend'), (m) => {
        const load = workerLoadFromWire(decodeJson(m.payload));
        if (load.ok) loads.push(load.value);
      });
      await client.events.flush();
      const worker = await start(ns);
      for (let i = 0; i < 12; i++) {
        const req = request(`q${i}`, range(1000 * (i % 5), 10 + i), 3, i % 4);
        await collect(
          client.requests.call(
            worker.generateEndpoint,
            worker.instanceId,
            encodeJson(generateRequestToWire(req)),
          ),
        );
      }
      const engine = (worker.engine as MockEngineAdapter).engine;
      const total = [0, 1, 2, 3].reduce(
        (n, r) => n + Number(engine.localIndexer(r).newestEventId ?? -1n) + 1,
        0,
      );
      expect(total).toBeGreaterThan(0);
      await waitFor(() => published.length === total, 5_000, 'all events');
      for (let rank = 0; rank < 4; rank++) {
        const mine = published.filter((e) => e.event.dpRank === rank);
        expect(mine.map((e) => e.event.eventId)).toEqual(mine.map((_, i) => BigInt(i)));
        expect(mine.every((e) => e.workerId === worker.instanceId)).toBe(true);
        if (mine.length >= 2) {
          const answer = await query(client, worker, {
            dpRank: rank,
            startEventId: 1n,
            endEventId: BigInt(mine.length - 1),
          });
          expect(answer).toEqual({
            kind: 'events',
            dpRank: rank,
            lastEventId: BigInt(mine.length - 1),
            events: mine.slice(1),
          });
        }
        const dump = await query(client, worker, { dpRank: rank });
        expect(dump.kind).toBe('dump');
        if (dump.kind !== 'dump') continue;
        expect(dump.lastEventId).toBe(mine.length === 0 ? null : BigInt(mine.length - 1));
        expect(canonical(dump.events)).toEqual(
          engine
            .heldBlocks(rank)
            .map((b) => `${worker.instanceId}:${rank}:${b.blockHash}:${b.tokensHash}`)
            .sort(),
        );
      }
      const gone = await query(client, worker, { dpRank: 0, startEventId: 0n, endEventId: 10_000n });
      expect(gone.kind).toBe('unavailable');
      await expect(query(client, worker, { dpRank: 4 })).rejects.toThrow(/ENGINE_RANK_OUT_OF_RANGE/);
      await waitFor(() => new Set(loads.map((l) => l.dpRank)).size === 4, 5_000, 'loads of every rank');
      expect(loads.every((l) => l.workerId === worker.instanceId && l.totalKvBlocks === 64)).toBe(true);
      sub.unsubscribe();
      loadSub.unsubscribe();
      await worker.shutdown();
    });
  });
}

workerSuite('local', async () => localFixture());
workerSuite('nats + etcd', distributedFixture);

describe('worker called in process (local runtime)', () => {
  it('takes a generate request as a value, never encoded, and pushes its chunks; bootstrap info goes as bytes', async () => {
    const fixture = localFixture();
    try {
      const runtime = await fixture.runtime();
      const client = await fixture.runtime();
      const worker = await Worker.start({
        runtime,
        namespace: uniqueNamespace(),
        modelName: 'mock-model',
        engine: MockEngineAdapter.factory({ ...ENGINE }),
        drainTimeoutMs: 2_000,
      });
      await worker.registered;
      const encoded: GenerateRequest[] = [];
      const encode = (r: GenerateRequest) => {
        encoded.push(r);
        return encodeGenerateRequest(r);
      };
      const call = (r: GenerateRequest) =>
        new Promise<{ tokens: number; error?: unknown }>((resolve) => {
          let tokens = 0;
          const sink: FrameSink = {
            push: (frame) => {
              const chunk = generateChunkFromWire(decodeJson(frame));
              if (chunk.ok) tokens += chunk.value.tokenIds.length;
            },
            pushValue: <V>(value: V) => {
              tokens += (value as unknown as GenerateChunk).tokenIds.length;
            },
            end: () => resolve({ tokens }),
            fail: (error) => resolve({ tokens, error }),
          };
          pushCallValue(client.requests, worker.generateEndpoint, worker.instanceId, r, encode, sink);
        });
      expect(await call(request('value', range(0, 12), 5, 2))).toEqual({ tokens: 5 });
      expect(encoded).toEqual([]);
      const bootstrap = { host: 'h', port: 1, room: 7, prefillWorkerId: 9n, prefillDpRank: 0 };
      // Not a value the worker takes as it is: the plane encodes it (this aggregated engine then refuses it).
      const refused = await call({ ...request('bytes', range(0, 12), 5, 2), bootstrap });
      expect(encoded).toHaveLength(1);
      expect(refused.error).toBeDefined();
      await worker.shutdown({ drainTimeoutMs: 1_000 });
    } finally {
      await fixture.teardown();
    }
  });
});
