/**
 * Runtime planes: the local (in-process) request plane against the NATS request plane, side by
 * side in one process, on a nats-server this bench starts itself (test/support/servers.ts).
 *   - round trip: one call, one small chunk back, sequential; p50 in µs;
 *   - streaming: 64-token streams (each token a small JSON chunk, encoded by the handler and
 *     decoded by the caller), 16 concurrent callers; tokens/s;
 *   - events: KV events (src/kv/codec.ts encodeRouterEvent) through NATS core pub/sub, decoded
 *     and validated at the subscriber with decodeRouterEvent; events/s (and without the decode, the
 *     transport alone). Local event plane alongside.
 *   - events into the router (`events_per_s`): KV events of a registered 4-rank worker published on
 *     its kv-events subject and ingested by a ModelRouter (decode, per-(worker, rank) id tracking,
 *     KvRouter's radix tree), timed until the router has applied the last one. Per rank the events
 *     alternate "store 4 new blocks" and "remove them", so the tree stays the same size across
 *     rounds. The decode-only figure above is the baseline it is compared with.
 * Rounds are interleaved (this VM is noisy); medians are reported. Last stdout line is JSON.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { connect } from '@nats-io/transport-node';
import { ModelRouter } from '../src/cluster/model-router.ts';
import { decodeRouterEvent, encodeRouterEvent } from '../src/kv/codec.ts';
import type { RouterEvent } from '../src/kv/events.ts';
import {
  encodeKvIndexerAnswer,
  GENERATE_ENDPOINT,
  KV_INDEXER_QUERY_ENDPOINT,
  kvIndexerQueryWireSchema,
} from '../src/protocol/wire.ts';
import { decodeJson, encodeJson } from '../src/runtime/codec.ts';
import { KvDiscovery } from '../src/runtime/kv-discovery.ts';
import { LocalCluster } from '../src/runtime/local/cluster.ts';
import { LocalKvStore } from '../src/runtime/local/kv-store.ts';
import { NatsEventPlane } from '../src/runtime/nats/event-plane.ts';
import { NatsRequestPlane } from '../src/runtime/nats/request-plane.ts';
import { MalformedCounter } from '../src/runtime/stats.ts';
import { kvEventsSubject } from '../src/runtime/subjects.ts';
import {
  type EventPlane,
  endpointId,
  type RequestHandler,
  type RequestPlane,
  type Runtime,
} from '../src/runtime/types.ts';
import { startNatsServer } from '../test/support/servers.ts';

const ROUNDS = 7;
const RTT_CALLS = { local: 5_000, nats: 500 };
const STREAM_TOKENS = 64;
const STREAM_CONCURRENCY = 16;
const STREAMS_PER_ROUND = { local: 400, nats: 150 };
const EVENTS_PER_ROUND = { local: 20_000, nats: 20_000 };
const BLOCKS_PER_EVENT = 4;

const endpoint = endpointId('bench', 'backend', 'generate');
const INSTANCE = 0x1234n;

const echoOne: RequestHandler = async function* (payload) {
  yield payload;
};

const tokens: RequestHandler = async function* (payload) {
  const { n } = decodeJson(payload) as { n: number };
  for (let i = 0; i < n; i++) yield encodeJson({ token_ids: [1000 + i], index: i });
};

interface Side {
  readonly name: 'local' | 'nats';
  readonly server: RequestPlane;
  readonly client: RequestPlane;
  readonly publisher: EventPlane;
  readonly subscriber: EventPlane;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function roundTripP50(side: Side, calls: number): Promise<number> {
  const payload = encodeJson({ ping: 1 });
  const samples = new Float64Array(calls);
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    for await (const chunk of side.client.call(endpoint, INSTANCE, payload))
      if (chunk.length === 0) throw new Error();
    samples[i] = performance.now() - t0;
  }
  return median(Array.from(samples)) * 1000;
}

async function streamTokensPerSecond(side: Side, streams: number): Promise<number> {
  const request = encodeJson({ n: STREAM_TOKENS });
  const streamEndpoint = endpointId('bench', 'backend', 'stream');
  let next = 0;
  let received = 0;
  const worker = async () => {
    while (next++ < streams) {
      let expected = 0;
      for await (const chunk of side.client.call(streamEndpoint, INSTANCE, request)) {
        const { index } = decodeJson(chunk) as { index: number };
        if (index !== expected++) throw new Error('out of order');
        received++;
      }
      if (expected !== STREAM_TOKENS) throw new Error('short stream');
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: STREAM_CONCURRENCY }, worker));
  return received / ((performance.now() - t0) / 1000);
}

function kvEvent(i: number): RouterEvent {
  const base = BigInt(i) * 1_000_003n + 0xf00d_0000_0000_0000n;
  return {
    workerId: 0x7d5a_13f2_9c44_e001n,
    event: {
      eventId: BigInt(i),
      dpRank: i % 4,
      data: {
        kind: 'stored',
        parentHash: i === 0 ? null : base - 1n,
        blocks: Array.from({ length: BLOCKS_PER_EVENT }, (_, b) => ({
          blockHash: base + BigInt(b),
          tokensHash: (base ^ 0x5555_5555_5555_5555n) + BigInt(b),
        })),
      },
    },
  };
}

async function eventsPerSecond(side: Side, count: number, round: number, decode = true): Promise<number> {
  const subject = `bench.kv-events.${side.name}.${round}.${decode ? 'decoded' : 'raw'}`;
  const textDecoder = new TextDecoder();
  const encoder = new TextEncoder();
  const payloads = Array.from({ length: 1024 }, (_, i) => encoder.encode(encodeRouterEvent(kvEvent(i))));
  let received = 0;
  let failed = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const sub = side.subscriber.subscribe(subject, (m) => {
    if (decode && !decodeRouterEvent(textDecoder.decode(m.payload)).ok) failed++;
    if (++received === count) done();
  });
  await side.subscriber.flush();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    side.publisher.publish(subject, payloads[i & 1023]);
    if ((i & 1023) === 1023) await side.publisher.flush();
  }
  await side.publisher.flush();
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  sub.unsubscribe();
  if (failed > 0) throw new Error(`${failed} events failed to decode`);
  return count / seconds;
}

async function setUp(side: Side): Promise<void> {
  await side.server.serve(endpoint, INSTANCE, echoOne);
  await side.server.serve(endpointId('bench', 'backend', 'stream'), INSTANCE, tokens);
}

// ---- KV events into the router --------------------------------------------------------------

const ROUTER_WORKER = 0x5eed_0000_0000_0001n;
const ROUTER_RANKS = 4;
const ROUTER_NAMESPACE = 'benchrouter';

/** One side's worker-facing and router-facing runtimes (discovery in-process for both sides). */
interface RouterSide {
  readonly name: 'local' | 'nats';
  readonly worker: Runtime;
  readonly router: Runtime;
  modelRouter?: ModelRouter;
  /** Next event id per rank (ids continue across rounds). */
  readonly nextId: number[];
  /** Every event published, per rank, for range recovery should the router ask. */
  readonly history: RouterEvent[][];
}

function composedRuntime(store: LocalKvStore, requests: RequestPlane, events: EventPlane): Runtime {
  const malformed = new MalformedCounter();
  const discovery = new KvDiscovery(store, { malformed });
  return {
    discovery,
    requests,
    events,
    malformed,
    close: async () => {
      await discovery.close();
      await requests.close();
      await events.close();
    },
  };
}

function routerEvent(side: RouterSide, rank: number): RouterEvent {
  const id = side.nextId[rank]++;
  const pair = Math.floor(id / 2);
  const base = 0xb10c_0000_0000_0000n + (BigInt(rank) << 40n) + BigInt(pair) * 8n;
  const hashes = Array.from({ length: BLOCKS_PER_EVENT }, (_, b) => base + BigInt(b));
  return {
    workerId: ROUTER_WORKER,
    event: {
      eventId: BigInt(id),
      dpRank: rank,
      data:
        id % 2 === 0
          ? {
              kind: 'stored',
              parentHash: null,
              blocks: hashes.map((h) => ({ blockHash: h, tokensHash: h ^ 0x5555_5555_5555_5555n })),
            }
          : { kind: 'removed', blockHashes: hashes },
    },
  };
}

async function setUpRouterSide(side: RouterSide): Promise<void> {
  const queryEndpoint = endpointId(ROUTER_NAMESPACE, 'backend', KV_INDEXER_QUERY_ENDPOINT);
  await side.worker.requests.serve(queryEndpoint, ROUTER_WORKER, async function* (payload) {
    const q = kvIndexerQueryWireSchema.parse(decodeJson(payload));
    const history = side.history[q.dp_rank];
    if (q.start_event_id === undefined || q.end_event_id === undefined) {
      // The bench registers the worker before publishing anything: its dump is empty.
      yield encodeKvIndexerAnswer({ kind: 'dump', dpRank: q.dp_rank, lastEventId: null, events: [] });
      return;
    }
    const events = history.filter(
      (e) => e.event.eventId >= q.start_event_id! && e.event.eventId <= q.end_event_id!,
    );
    yield encodeKvIndexerAnswer({ kind: 'events', dpRank: q.dp_rank, lastEventId: q.end_event_id, events });
  });
  await side.worker.discovery.register(
    { endpoint: endpointId(ROUTER_NAMESPACE, 'backend', GENERATE_ENDPOINT), instanceId: ROUTER_WORKER },
    {
      modelName: 'bench-model',
      role: 'aggregated',
      kvBlockSize: 16,
      totalKvBlocks: 1 << 20,
      maxNumSeqs: 256,
      maxNumBatchedTokens: 8192,
      dataParallelSize: ROUTER_RANKS,
    },
  );
  side.modelRouter = await ModelRouter.create({
    runtime: side.router,
    namespace: ROUTER_NAMESPACE,
    model: 'bench-model',
    config: { blockSize: 16 },
  });
  while (side.modelRouter.instances().length === 0) await new Promise((r) => setTimeout(r, 5));
  await side.modelRouter.settled();
}

async function routerEventsPerSecond(side: RouterSide, count: number): Promise<number> {
  const router = side.modelRouter!;
  const encoder = new TextEncoder();
  const subject = kvEventsSubject(ROUTER_NAMESPACE, 'backend');
  const payloads: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const event = routerEvent(side, i % ROUTER_RANKS);
    side.history[event.event.dpRank].push(event);
    payloads.push(encoder.encode(encodeRouterEvent(event)));
  }
  for (const h of side.history) if (h.length > 4096) h.splice(0, h.length - 4096);
  const target = router.stats().events.applied + count;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    side.worker.events.publish(subject, payloads[i]);
    if ((i & 1023) === 1023) await side.worker.events.flush();
  }
  await side.worker.events.flush();
  while (router.stats().events.applied < target) await new Promise((r) => setImmediate(r));
  const seconds = (performance.now() - t0) / 1000;
  const stats = router.stats().events;
  if (stats.gaps > 0 || stats.malformed > 0)
    throw new Error(`router saw gaps or bad events: ${JSON.stringify(stats)}`);
  return count / seconds;
}

async function main(): Promise<void> {
  const natsServer = await startNatsServer();
  const connections: NatsConnection[] = [];
  const open = async () => {
    const nc = await connect({ servers: natsServer.url });
    connections.push(nc);
    return nc;
  };
  try {
    const cluster = new LocalCluster();
    const local: Side = {
      name: 'local',
      server: cluster.runtime().requests,
      client: cluster.runtime().requests,
      publisher: cluster.runtime().events,
      subscriber: cluster.runtime().events,
    };
    const [serverNc, clientNc, pubNc, subNc] = [await open(), await open(), await open(), await open()];
    const nats: Side = {
      name: 'nats',
      server: new NatsRequestPlane(serverNc),
      client: new NatsRequestPlane(clientNc),
      publisher: new NatsEventPlane(pubNc),
      subscriber: new NatsEventPlane(subNc),
    };
    await setUp(local);
    await setUp(nats);

    const localStore = new LocalKvStore();
    const natsStore = new LocalKvStore();
    const routerSides: RouterSide[] = [
      {
        name: 'local',
        worker: composedRuntime(localStore, cluster.runtime().requests, cluster.runtime().events),
        router: composedRuntime(localStore, cluster.runtime().requests, cluster.runtime().events),
        nextId: new Array(ROUTER_RANKS).fill(0),
        history: Array.from({ length: ROUTER_RANKS }, () => []),
      },
      {
        name: 'nats',
        worker: composedRuntime(
          natsStore,
          new NatsRequestPlane(await open()),
          new NatsEventPlane(await open()),
        ),
        router: composedRuntime(
          natsStore,
          new NatsRequestPlane(await open()),
          new NatsEventPlane(await open()),
        ),
        nextId: new Array(ROUTER_RANKS).fill(0),
        history: Array.from({ length: ROUTER_RANKS }, () => []),
      },
    ];
    for (const side of routerSides) await setUpRouterSide(side);

    // Warm-up (JIT, connections).
    for (const side of [local, nats]) {
      await roundTripP50(side, 200);
      await streamTokensPerSecond(side, 50);
      await eventsPerSecond(side, 5_000, -1);
    }
    for (const side of routerSides) await routerEventsPerSecond(side, 5_000);

    const results: Record<string, number[]> = {};
    const record = (name: string, value: number) => {
      results[name] ??= [];
      results[name].push(value);
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const side of round % 2 === 0 ? [local, nats] : [nats, local]) {
        record(`${side.name}_rtt_us_p50`, await roundTripP50(side, RTT_CALLS[side.name]));
        record(
          `${side.name}_stream_tokens_per_s`,
          await streamTokensPerSecond(side, STREAMS_PER_ROUND[side.name]),
        );
        record(`${side.name}_events_per_s`, await eventsPerSecond(side, EVENTS_PER_ROUND[side.name], round));
        record(
          `${side.name}_raw_events_per_s`,
          await eventsPerSecond(side, EVENTS_PER_ROUND[side.name], round, false),
        );
        const routerSide = routerSides.find((r) => r.name === side.name)!;
        record(
          `${side.name}_router_events_per_s`,
          await routerEventsPerSecond(routerSide, EVENTS_PER_ROUND[side.name]),
        );
      }
    }
    const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
    const fmt = (v: number, digits = 0) => v.toFixed(digits).padStart(12);
    console.log(
      `runtime planes, median of ${ROUNDS} interleaved rounds (nats-server on loopback, same 2 cores)`,
    );
    console.log(`                               local          nats   local/nats`);
    console.log(
      `round trip p50 (us)     ${fmt(m.local_rtt_us_p50, 1)}  ${fmt(m.nats_rtt_us_p50, 1)}   ${(m.nats_rtt_us_p50 / m.local_rtt_us_p50).toFixed(1)}x faster`,
    );
    console.log(`stream tokens/s (64-token streams x ${STREAM_CONCURRENCY} concurrent)`);
    console.log(
      `                        ${fmt(m.local_stream_tokens_per_s)}  ${fmt(m.nats_stream_tokens_per_s)}   ${(m.local_stream_tokens_per_s / m.nats_stream_tokens_per_s).toFixed(1)}x`,
    );
    console.log(`KV events/s (encode -> pub/sub -> decodeRouterEvent, ${BLOCKS_PER_EVENT} blocks each)`);
    console.log(
      `                        ${fmt(m.local_events_per_s)}  ${fmt(m.nats_events_per_s)}   ${(m.local_events_per_s / m.nats_events_per_s).toFixed(1)}x`,
    );
    console.log(`  same, transport only (no decode)`);
    console.log(
      `                        ${fmt(m.local_raw_events_per_s)}  ${fmt(m.nats_raw_events_per_s)}   ${(m.local_raw_events_per_s / m.nats_raw_events_per_s).toFixed(1)}x`,
    );
    console.log(`KV events/s into the router (pub/sub -> ModelRouter: decode, id tracking, radix tree)`);
    console.log(
      `                        ${fmt(m.local_router_events_per_s)}  ${fmt(m.nats_router_events_per_s)}   ${(m.local_router_events_per_s / m.nats_router_events_per_s).toFixed(1)}x`,
    );
    console.log(
      `  router ingestion over decode-only (nats): ${(m.nats_router_events_per_s / m.nats_events_per_s).toFixed(2)}x`,
    );
    console.log(
      JSON.stringify({
        nats_rtt_us_p50: Number(m.nats_rtt_us_p50.toFixed(1)),
        nats_stream_tokens_per_s: Math.round(m.nats_stream_tokens_per_s),
        events_per_s: Math.round(m.nats_router_events_per_s),
        local_router_events_per_s: Math.round(m.local_router_events_per_s),
        router_over_decode_only: Number((m.nats_router_events_per_s / m.nats_events_per_s).toFixed(2)),
        nats_decode_only_events_per_s: Math.round(m.nats_events_per_s),
        local_over_nats: Number((m.local_stream_tokens_per_s / m.nats_stream_tokens_per_s).toFixed(2)),
        local_rtt_us_p50: Number(m.local_rtt_us_p50.toFixed(2)),
        local_stream_tokens_per_s: Math.round(m.local_stream_tokens_per_s),
        local_events_per_s: Math.round(m.local_events_per_s),
        nats_raw_events_per_s: Math.round(m.nats_raw_events_per_s),
        local_raw_events_per_s: Math.round(m.local_raw_events_per_s),
        rtt_local_over_nats: Number((m.nats_rtt_us_p50 / m.local_rtt_us_p50).toFixed(2)),
      }),
    );
    for (const side of routerSides) {
      await side.modelRouter?.close();
      await side.router.close();
      await side.worker.close();
    }
    await nats.server.close();
    await nats.client.close();
  } finally {
    await Promise.allSettled(connections.map((nc) => nc.close()));
    await natsServer.dispose();
  }
}

await main();
