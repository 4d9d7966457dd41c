/**
 * Router decisions: 4096-token prompts (block size 16, 256 blocks) over 64 workers × 8 dp ranks
 * (512 candidates), with a warm radix-tree index (every rank caches several prompts that share
 * system prefixes) and realistic in-flight load (requests added, prefilled and freed as we go).
 *
 * Measured in interleaved rounds in one process (this VM is noisy), after one unrecorded warm-up
 * round of every series (so their first optimisations and deopts are not timed):
 *   - kv route() from tokens: hashing + tree walk + scoring + load tracking (the figure that counts);
 *   - kv routeHashed() on pre-hashed prompts: routing without hashing;
 *   - the hashing and the tree walk alone on the same prompts, to split the decision time;
 *   - the round-robin policy's route() on the same prompts and lifecycle (the baseline).
 * Process CPU time (loop totals) is reported next to wall time. `--compare <dir>` also races two fresh
 * routers in interleaved rounds, this tree's and the one in <dir> (another checkout's src/, with a
 * package.json of type module and node_modules next to it), and checks they decide identically.
 * Last stdout line is JSON.
 */
import { availableParallelism, loadavg } from 'node:os';
import type { RouterEvent } from '../src/kv/events.ts';
import { KvRouter } from '../src/routing/kv-router.ts';
import { RoundRobinPolicy } from '../src/routing/policies/round-robin.ts';
import type { RoutingPolicy } from '../src/routing/policy.ts';
import { seededRandom } from '../src/routing/random.ts';
import { BlockHasher } from '../src/tokens/block-hash.ts';
import { unpackU64s } from '../src/tokens/u64.ts';

const WORKERS = 64;
const DP = 8;
const BLOCK_SIZE = 16;
const ISL = 4096;
const BLOCKS = ISL / BLOCK_SIZE;
const GROUPS = 128; // distinct system prefixes
const PREFIX_BLOCKS = 128; // half of each prompt is its group's prefix
const CACHED_PER_RANK = 4; // full prompts cached per rank in the warm index
const IN_FLIGHT_PER_RANK = 4; // steady-state in-flight requests per rank
const POOL = 1024; // query prompts
const ROUNDS = 6;
const PER_ROUND = 2500;
const VOCAB = 152_064;

const random = seededRandom(20_251_125);
const hasher = new BlockHasher({ blockSize: BLOCK_SIZE });

function tokensFrom(seed: number, count: number): Uint32Array {
  const r = seededRandom(seed);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(r() * VOCAB);
  return out;
}

const prefixes = Array.from({ length: GROUPS }, (_, g) => tokensFrom(1_000 + g, PREFIX_BLOCKS * BLOCK_SIZE));
function prompt(group: number, suffixSeed: number): Uint32Array {
  const out = new Uint32Array(ISL);
  out.set(prefixes[group]);
  out.set(tokensFrom(suffixSeed, ISL - PREFIX_BLOCKS * BLOCK_SIZE), PREFIX_BLOCKS * BLOCK_SIZE);
  return out;
}

// ---- warm index: every rank caches CACHED_PER_RANK prompts from a few groups --------------------
const cachedPrompts: Uint32Array[] = [];
const events: RouterEvent[] = [];
let eventId = 0n;
for (let w = 0; w < WORKERS; w++) {
  for (let rank = 0; rank < DP; rank++) {
    for (let j = 0; j < CACHED_PER_RANK; j++) {
      const group = (w * DP + rank + j * 37) % GROUPS;
      const tokens = prompt(group, 50_000 + cachedPrompts.length);
      cachedPrompts.push(tokens);
      const local = unpackU64s(hasher.localHashes(tokens));
      const sequence = unpackU64s(hasher.sequenceHashes(hasher.localHashes(tokens)));
      events.push({
        workerId: BigInt(1000 + w),
        event: {
          eventId: eventId++,
          dpRank: rank,
          data: {
            kind: 'stored',
            parentHash: null,
            blocks: sequence.map((blockHash, i) => ({ blockHash, tokensHash: local[i] })),
          },
        },
      });
    }
  }
}

// Query prompts: half are follow-ups of cached prompts (full hit somewhere), half new suffixes on a
// known prefix (half hit on several ranks).
const pool: Uint32Array[] = [];
for (let i = 0; i < POOL; i++) {
  if (i % 2 === 0) pool.push(cachedPrompts[Math.floor(random() * cachedPrompts.length)]);
  else pool.push(prompt(Math.floor(random() * GROUPS), 90_000 + i));
}
const poolArrays = pool.slice(0, 256).map((p) => Array.from(p));

function addWorkers(policy: RoutingPolicy): void {
  for (let w = 0; w < WORKERS; w++) policy.addWorker(BigInt(1000 + w), { dataParallelSize: DP });
}

const kv = new KvRouter({ blockSize: BLOCK_SIZE }, { random: seededRandom(1) });
addWorkers(kv);
const buildStart = performance.now();
for (const event of events) {
  const error = kv.applyEvent(event);
  if (error !== null) throw error;
}
const buildMs = performance.now() - buildStart;
const hashedPool = pool.map((p) => kv.hashPrompt(p));
const rr = new RoundRobinPolicy({ blockSize: BLOCK_SIZE, random: seededRandom(2) });
addWorkers(rr);

/** Steady-state lifecycle: the newest requests are prefilling, the oldest are freed. */
class Lifecycle {
  private readonly ids: string[] = [];
  private head = 0;
  private next = 0;
  constructor(
    private readonly policy: RoutingPolicy,
    private readonly prefix: string,
  ) {}
  id(): string {
    return `${this.prefix}-${this.next++}`;
  }
  after(id: string): void {
    this.ids.push(id);
    const live = this.ids.length - this.head;
    const prefilling = 64;
    if (live > prefilling) this.policy.markPrefillCompleted(this.ids[this.ids.length - 1 - prefilling]);
    if (live > WORKERS * DP * IN_FLIGHT_PER_RANK) this.policy.free(this.ids[this.head++]);
    if (this.head > 100_000) {
      this.ids.splice(0, this.head);
      this.head = 0;
    }
  }
}

const kvLife = new Lifecycle(kv, 'kv');
const rrLife = new Lifecycle(rr, 'rr');
const compareAt = process.argv.indexOf('--compare');
const comparisonSides = compareAt > 0 ? await buildComparison(process.argv[compareAt + 1]) : undefined;
// The events hold ~1M bigints: drop them before measuring so that garbage collections stay short.
const eventCount = events.length;
events.length = 0;

// Fill the in-flight load before measuring.
for (let i = 0; i < WORKERS * DP * IN_FLIGHT_PER_RANK + 500; i++) {
  const id = kvLife.id();
  kv.route(id, pool[i % POOL]);
  kvLife.after(id);
  const rid = rrLife.id();
  rr.route(rid, pool[i % POOL]);
  rrLife.after(rid);
}

// Setup leaves much garbage (events, hashed prompts, other routers): let the collector finish it
// while idle rather than on the measured rounds' time (its threads count in the process CPU time).
await new Promise((resolve) => setTimeout(resolve, 1500));

type Series = 'kv' | 'kv_number_array' | 'kv_prehashed' | 'hash' | 'tree' | 'rr';
const samples = new Map<Series, number[]>(
  (['kv', 'kv_number_array', 'kv_prehashed', 'hash', 'tree', 'rr'] as const).map((s) => [s, []]),
);
/** False during the warm-up round: every series runs once (JIT settles) before anything is recorded. */
let measuring = false;
const record = (series: Series, us: number) => {
  if (measuring) samples.get(series)!.push(us);
};
/**
 * Process CPU time (user + system, µs) spent in each series' loops, and their iteration counts: unlike
 * wall time it does not grow while the process waits for a core on this shared VM. The kv loops also
 * run the lifecycle (prefill completed + free of an older request) after each decision.
 */
const cpuTotals = new Map<Series, { us: number; n: number }>(
  (['kv', 'kv_number_array', 'kv_prehashed', 'hash', 'tree', 'rr'] as const).map((s) => [s, { us: 0, n: 0 }]),
);
let loopCpu = process.cpuUsage();
const startLoop = () => {
  loopCpu = process.cpuUsage();
};
const endLoop = (series: Series, n: number) => {
  if (!measuring) return;
  const used = process.cpuUsage(loopCpu);
  const total = cpuTotals.get(series)!;
  total.us += used.user + used.system;
  total.n += n;
};

const localOut = new Uint32Array(2 * BLOCKS);
const sequenceOut = new Uint32Array(2 * BLOCKS);
let sink = 0;
let cursor = 0;
for (let round = -1; round < ROUNDS; round++) {
  measuring = round >= 0;
  const start = cursor;
  startLoop();
  for (let i = 0; i < PER_ROUND; i++) {
    const id = kvLife.id();
    const p = pool[(start + i) % POOL];
    const t0 = performance.now();
    const d = kv.route(id, p);
    const t1 = performance.now();
    record('kv', (t1 - t0) * 1000);
    sink += d.dpRank;
    kvLife.after(id);
  }
  endLoop('kv', PER_ROUND);
  startLoop();
  for (let i = 0; i < PER_ROUND / 5; i++) {
    const id = kvLife.id();
    const p = poolArrays[(start + i) % poolArrays.length];
    const t0 = performance.now();
    const d = kv.route(id, p);
    const t1 = performance.now();
    record('kv_number_array', (t1 - t0) * 1000);
    sink += d.dpRank;
    kvLife.after(id);
  }
  endLoop('kv_number_array', PER_ROUND / 5);
  startLoop();
  for (let i = 0; i < PER_ROUND; i++) {
    const id = kvLife.id();
    const h = hashedPool[(start + i) % POOL];
    const t0 = performance.now();
    const d = kv.routeHashed(id, h);
    const t1 = performance.now();
    record('kv_prehashed', (t1 - t0) * 1000);
    sink += d.overlapBlocks;
    kvLife.after(id);
  }
  endLoop('kv_prehashed', PER_ROUND);
  startLoop();
  for (let i = 0; i < PER_ROUND; i++) {
    const p = pool[(start + i) % POOL];
    const t0 = performance.now();
    // The router's own call: local and sequence hashes in one kernel pass.
    hasher.blockHashes(p, localOut, sequenceOut);
    const t1 = performance.now();
    record('hash', (t1 - t0) * 1000);
    sink += sequenceOut[0] & 1;
  }
  endLoop('hash', PER_ROUND);
  startLoop();
  for (let i = 0; i < PER_ROUND; i++) {
    const h = hashedPool[(start + i) % POOL];
    const t0 = performance.now();
    const scores = kv.indexer.findMatches(h.localHashes);
    const t1 = performance.now();
    record('tree', (t1 - t0) * 1000);
    sink += scores.count;
  }
  endLoop('tree', PER_ROUND);
  startLoop();
  for (let i = 0; i < PER_ROUND; i++) {
    const id = rrLife.id();
    const p = pool[(start + i) % POOL];
    const t0 = performance.now();
    const d = rr.route(id, p);
    const t1 = performance.now();
    record('rr', (t1 - t0) * 1000);
    sink += d.dpRank;
    rrLife.after(id);
  }
  endLoop('rr', PER_ROUND);
  cursor += PER_ROUND;
}

// Process CPU time per decision (process.cpuUsage, µs resolution, all threads of the process, so
// concurrent GC work counts too): unlike wall-clock time it does not grow while this shared VM has
// the process descheduled mid-decision. The empty-probe cost is subtracted.
const cpuSamples = { kv: [] as number[], kv_prehashed: [] as number[] };
const emptyProbe: number[] = [];
for (let i = 0; i < 2000; i++) {
  const c0 = process.cpuUsage();
  const c = process.cpuUsage(c0);
  emptyProbe.push(c.user + c.system);
}
const probeCost = Float64Array.from(emptyProbe).sort()[emptyProbe.length >> 1];
for (let i = 0; i < 3 * PER_ROUND; i++) {
  const p = pool[(cursor + i) % POOL];
  const h = hashedPool[(cursor + i) % POOL];
  let id = kvLife.id();
  let c0 = process.cpuUsage();
  sink += kv.route(id, p).dpRank;
  let c = process.cpuUsage(c0);
  cpuSamples.kv.push(Math.max(0, c.user + c.system - probeCost));
  kvLife.after(id);
  id = kvLife.id();
  c0 = process.cpuUsage();
  sink += kv.routeHashed(id, h).dpRank;
  c = process.cpuUsage(c0);
  cpuSamples.kv_prehashed.push(Math.max(0, c.user + c.system - probeCost));
  kvLife.after(id);
}
function cpuPercentiles(values: number[]) {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p99: at(0.99) };
}
const cpuKv = cpuPercentiles(cpuSamples.kv);
const cpuPrehashed = cpuPercentiles(cpuSamples.kv_prehashed);

// ---- optional: before/after against another source tree, interleaved in this process -----------
// `--compare <dir>`: <dir> is another checkout's src/ (e.g. `git worktree add /tmp/before <rev>`,
// then `--compare /tmp/before/src`). Both routers get the same index, prompts and lifecycle.
interface CompareSide {
  readonly router: RoutingPolicy & { routeHashed(id: string, prompt: unknown): { dpRank: number } };
  readonly life: Lifecycle;
  readonly hashed: unknown[];
  readonly wall: number[];
  readonly hashedWall: number[];
  cpu: number;
  hashedCpu: number;
  n: number;
}
async function buildComparison(dir: string) {
  const module = (await import(`${dir}/routing/kv-router.ts`)) as { KvRouter: typeof KvRouter };
  const randomModule = (await import(`${dir}/routing/random.ts`)) as { seededRandom: typeof seededRandom };
  // Two fresh routers with the same history, so their decisions can be compared one by one.
  const build = (Router: typeof KvRouter, random: typeof seededRandom, name: string): CompareSide => {
    const router = new Router({ blockSize: BLOCK_SIZE }, { random: random(1) });
    addWorkers(router);
    for (const event of events) {
      const error = router.applyEvent(event);
      if (error !== null) throw error;
    }
    const life = new Lifecycle(router, name);
    for (let i = 0; i < WORKERS * DP * IN_FLIGHT_PER_RANK + 500; i++) {
      const id = life.id();
      router.route(id, pool[i % POOL]);
      life.after(id);
    }
    const hashed = pool.map((p) => router.hashPrompt(p));
    return { router, life, hashed, wall: [], hashedWall: [], cpu: 0, hashedCpu: 0, n: 0 };
  };
  const sides = {
    before: build(module.KvRouter, randomModule.seededRandom, 'before'),
    after: build(KvRouter, seededRandom, 'after'),
  };
  return sides;
}

function runComparison(sides: { before: CompareSide; after: CompareSide }) {
  let same = 0;
  const picks = { before: new Int32Array(PER_ROUND), after: new Int32Array(PER_ROUND) };
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which side goes first: the first one in a round pays for caches the other warmed.
    const order = Object.entries(sides) as [keyof typeof sides, CompareSide][];
    if (round % 2 === 1) order.reverse();
    for (const [name, x] of order) {
      let c0 = process.cpuUsage();
      for (let i = 0; i < PER_ROUND; i++) {
        const id = x.life.id();
        const t0 = performance.now();
        const d = x.router.route(id, pool[(cursor + i) % POOL]);
        x.wall.push((performance.now() - t0) * 1000);
        picks[name][i] = Number(d.workerId) * DP + d.dpRank;
        x.life.after(id);
      }
      let c = process.cpuUsage(c0);
      x.cpu += c.user + c.system;
      c0 = process.cpuUsage();
      for (let i = 0; i < PER_ROUND; i++) {
        const id = x.life.id();
        const t0 = performance.now();
        x.router.routeHashed(id, x.hashed[(cursor + i) % POOL]);
        x.hashedWall.push((performance.now() - t0) * 1000);
        x.life.after(id);
      }
      c = process.cpuUsage(c0);
      x.hashedCpu += c.user + c.system;
      x.n += PER_ROUND;
    }
    for (let i = 0; i < PER_ROUND; i++) if (picks.before[i] === picks.after[i]) same++;
    cursor += PER_ROUND;
  }
  const stats = (values: number[]) => {
    const sorted = Float64Array.from(values).sort();
    let sum = 0;
    for (const v of sorted) sum += v;
    return {
      perSecond: (1e6 * sorted.length) / sum,
      p50: sorted[sorted.length >> 1],
      p99: sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))],
    };
  };
  const report = Object.fromEntries(
    Object.entries(sides).map(([name, x]) => {
      const route = stats(x.wall);
      const hashed = stats(x.hashedWall);
      return [
        name,
        {
          decisions_per_s: Math.round(route.perSecond),
          p99_us: Number(route.p99.toFixed(2)),
          prehashed_p99_us: Number(hashed.p99.toFixed(2)),
          cpu_us_per_decision: Number((x.cpu / x.n).toFixed(2)),
          prehashed_cpu_us: Number((x.hashedCpu / x.n).toFixed(2)),
        },
      ];
    }),
  );
  console.log(`before/after (${ROUNDS} interleaved rounds; CPU per decision includes the lifecycle):`);
  for (const [name, r] of Object.entries(report))
    console.log(
      `  ${name.padEnd(7)} route ${String(r.decisions_per_s).padStart(7)} decisions/s, p99 ${r.p99_us} us, CPU ${r.cpu_us_per_decision} us; without hashing p99 ${r.prehashed_p99_us} us, CPU ${r.prehashed_cpu_us} us`,
    );
  console.log(`  identical decisions: ${same}/${sides.after.n}`);
  return { ...report, identical_decisions: same / sides.after.n };
}
const comparison = comparisonSides === undefined ? undefined : runComparison(comparisonSides);

function summary(series: Series) {
  const values = Float64Array.from(samples.get(series)!).sort();
  const at = (q: number) => values[Math.min(values.length - 1, Math.floor(q * values.length))];
  let sum = 0;
  for (const v of values) sum += v;
  return { mean: sum / values.length, p50: at(0.5), p99: at(0.99), perSecond: (1e6 * values.length) / sum };
}

const s = Object.fromEntries(
  (['kv', 'kv_number_array', 'kv_prehashed', 'hash', 'tree', 'rr'] as const).map((k) => [k, summary(k)]),
) as Record<Series, ReturnType<typeof summary>>;
const scoringMean = Math.max(0, s.kv_prehashed.mean - s.tree.mean);
const cpuPer = (k: Series) => cpuTotals.get(k)!.us / cpuTotals.get(k)!.n;
const cpu = Object.fromEntries(
  (['kv', 'kv_number_array', 'kv_prehashed', 'hash', 'tree', 'rr'] as const).map((k) => [k, cpuPer(k)]),
) as Record<Series, number>;
const hashShare = s.hash.mean / s.kv.mean;
const rrRatio = s.kv.perSecond / s.rr.perSecond;
const stats = kv.indexer.stats();
const fmt = (v: number) => v.toFixed(2).padStart(8);
const busy = kv.loads().filter((l) => l.activeRequests > 0).length;

console.log(
  `router: ${WORKERS} workers x ${DP} ranks = ${WORKERS * DP} candidates, ${ISL}-token prompts, block size ${BLOCK_SIZE}`,
);
console.log(
  `warm index: ${stats.entries} (block, rank) entries, ${stats.nodes} nodes, built from ${eventCount} events in ${buildMs.toFixed(0)} ms`,
);
console.log(
  `load: ~${WORKERS * DP * IN_FLIGHT_PER_RANK} requests in flight on ${busy} ranks; ${ROUNDS} interleaved rounds (sink ${sink & 1})`,
);
console.log('                                        mean us   p50 us   p99 us   decisions/s');
const line = (label: string, k: Series) =>
  console.log(
    `${label.padEnd(38)}${fmt(s[k].mean)} ${fmt(s[k].p50)} ${fmt(s[k].p99)}   ${Math.round(s[k].perSecond).toString().padStart(10)}`,
  );
line('kv route (Uint32Array tokens)', 'kv');
line('kv route (number[] tokens)', 'kv_number_array');
line('kv routeHashed (without hashing)', 'kv_prehashed');
line('  hashing alone (local + sequence)', 'hash');
line('  tree walk alone (findMatches)', 'tree');
line('round-robin route (baseline)', 'rr');
console.log(
  `split of a decision (means): hashing ${s.hash.mean.toFixed(2)} us (${(100 * hashShare).toFixed(0)}%), tree ${s.tree.mean.toFixed(2)} us, scoring + tracking ${scoringMean.toFixed(2)} us`,
);
console.log(
  `process CPU time per decision (all threads; excludes time descheduled): kv route p50 ${cpuKv.p50.toFixed(0)} us, p99 ${cpuKv.p99.toFixed(0)} us; without hashing p50 ${cpuPrehashed.p50.toFixed(0)} us, p99 ${cpuPrehashed.p99.toFixed(0)} us`,
);
console.log(
  `process CPU time per iteration (loop totals over all rounds; kv loops include the lifecycle): kv route ${cpu.kv.toFixed(2)} us (${Math.round(1e6 / cpu.kv)} decisions per CPU-second), number[] tokens ${cpu.kv_number_array.toFixed(2)} us, without hashing ${cpu.kv_prehashed.toFixed(2)} us, hashing alone ${cpu.hash.toFixed(2)} us, tree walk alone ${cpu.tree.toFixed(2)} us, round-robin ${cpu.rr.toFixed(2)} us`,
);
console.log(
  `CPU split of a decision: hashing ${cpu.hash.toFixed(2)} us (${((100 * cpu.hash) / cpu.kv).toFixed(0)}%), tree ${cpu.tree.toFixed(2)} us, scoring + tracking + lifecycle ${Math.max(0, cpu.kv_prehashed - cpu.tree).toFixed(2)} us`,
);
console.log(
  `kv / round-robin decisions per second: ${rrRatio.toFixed(3)}; load average ${loadavg()[0].toFixed(2)} on ${availableParallelism()} cores`,
);
console.log(
  JSON.stringify({
    decisions_per_s: Math.round(s.kv.perSecond),
    p50_us: Number(s.kv.p50.toFixed(2)),
    p99_us: Number(s.kv.p99.toFixed(2)),
    prehashed_p50_us: Number(s.kv_prehashed.p50.toFixed(2)),
    prehashed_p99_us: Number(s.kv_prehashed.p99.toFixed(2)),
    hashing_us: Number(s.hash.mean.toFixed(2)),
    tree_us: Number(s.tree.mean.toFixed(2)),
    scoring_us: Number(scoringMean.toFixed(2)),
    hash_share: Number(hashShare.toFixed(3)),
    rr_decisions_per_s: Math.round(s.rr.perSecond),
    rr_ratio: Number(rrRatio.toFixed(4)),
    cpu_p50_us: cpuKv.p50,
    cpu_p99_us: cpuKv.p99,
    prehashed_cpu_p99_us: cpuPrehashed.p99,
    cpu_us_per_decision: Number(cpu.kv.toFixed(2)),
    cpu_decisions_per_s: Math.round(1e6 / cpu.kv),
    prehashed_cpu_us: Number(cpu.kv_prehashed.toFixed(2)),
    hash_cpu_us: Number(cpu.hash.toFixed(2)),
    tree_cpu_us: Number(cpu.tree.toFixed(2)),
    rr_cpu_us: Number(cpu.rr.toFixed(2)),
    load_average: Number(loadavg()[0].toFixed(2)),
    ...(comparison === undefined ? {} : { compare: comparison }),
  }),
);
