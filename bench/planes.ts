/**
 * Runtime planes: the local (in-process) request plane against the NATS request plane, side by
 * side in one process, on a nats-server this bench starts itself (test/support/servers.ts).
 *   - round trip: one call, one small chunk back, sequential; p50 in µs;
 *   - streaming: 64-token streams (each token a small JSON chunk, encoded by the handler and
 *     decoded by the caller), 16 concurrent callers; tokens/s;
 *   - events: KV events (src/kv/codec.ts encodeRouterEvent) through NATS core pub/sub, decoded
 *     and validated at the subscriber with decodeRouterEvent; events/s (and without the decode, the
 *     transport alone). Local event plane alongside.
 * Rounds are interleaved (this VM is noisy); medians are reported. Last stdout line is JSON.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { connect } from '@nats-io/transport-node';
import { decodeRouterEvent, encodeRouterEvent } from '../src/kv/codec.ts';
import type { RouterEvent } from '../src/kv/events.ts';
import { decodeJson, encodeJson } from '../src/runtime/codec.ts';
import { LocalCluster } from '../src/runtime/local/cluster.ts';
import { NatsEventPlane } from '../src/runtime/nats/event-plane.ts';
import { NatsRequestPlane } from '../src/runtime/nats/request-plane.ts';
import { type EventPlane, endpointId, type RequestHandler, type RequestPlane } from '../src/runtime/types.ts';
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

    // Warm-up (JIT, connections).
    for (const side of [local, nats]) {
      await roundTripP50(side, 200);
      await streamTokensPerSecond(side, 50);
      await eventsPerSecond(side, 5_000, -1);
    }

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
    console.log(
      JSON.stringify({
        nats_rtt_us_p50: Number(m.nats_rtt_us_p50.toFixed(1)),
        nats_stream_tokens_per_s: Math.round(m.nats_stream_tokens_per_s),
        events_per_s: Math.round(m.nats_events_per_s),
        local_over_nats: Number((m.local_stream_tokens_per_s / m.nats_stream_tokens_per_s).toFixed(2)),
        local_rtt_us_p50: Number(m.local_rtt_us_p50.toFixed(2)),
        local_stream_tokens_per_s: Math.round(m.local_stream_tokens_per_s),
        local_events_per_s: Math.round(m.local_events_per_s),
        nats_raw_events_per_s: Math.round(m.nats_raw_events_per_s),
        local_raw_events_per_s: Math.round(m.local_raw_events_per_s),
        rtt_local_over_nats: Number((m.nats_rtt_us_p50 / m.local_rtt_us_p50).toFixed(2)),
      }),
    );
    await nats.server.close();
    await nats.client.close();
  } finally {
    await Promise.allSettled(connections.map((nc) => nc.close()));
    await natsServer.dispose();
  }
}

await main();
