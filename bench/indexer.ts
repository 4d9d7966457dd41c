/**
 * KV indexer benchmark: RadixTreeIndexer against the NaiveIndexer reference, same process, same work.
 *
 * (1) Mooncake trace replay, 20 passes with hash ids offset per pass (passes share nothing). Each hash
 *     id is one block: tokens_hash = the id as u64, block_hash = the rolling sequence hash of the ids
 *     (BlockHasher, precomputed, not timed). Per request: findMatches, then store the blocks on the
 *     owner with the largest overlap (ties: seeded PRNG) among 256 workers x 4 ranks; every owner keeps
 *     at most 200 blocks and evicts LRU blocks with removed events (blocks are touched leaf to root,
 *     so leaves go before parents). Timed: findMatches and apply calls only.
 * (2) Hot prefix: a 32-block prefix held by all 1,024 owners, 30 private blocks each; the query is one
 *     owner's full path.
 * The baseline replays the first --baseline-passes passes (it is much slower) with the same PRNG; the
 * ratio compares findMatches throughput on the last of those passes (both indexers warm, same state);
 * routing checksums over those passes must agree. Throughputs are medians over 500-request batches of
 * (work / time in the timed calls), robust to preemption on a shared VM; the all-time figure is printed
 * too. Latencies are per call and include ~0.1 us of timer overhead.
 * Run: npm run bench:indexer [-- --passes 20 --baseline-passes 2 --cap 200]
 * Last stdout line: one JSON object.
 */
import os, { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { SeededRandom } from '../src/bench/random.ts';
import { percentile } from '../src/bench/stats.ts';
import { readTrace } from '../src/bench/trace.ts';
import type { RouterEvent, StoredBlock } from '../src/kv/events.ts';
import type { KvIndexer } from '../src/kv/indexer.ts';
import { NaiveIndexer } from '../src/kv/naive-indexer.ts';
import { OwnerTable } from '../src/kv/owners.ts';
import { RadixTreeIndexer } from '../src/kv/radix-tree.ts';
import { BlockHasher } from '../src/tokens/block-hash.ts';
import { readPackedU64 } from '../src/tokens/u64.ts';

const { values: args } = parseArgs({
  options: {
    passes: { type: 'string', default: '20' },
    'baseline-passes': { type: 'string', default: '2' },
    cap: { type: 'string', default: '200' },
    seed: { type: 'string', default: '42' },
    trace: {
      type: 'string',
      default: new URL('./data/mooncake_synthetic_trace.jsonl', import.meta.url).pathname,
    },
  },
});
const PASSES = Number(args.passes);
const BASELINE_PASSES = Math.max(1, Math.min(PASSES, Number(args['baseline-passes'])));
const CAP = Number(args.cap);
const SEED = Number(args.seed);
const WORKERS = 256;
const RANKS = 4;
const OWNERS = WORKERS * RANKS;
const PASS_OFFSET = 10_000_000;
const WARMUP = 2000;

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const now = process.hrtime.bigint;
/** Requests per batch for the throughput figures (median over batches: robust to preemption on a busy VM). */
const BATCH = 500;

// ---- workload (not timed) -------------------------------------------------------------------------

interface Request {
  /** Packed [lo, hi] tokens hashes: the query. */
  readonly local: Uint32Array;
  /** Global block index of each position. */
  readonly blocks: Int32Array;
}

const trace = await readTrace(args.trace, { skipBad: true });
const hasher = new BlockHasher({ blockSize: 16 });
const blockIndex = new Map<bigint, number>();
const storedBlocks: StoredBlock[] = [];
const requests: Request[] = [];
let blockRefs = 0;
for (let pass = 0; pass < PASSES; pass++) {
  for (const request of trace.requests) {
    const n = request.hashIds.length;
    const local = new Uint32Array(2 * n);
    for (let i = 0; i < n; i++) local[2 * i] = request.hashIds[i] + pass * PASS_OFFSET; // < 2^32: hi stays 0
    const sequence = hasher.sequenceHashes(local);
    const blocks = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const blockHash = readPackedU64(sequence, i);
      let index = blockIndex.get(blockHash);
      if (index === undefined) {
        index = storedBlocks.length;
        storedBlocks.push({ blockHash, tokensHash: readPackedU64(local, i) });
        blockIndex.set(blockHash, index);
      }
      blocks[i] = index;
    }
    blockRefs += n;
    requests.push({ local, blocks });
  }
}
blockIndex.clear();
const requestsPerPass = trace.requests.length;

const ownerPairs: { workerId: bigint; dpRank: number }[] = [];
for (let w = 0; w < WORKERS; w++)
  for (let r = 0; r < RANKS; r++) ownerPairs.push({ workerId: BigInt(w), dpRank: r });

// ---- trace replay ---------------------------------------------------------------------------------

interface ReplayResult {
  readonly findNs: Float64Array;
  /** Per request: nanoseconds in apply and block events applied. */
  readonly applyNs: Float64Array;
  readonly applyEvents: Float64Array;
  readonly findTotalNs: number;
  readonly applyTotalNs: number;
  readonly blockEvents: number;
  readonly removals: number;
  readonly checksum: number;
  /** The checksum after the first `checksumAt` requests. */
  readonly checksumHead: number;
  readonly overlapped: number;
  readonly overlapBlocks: number;
}

function replay(indexer: KvIndexer, count: number, checksumAt = count): ReplayResult {
  const owners = indexer.owners;
  for (const { workerId, dpRank } of ownerPairs) owners.intern(workerId, dpRank);
  const random = new SeededRandom(SEED);
  const lru = Array.from({ length: OWNERS }, () => new Map<number, true>());
  const candidates = new Int32Array(OWNERS);
  const findNs = new Float64Array(count);
  const applyNs = new Float64Array(count);
  const applyEvents = new Float64Array(count);
  let findTotalNs = 0;
  let applyTotalNs = 0;
  let blockEvents = 0;
  let removals = 0;
  let checksum = 0;
  let checksumHead = 0;
  let overlapped = 0;
  let overlapBlocks = 0;
  for (let r = 0; r < count; r++) {
    const { local, blocks } = requests[r];
    const t0 = now();
    const scores = indexer.findMatches(local);
    const elapsed = Number(now() - t0);
    findNs[r] = elapsed;
    findTotalNs += elapsed;

    let best = 0;
    let ties = 0;
    for (let i = 0; i < scores.count; i++) {
      const b = scores.blocks[i];
      if (b > best) {
        best = b;
        ties = 0;
      }
      if (b === best) candidates[ties++] = scores.owners[i];
    }
    let owner: number;
    if (best === 0) {
      const pair = ownerPairs[random.int(0, OWNERS - 1)];
      owner = owners.find(pair.workerId, pair.dpRank);
    } else {
      // Ties in owner-id order, so every indexer makes the same choice whatever its result order.
      candidates.subarray(0, ties).sort();
      owner = candidates[random.int(0, ties - 1)];
    }
    checksum = (Math.imul(checksum, 31) + owner * 1000 + best) >>> 0;
    if (r === checksumAt - 1) checksumHead = checksum;
    if (best > 0) {
      overlapped++;
      overlapBlocks += best;
    }

    const { workerId, dpRank } = owners.pairOf(owner);
    if (best < blocks.length) {
      const stored: RouterEvent = {
        workerId,
        event: {
          eventId: 0n,
          dpRank,
          data: {
            kind: 'stored',
            parentHash: best > 0 ? storedBlocks[blocks[best - 1]].blockHash : null,
            blocks: Array.from(blocks.subarray(best), (b) => storedBlocks[b]),
          },
        },
      };
      const t1 = now();
      const error = indexer.apply(stored);
      const elapsedApply = Number(now() - t1);
      applyTotalNs += elapsedApply;
      applyNs[r] += elapsedApply;
      applyEvents[r] += blocks.length - best;
      if (error !== null) throw error;
      blockEvents += blocks.length - best;
    }
    const cache = lru[owner];
    for (let i = blocks.length - 1; i >= 0; i--) {
      cache.delete(blocks[i]);
      cache.set(blocks[i], true);
    }
    if (cache.size > CAP) {
      const victims: bigint[] = [];
      for (const b of cache.keys()) {
        if (cache.size - victims.length <= CAP) break;
        victims.push(storedBlocks[b].blockHash);
      }
      for (let i = 0; i < victims.length; i++) cache.delete(cache.keys().next().value as number);
      const removed: RouterEvent = {
        workerId,
        event: { eventId: 0n, dpRank, data: { kind: 'removed', blockHashes: victims } },
      };
      const t1 = now();
      const error = indexer.apply(removed);
      const elapsedApply = Number(now() - t1);
      applyTotalNs += elapsedApply;
      applyNs[r] += elapsedApply;
      applyEvents[r] += victims.length;
      if (error !== null) throw error;
      blockEvents += victims.length;
      removals += victims.length;
    }
  }
  return {
    findNs,
    applyNs,
    applyEvents,
    findTotalNs,
    applyTotalNs,
    blockEvents,
    removals,
    checksum,
    checksumHead,
    overlapped,
    overlapBlocks,
  };
}

/** Median over batches of BATCH requests of (work done / time spent). */
function medianRate(work: Float64Array | null, ns: Float64Array, from = 0, to = ns.length): number {
  const rates: number[] = [];
  for (let start = from; start + BATCH <= to; start += BATCH) {
    let done = 0;
    let time = 0;
    for (let r = start; r < start + BATCH; r++) {
      done += work === null ? 1 : work[r];
      time += ns[r];
    }
    if (time > 0) rates.push((done / time) * 1e9);
  }
  rates.sort((a, b) => a - b);
  return rates.length === 0 ? Number.NaN : rates[rates.length >> 1];
}

function summary(ns: Float64Array): { p50: number; p99: number; mean: number } {
  const sorted = Float64Array.from(ns).sort();
  let total = 0;
  for (const v of ns) total += v;
  return {
    p50: percentile(sorted, 50) / 1000,
    p99: percentile(sorted, 99) / 1000,
    mean: total / ns.length / 1000,
  };
}

// ---- hot prefix -----------------------------------------------------------------------------------

function mixU32(x: number): number {
  let h = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

const HOT_PREFIX = 32;
const HOT_PRIVATE = 30;

function hotPrefix(indexer: KvIndexer, rounds: number): { ns: Float64Array; ok: boolean } {
  const owners = indexer.owners;
  const paths: Uint32Array[] = [];
  for (let o = 0; o < OWNERS; o++) {
    const { workerId, dpRank } = ownerPairs[o];
    const n = HOT_PREFIX + HOT_PRIVATE;
    const local = new Uint32Array(2 * n);
    for (let i = 0; i < n; i++) {
      const id = i < HOT_PREFIX ? i : 1_000_000 + o * HOT_PRIVATE + i;
      local[2 * i] = mixU32(id);
      local[2 * i + 1] = mixU32(id ^ 0x5bd1e995);
    }
    const sequence = hasher.sequenceHashes(local);
    const blocks: StoredBlock[] = [];
    for (let i = 0; i < n; i++)
      blocks.push({ blockHash: readPackedU64(sequence, i), tokensHash: readPackedU64(local, i) });
    const error = indexer.apply({
      workerId,
      event: { eventId: 0n, dpRank, data: { kind: 'stored', parentHash: null, blocks } },
    });
    if (error !== null) throw error;
    paths.push(local);
  }
  const random = new SeededRandom(SEED + 1);
  const ns = new Float64Array(rounds * OWNERS);
  let ok = true;
  for (let q = 0; q < ns.length; q++) {
    const o = random.int(0, OWNERS - 1);
    const t0 = now();
    const scores = indexer.findMatches(paths[o]);
    ns[q] = Number(now() - t0);
    if (q < OWNERS) {
      // Check: every owner scores 32, the querying owner 62.
      const self = owners.find(ownerPairs[o].workerId, ownerPairs[o].dpRank);
      let good = scores.count === OWNERS;
      for (let i = 0; i < scores.count; i++)
        good &&= scores.blocks[i] === (scores.owners[i] === self ? HOT_PREFIX + HOT_PRIVATE : HOT_PREFIX);
      ok &&= good;
    }
  }
  return { ns, ok };
}

// ---- run ------------------------------------------------------------------------------------------

function availableCores(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

const fmt = (v: number, digits = 2) => v.toLocaleString('en-US', { maximumFractionDigits: digits });
const mops = (ops: number, ns: number) => (ops / ns) * 1e9;

console.log(
  `workload: ${trace.requests.length} requests x ${PASSES} passes = ${requests.length} requests, ` +
    `${fmt(blockRefs, 0)} block refs, ${fmt(storedBlocks.length, 0)} unique blocks; ` +
    `${WORKERS} workers x ${RANKS} ranks, cap ${CAP} blocks per owner`,
);

// JIT warm-up on throwaway indexers (not measured).
replay(new RadixTreeIndexer(), WARMUP);
replay(new NaiveIndexer(), WARMUP);

// Radix tree: full replay. Its figures over the first BASELINE_PASSES passes are kept for the ratio.
gc();
const tree = new RadixTreeIndexer({ owners: new OwnerTable() });
const baselineCount = BASELINE_PASSES * requestsPerPass;
const cpuBefore = process.cpuUsage();
const wallBefore = now();
const treeRun = replay(tree, requests.length, baselineCount);
const cpuUsed = process.cpuUsage(cpuBefore);
// Share of one core this process got during the replay: below ~0.95 the VM was busy and every
// figure above is pessimistic.
const cpuShare = ((cpuUsed.user + cpuUsed.system) * 1000) / Number(now() - wallBefore);
const loadAverage = loadavg()[0];
const treeStats = tree.stats();
const treeFind = summary(treeRun.findNs);
const treeFindRate = medianRate(null, treeRun.findNs);
const treeEventRate = medianRate(treeRun.applyEvents, treeRun.applyNs);
const bytesPerEntry = treeStats.bytes / treeStats.entries;

/** findMatches in a tight loop (no per-call timer, no events) over the last pass, on the final index. */
function tightLoopRate(indexer: KvIndexer, rounds: number): number {
  const from = requests.length - requestsPerPass;
  let best = 0;
  for (let round = 0; round < rounds; round++) {
    const t0 = now();
    let matched = 0;
    for (let r = from; r < requests.length; r++) matched += indexer.findMatches(requests[r].local).count;
    const rate = mops(requests.length - from, Number(now() - t0));
    if (matched >= 0 && rate > best) best = rate;
  }
  return best;
}
const treeTightRate = tightLoopRate(tree, 5);

console.log(
  `radix tree: findMatches ${fmt(treeFindRate, 0)}/s (median of ${BATCH}-request batches; ` +
    `${fmt(mops(requests.length, treeRun.findTotalNs), 0)}/s over all time), ` +
    `mean ${fmt(treeFind.mean)} / p50 ${fmt(treeFind.p50)} / p99 ${fmt(treeFind.p99)} us; ` +
    `block events ${fmt(treeEventRate, 0)}/s (${fmt(mops(treeRun.blockEvents, treeRun.applyTotalNs), 0)}/s ` +
    `over all time; ${fmt(treeRun.blockEvents, 0)} events, ${fmt(treeRun.removals, 0)} removals); ` +
    `${fmt(treeStats.entries, 0)} entries, ${fmt(treeStats.nodes, 0)} nodes, ` +
    `${fmt(bytesPerEntry, 1)} bytes/entry`,
);
console.log(
  `  this process got ${fmt(100 * cpuShare, 0)}% of a core during the replay; 1-min load average ${fmt(loadAverage, 1)} ` +
    `on ${availableCores()} cores`,
);
console.log(
  `  final index, last pass's ${requestsPerPass} queries in a tight loop (best of 5): ${fmt(treeTightRate, 0)}/s`,
);
console.log(
  `  ${fmt((100 * treeRun.overlapped) / requests.length, 1)}% of requests overlap, ` +
    `mean best overlap ${fmt(treeRun.overlapBlocks / Math.max(1, treeRun.overlapped), 1)} blocks`,
);

gc();
const naive = new NaiveIndexer({ owners: new OwnerTable() });
const naiveRun = replay(naive, baselineCount);
const naiveFind = summary(naiveRun.findNs);
const checksumsAgree = naiveRun.checksum === treeRun.checksumHead;
const naiveRate = medianRate(null, naiveRun.findNs);
// Ratio over the last baseline pass: both indexers warm and in the same state, same requests.
const ratioFrom = (BASELINE_PASSES - 1) * requestsPerPass;
const treeHeadRate = medianRate(null, treeRun.findNs, ratioFrom, baselineCount);
const naiveSteadyRate = medianRate(null, naiveRun.findNs, ratioFrom, baselineCount);
const baselineRatio = treeHeadRate / naiveSteadyRate;
console.log(
  `naive baseline (${BASELINE_PASSES} pass${BASELINE_PASSES === 1 ? '' : 'es'}, ${baselineCount} requests): ` +
    `findMatches ${fmt(naiveRate, 0)}/s, p50 ${fmt(naiveFind.p50)} / p99 ${fmt(naiveFind.p99)} us; ` +
    `block events ${fmt(medianRate(naiveRun.applyEvents, naiveRun.applyNs), 0)}/s; ` +
    `routing checksums ${checksumsAgree ? 'agree' : 'DIFFER'} (${naiveRun.checksum} vs ${treeRun.checksumHead})`,
);
console.log(
  `  pass ${BASELINE_PASSES} (requests ${ratioFrom}..${baselineCount}): radix tree ${fmt(treeHeadRate, 0)}/s ` +
    `vs naive ${fmt(naiveSteadyRate, 0)}/s = ${fmt(baselineRatio, 1)}x`,
);

gc();
const hot = hotPrefix(new RadixTreeIndexer(), 40);
const hotSummary = summary(hot.ns);
const hotNaive = hotPrefix(new NaiveIndexer(), 1);
const hotNaiveSummary = summary(hotNaive.ns);
console.log(
  `hot prefix (${HOT_PREFIX} blocks x ${OWNERS} owners + ${HOT_PRIVATE} private each): ` +
    `radix tree p50 ${fmt(hotSummary.p50)} / p99 ${fmt(hotSummary.p99)} us, ` +
    `naive p50 ${fmt(hotNaiveSummary.p50)} / p99 ${fmt(hotNaiveSummary.p99)} us ` +
    `(${fmt(hotNaiveSummary.p50 / hotSummary.p50, 0)}x at p50); ` +
    `results ${hot.ok && hotNaive.ok ? 'correct' : 'WRONG'}`,
);

console.log(
  JSON.stringify({
    find_matches_per_s: Math.round(treeFindRate),
    find_matches_p50_us: Number(treeFind.p50.toFixed(3)),
    find_matches_tight_loop_per_s: Math.round(treeTightRate),
    find_matches_p99_us: Number(treeFind.p99.toFixed(3)),
    hot_prefix_p99_us: Number(hotSummary.p99.toFixed(3)),
    events_per_s: Math.round(treeEventRate),
    bytes_per_entry: Number(bytesPerEntry.toFixed(1)),
    baseline_ratio: Number(baselineRatio.toFixed(1)),
    baseline_find_matches_per_s: Math.round(naiveSteadyRate),
    hot_prefix_p50_us: Number(hotSummary.p50.toFixed(3)),
    hot_prefix_naive_p99_us: Number(hotNaiveSummary.p99.toFixed(3)),
    checksums_agree: checksumsAgree,
    cpu_share: Number(cpuShare.toFixed(2)),
    load_average_1m: Number(loadAverage.toFixed(2)),
    hot_prefix_correct: hot.ok && hotNaive.ok,
    requests: requests.length,
    block_events: treeRun.blockEvents,
    entries: treeStats.entries,
  }),
);
