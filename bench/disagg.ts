/**
 * Aggregated vs disaggregated serving, same workload, same number of engine ranks.
 *
 * - aggregated (baseline): 4 aggregated workers x dp 2 = 8 ranks behind the KV router.
 * - disaggregated: 2 prefill workers x dp 2 + 2 decode workers x dp 2 = 8 ranks (--prefill-workers
 *   sets the split); the prefill
 *   router (KV- and DP-aware) picks the prefill rank, the decode router the decode rank, and the
 *   decode engines pull the KV from exactly that prefill rank (in-process transfer).
 *
 * Both run the embedded layout (real Workers on the local runtime, real routers, the mock engines'
 * timing model) on one VirtualClock per layout: the clock advances only when every promise hop
 * between router, workers and engines has settled, so latencies are the engines' modelled times,
 * independent of this machine's load (runs differ only by random worker ids and tie-breaks). Requests arrive as
 * a seeded Poisson process. Long prompts (a shared system prefix on a third of them) and 64-160
 * output tokens: in the aggregated layout a rank that prefills stalls the decodes batched with it
 * (inter-token latency spikes); disaggregated decode ranks never prefill but hold more sequences
 * each. Reported: TTFT and ITL p50 / p99 in engine ms, side by side, disaggregated / aggregated.
 *
 * Usage: npm run bench:disagg [-- --requests N --rate R --seed S --prefill-workers P]
 * Last stdout line: JSON with agg_/disagg_ ttft and itl p50/p99 (ms) and the ratios.
 */
import { availableParallelism, loadavg } from 'node:os';
import { percentile, round, sortedCopy } from '../src/bench/stats.ts';
import type { DisaggregatedModelRouter } from '../src/cluster/disagg/disaggregated-model-router.ts';
import {
  type DisaggregatedWorkersOptions,
  startDisaggregatedRouter,
  startDisaggregatedWorkers,
} from '../src/cluster/disagg/embedded.ts';
import { VirtualClock } from '../src/util/virtual-clock.ts';

const args = process.argv.slice(2);
function flag(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

const REQUESTS = Math.floor(flag('requests', 300));
/** Arrivals per second of engine time. */
const RATE = flag('rate', 20);
/** Disaggregated split of the 4 workers (x dp 2). */
const PREFILL_WORKERS = Math.floor(flag('prefill-workers', 2));
const DECODE_WORKERS = 4 - PREFILL_WORKERS;
if (DECODE_WORKERS < 1)
  throw new Error('--prefill-workers must leave at least one of the 4 workers for decode');
const SEED = Math.floor(flag('seed', 7));
const MODEL = 'bench-disagg';
const BLOCK_SIZE = 64;
const ENGINE = {
  blockSize: BLOCK_SIZE,
  dataParallelSize: 2,
  numGpuBlocks: 8192,
  maxNumSeqs: 256,
  maxNumBatchedTokens: 8192,
  speedupRatio: 1,
} as const;

interface Job {
  readonly at: number; // engine ms after start
  readonly tokens: number[];
  readonly maxTokens: number;
}

function rng(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

function workload(): Job[] {
  const random = rng(SEED);
  const tokens = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 100_000));
  const prefixes = Array.from({ length: 6 }, () => tokens(1024));
  const jobs: Job[] = [];
  let at = 0;
  for (let i = 0; i < REQUESTS; i++) {
    at += (-Math.log(1 - random()) / RATE) * 1000;
    const suffix = tokens(2500 + Math.floor(random() * 4000));
    const shared = random() < 1 / 3;
    jobs.push({
      at,
      tokens: shared ? [...prefixes[Math.floor(random() * prefixes.length)], ...suffix] : suffix,
      maxTokens: 64 + Math.floor(random() * 97),
    });
  }
  return jobs;
}

interface Result {
  readonly ttft: Float64Array;
  readonly itl: Float64Array;
  readonly wallMs: number;
  readonly engineMs: number;
  readonly disaggregated: number;
  readonly failed: number;
}

async function runLayout(
  name: string,
  layout: DisaggregatedWorkersOptions,
  jobs: readonly Job[],
): Promise<Result> {
  const clock = new VirtualClock();
  const workers = await startDisaggregatedWorkers({ ...layout, engine: { ...layout.engine, clock } });
  const runtime = workers.cluster.runtime();
  const handle = await startDisaggregatedRouter({
    runtime,
    model: MODEL,
    routerConfig: { blockSize: BLOCK_SIZE },
    expect: { prefill: layout.prefillWorkers, decode: layout.decodeWorkers },
  });
  try {
    const ttft: number[] = [];
    const itl: number[] = [];
    const running: Promise<void>[] = [];
    let disaggregated = 0;
    let failed = 0;
    const wallStart = performance.now();
    const start = clock.now();
    for (const [i, job] of jobs.entries())
      clock.setTimer(
        () => {
          const sent = clock.now();
          let last = Number.NaN;
          running.push(
            drain(handle.router, `${name}-${i}`, job.tokens, job.maxTokens, (count, isDisagg) => {
              const now = clock.now();
              if (Number.isNaN(last)) {
                ttft.push(now - sent);
                if (isDisagg) disaggregated++;
                for (let k = 1; k < count; k++) itl.push(0);
              } else for (let k = 0; k < count; k++) itl.push((now - last) / count);
              last = now;
            }).catch((error: unknown) => {
              failed++;
              process.stderr.write(`${name}-${i}: ${error instanceof Error ? error.message : error}\n`);
            }),
          );
        },
        start + job.at - clock.now(),
      );
    await clock.settle();
    await Promise.all(running);
    return {
      ttft: sortedCopy(ttft),
      itl: sortedCopy(itl),
      wallMs: performance.now() - wallStart,
      engineMs: clock.now() - start,
      disaggregated,
      failed,
    };
  } finally {
    await handle.close();
    await workers.close();
    await runtime.close();
  }
}

async function drain(
  router: DisaggregatedModelRouter,
  requestId: string,
  tokens: readonly number[],
  maxTokens: number,
  onTokens: (count: number, disaggregated: boolean) => void,
): Promise<void> {
  for await (const chunk of router.generate({
    requestId,
    tokenIds: tokens,
    sampling: { maxTokens, ignoreEos: true },
  }))
    if (chunk.tokenIds.length > 0) onTokens(chunk.tokenIds.length, chunk.disaggregated);
}

const jobs = workload();
const meanIsl = jobs.reduce((s, j) => s + j.tokens.length, 0) / jobs.length;
console.log(
  `bench:disagg  ${REQUESTS} requests, Poisson ${RATE}/s (engine time), mean ISL ${Math.round(meanIsl)}, OSL 64-160, ` +
    `virtual clock, 8 ranks per layout; ${availableParallelism()} cores, load ${loadavg()[0].toFixed(2)}`,
);
const agg = await runLayout(
  'agg',
  {
    model: MODEL,
    prefillWorkers: 0,
    decodeWorkers: 4,
    decodeRole: 'aggregated',
    engine: ENGINE,
    drainTimeoutMs: 0,
  },
  jobs,
);
const disagg = await runLayout(
  'disagg',
  {
    model: MODEL,
    prefillWorkers: PREFILL_WORKERS,
    decodeWorkers: DECODE_WORKERS,
    engine: ENGINE,
    drainTimeoutMs: 0,
  },
  jobs,
);

const p = (values: Float64Array, q: number) => round(percentile(values, q * 100), 2);
const rows = [
  ['', 'aggregated (4 x dp2)', `disaggregated (${PREFILL_WORKERS}P+${DECODE_WORKERS}D x dp2)`, 'disagg/agg'],
  ['TTFT p50 ms', p(agg.ttft, 0.5), p(disagg.ttft, 0.5), round(p(disagg.ttft, 0.5) / p(agg.ttft, 0.5), 3)],
  [
    'TTFT p99 ms',
    p(agg.ttft, 0.99),
    p(disagg.ttft, 0.99),
    round(p(disagg.ttft, 0.99) / p(agg.ttft, 0.99), 3),
  ],
  ['ITL p50 ms', p(agg.itl, 0.5), p(disagg.itl, 0.5), round(p(disagg.itl, 0.5) / p(agg.itl, 0.5), 3)],
  ['ITL p99 ms', p(agg.itl, 0.99), p(disagg.itl, 0.99), round(p(disagg.itl, 0.99) / p(agg.itl, 0.99), 3)],
  ['requests disaggregated', agg.disaggregated, disagg.disaggregated, ''],
  ['failed', agg.failed, disagg.failed, ''],
  ['engine time s', round(agg.engineMs / 1000, 2), round(disagg.engineMs / 1000, 2), ''],
  ['wall s', round(agg.wallMs / 1000, 2), round(disagg.wallMs / 1000, 2), ''],
];
for (const row of rows)
  console.log(
    row
      .map((cell, i) => (i === 0 ? String(cell).padEnd(24) : String(cell).padStart(i === 3 ? 12 : 28)))
      .join(''),
  );
console.log(
  JSON.stringify({
    requests: REQUESTS,
    rate_per_s: RATE,
    prefill_workers: PREFILL_WORKERS,
    decode_workers: DECODE_WORKERS,
    agg_ttft_p50_ms: p(agg.ttft, 0.5),
    disagg_ttft_p50_ms: p(disagg.ttft, 0.5),
    agg_ttft_p99_ms: p(agg.ttft, 0.99),
    disagg_ttft_p99_ms: p(disagg.ttft, 0.99),
    agg_itl_p50_ms: p(agg.itl, 0.5),
    disagg_itl_p50_ms: p(disagg.itl, 0.5),
    agg_itl_p99_ms: p(agg.itl, 0.99),
    disagg_itl_p99_ms: p(disagg.itl, 0.99),
    ttft_p50_ratio: round(p(disagg.ttft, 0.5) / p(agg.ttft, 0.5), 3),
    itl_p99_ratio: round(p(disagg.itl, 0.99) / p(agg.itl, 0.99), 3),
    disaggregated_requests: disagg.disaggregated,
    failed: agg.failed + disagg.failed,
  }),
);
