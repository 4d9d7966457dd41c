/**
 * KV indexer benchmark: RadixTreeIndexer against a per-owner hash-set scan baseline (Dynamo's brief:
 * "per-worker-rank hash sets, scanned") and the NaiveIndexer reference, same process, same work.
 *
 * Workload: the Mooncake trace replayed --passes times with hash ids offset per pass (passes share
 * nothing). Each hash id is one block: tokens_hash = the id as u64, block_hash = the rolling sequence
 * hash of the ids (BlockHasher, precomputed). Per request: findMatches, then store the blocks on the
 * owner with the largest overlap (ties: seeded PRNG) among 256 workers x 4 ranks; every owner keeps at
 * most --cap blocks and evicts LRU blocks with removed events (blocks are touched leaf to root, so
 * leaves go before parents).
 *
 * A first, untimed replay records that script (routing decisions and evictions); its events are packed
 * ([lo, hi] u32 halves) in advance, so the timed runs measure the indexer, not the LRU. Timed variants,
 * each on a fresh indexer, interleaved and repeated --repeats times:
 * - replay: findMatches (one timer per call) and the request's events through `apply(RouterEvent)`,
 *   each event built fresh (new objects and bigints, as a decoder hands them over) just before its
 *   timed call, so construction is not timed but bigint validation and conversion are; and the same
 *   replay with the packed events (`applyStoredPacked` / `applyRemovedPacked`).
 * - packed events only, no per-call timers: CPU time (process.cpuUsage) and wall time.
 * - findMatches at checkpoints: the script's events applied, and at every 2,000-request checkpoint
 *   the next 2,000 queries in a tight loop against the churned index, inside one CPU-time delta.
 * - hot prefix: a 32-block prefix held by all 1,024 owners, 30 private blocks each; the query is one
 *   owner's full path.
 * `events_per_s` is the RouterEvent API (what the event plane uses); `events_packed_per_s` the packed one.
 * The machine may be shared, so wall-clock figures are pessimistic; each has a CPU-time variant
 * (`_cpu`): `find_matches_per_s_cpu` is the checkpoint figure (median over repeats);
 * `events_packed_per_s_cpu` packed events per CPU second (best repeat); `events_per_s_cpu` and
 * `find_matches_per_s_cpu_share_scaled` scale each timed call's wall time by the CPU share the process
 * got over its batch of 2,000 requests (CPU time / wall time; process CPU time includes GC threads, so
 * the share is capped at 1); `_cpu` latency percentiles use each request's minimum
 * over the repeats (a preempted call is unlikely to be preempted in every repeat). Wall figures are medians over repeats; throughput per
 * repeat is the median over 500-request batches. Latencies include ~0.1 us of timer overhead.
 * The baseline ratio compares findMatches over the last of the first --baseline-passes passes (same
 * index state, same queries); routing decisions must agree with the script.
 * --compare <module> also runs another RadixTreeIndexer build (e.g. a checkout of an older commit,
 * RouterEvent API only) in the same rounds, for before/after figures from one run.
 * Run: npm run bench:indexer [-- --passes 20 --baseline-passes 2 --cap 200 --repeats 3]
 * Last stdout line: one JSON object.
 */
import os, { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
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
import { readPackedU64, u64FromHalves } from '../src/tokens/u64.ts';

const { values: args } = parseArgs({
  options: {
    passes: { type: 'string', default: '20' },
    'baseline-passes': { type: 'string', default: '2' },
    cap: { type: 'string', default: '200' },
    seed: { type: 'string', default: '42' },
    repeats: { type: 'string', default: '3' },
    compare: { type: 'string' },
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
const REPEATS = Math.max(1, Number(args.repeats));
const WORKERS = 256;
const RANKS = 4;
const OWNERS = WORKERS * RANKS;
const PASS_OFFSET = 10_000_000;
const WARMUP = 4000;
/** Requests per batch for the wall throughput figures (median over batches). */
const BATCH = 500;
/** Requests per CPU-share measurement. */
const CPU_BATCH = 2000;

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const now = process.hrtime.bigint;

/** What the bench needs of an indexer build: the RouterEvent API, and optionally the packed one. */
interface TreeBuild {
  readonly name: string;
  readonly create: (owners: OwnerTable) => KvIndexer;
  readonly packed: boolean;
}

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
/** [tokensLo, tokensHi, blockLo, blockHi] per unique block. */
const blockHalves = new Uint32Array(4 * storedBlocks.length);
{
  const pair = new BigUint64Array(2);
  const halves = new Uint32Array(pair.buffer);
  const lo = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0 : 1;
  for (let b = 0; b < storedBlocks.length; b++) {
    pair[0] = storedBlocks[b].tokensHash;
    pair[1] = storedBlocks[b].blockHash;
    blockHalves[4 * b] = halves[lo];
    blockHalves[4 * b + 1] = halves[1 - lo];
    blockHalves[4 * b + 2] = halves[2 + lo];
    blockHalves[4 * b + 3] = halves[3 - lo];
  }
}

const ownerPairs: { workerId: bigint; dpRank: number }[] = [];
for (let w = 0; w < WORKERS; w++)
  for (let r = 0; r < RANKS; r++) ownerPairs.push({ workerId: BigInt(w), dpRank: r });

function internOwners(owners: OwnerTable): void {
  for (const { workerId, dpRank } of ownerPairs) owners.intern(workerId, dpRank);
}

// ---- script: routing decisions and evictions (recorded once, not timed) ----------------------------

interface Script {
  /** Per request: the owner it went to (index into ownerPairs) and its best overlap. */
  readonly owner: Int32Array;
  readonly best: Int32Array;
  /** Evicted block indices of request r: victims[victimStart[r] .. victimStart[r + 1]). */
  readonly victimStart: Int32Array;
  readonly victims: Int32Array;
  readonly checksum: number;
  readonly overlapped: number;
  readonly overlapBlocks: number;
}

function routingChecksum(owner: Int32Array, best: Int32Array, count: number): number {
  let checksum = 0;
  for (let r = 0; r < count; r++) checksum = (Math.imul(checksum, 31) + owner[r] * 1000 + best[r]) >>> 0;
  return checksum;
}

function recordScript(): Script {
  const indexer = new RadixTreeIndexer({ owners: new OwnerTable() });
  internOwners(indexer.owners);
  const random = new SeededRandom(SEED);
  const lru = Array.from({ length: OWNERS }, () => new Map<number, true>());
  const candidates = new Int32Array(OWNERS);
  const owner = new Int32Array(requests.length);
  const best = new Int32Array(requests.length);
  const victimStart = new Int32Array(requests.length + 1);
  const victims: number[] = [];
  let overlapped = 0;
  let overlapBlocks = 0;
  for (let r = 0; r < requests.length; r++) {
    const { local, blocks } = requests[r];
    const scores = indexer.findMatches(local);
    let top = 0;
    let ties = 0;
    for (let i = 0; i < scores.count; i++) {
      const b = scores.blocks[i];
      if (b > top) {
        top = b;
        ties = 0;
      }
      if (b === top) candidates[ties++] = scores.owners[i];
    }
    // Owner ids equal ownerPairs indices (interned in that order). Ties in owner order, so every
    // indexer makes the same choice whatever its result order.
    let chosen: number;
    if (top === 0) chosen = random.int(0, OWNERS - 1);
    else {
      candidates.subarray(0, ties).sort();
      chosen = candidates[random.int(0, ties - 1)];
    }
    owner[r] = chosen;
    best[r] = top;
    if (top > 0) {
      overlapped++;
      overlapBlocks += top;
    }
    if (top < blocks.length) throwIf(indexer.applyStoredPacked(chosen, ...storedArgs(blocks, top)));
    const cache = lru[chosen];
    for (let i = blocks.length - 1; i >= 0; i--) {
      cache.delete(blocks[i]);
      cache.set(blocks[i], true);
    }
    const first = victims.length;
    for (const b of cache.keys()) {
      if (cache.size - (victims.length - first) <= CAP) break;
      victims.push(b);
    }
    for (let i = first; i < victims.length; i++) cache.delete(victims[i]);
    if (victims.length > first)
      throwIf(indexer.applyRemovedPacked(chosen, removedHalves(victims.slice(first))));
    victimStart[r + 1] = victims.length;
  }
  return {
    owner,
    best,
    victimStart,
    victims: Int32Array.from(victims),
    checksum: routingChecksum(owner, best, requests.length),
    overlapped,
    overlapBlocks,
  };
}

function throwIf(error: Error | null): void {
  if (error !== null) throw error;
}

function storedArgs(blocks: Int32Array, from: number): [boolean, number, number, Uint32Array] {
  const packed = new Uint32Array(4 * (blocks.length - from));
  for (let i = from; i < blocks.length; i++)
    packed.set(blockHalves.subarray(4 * blocks[i], 4 * blocks[i] + 4), 4 * (i - from));
  if (from === 0) return [false, 0, 0, packed];
  const parent = blocks[from - 1];
  return [true, blockHalves[4 * parent + 2], blockHalves[4 * parent + 3], packed];
}

function removedHalves(victims: ArrayLike<number>): Uint32Array {
  const packed = new Uint32Array(2 * victims.length);
  for (let i = 0; i < victims.length; i++) {
    packed[2 * i] = blockHalves[4 * victims[i] + 2];
    packed[2 * i + 1] = blockHalves[4 * victims[i] + 3];
  }
  return packed;
}

// ---- events, prebuilt in both forms -----------------------------------------------------------------

interface PreparedEvents {
  /** Per request: packed stored event (null when the owner already held everything) and removed event. */
  readonly storedPacked: ([boolean, number, number, Uint32Array] | null)[];
  readonly removedPacked: (Uint32Array | null)[];
  /** Block events per request (stored blocks + removed hashes). */
  readonly blockEvents: Float64Array;
  readonly totalBlockEvents: number;
  readonly removals: number;
}

function prepareEvents(script: Script): PreparedEvents {
  const storedPacked: ([boolean, number, number, Uint32Array] | null)[] = [];
  const removedPacked: (Uint32Array | null)[] = [];
  const blockEvents = new Float64Array(requests.length);
  let total = 0;
  let removals = 0;
  for (let r = 0; r < requests.length; r++) {
    const { blocks } = requests[r];
    const top = script.best[r];
    if (top < blocks.length) {
      storedPacked.push(storedArgs(blocks, top));
      blockEvents[r] += blocks.length - top;
    } else storedPacked.push(null);
    const victims = script.victims.subarray(script.victimStart[r], script.victimStart[r + 1]);
    if (victims.length > 0) {
      removedPacked.push(removedHalves(victims));
      blockEvents[r] += victims.length;
      removals += victims.length;
    } else removedPacked.push(null);
    total += blockEvents[r];
  }
  return { storedPacked, removedPacked, blockEvents, totalBlockEvents: total, removals };
}

/**
 * Request r's events as RouterEvents, built fresh (new objects and bigints, as a decoder hands them
 * over, so they are in cache as in a router); built outside the timed calls.
 */
function routerEvents(r: number, events: PreparedEvents): [RouterEvent | null, RouterEvent | null] {
  const { workerId, dpRank } = ownerPairs[script.owner[r]];
  const storedArgs = events.storedPacked[r];
  let stored: RouterEvent | null = null;
  if (storedArgs !== null) {
    const [hasParent, parentLo, parentHi, halves] = storedArgs;
    const blocks: StoredBlock[] = [];
    for (let i = 0; i < halves.length; i += 4)
      blocks.push({
        tokensHash: u64FromHalves(halves[i], halves[i + 1]),
        blockHash: u64FromHalves(halves[i + 2], halves[i + 3]),
      });
    const parentHash = hasParent ? u64FromHalves(parentLo, parentHi) : null;
    stored = { workerId, event: { eventId: 0n, dpRank, data: { kind: 'stored', parentHash, blocks } } };
  }
  const removedArgs = events.removedPacked[r];
  let removed: RouterEvent | null = null;
  if (removedArgs !== null) {
    const blockHashes: bigint[] = [];
    for (let i = 0; i < removedArgs.length; i += 2)
      blockHashes.push(u64FromHalves(removedArgs[i], removedArgs[i + 1]));
    removed = { workerId, event: { eventId: 0n, dpRank, data: { kind: 'removed', blockHashes } } };
  }
  return [stored, removed];
}

// ---- timed variants ---------------------------------------------------------------------------------

interface ReplayRun {
  readonly findNs: Float64Array;
  readonly applyNs: Float64Array;
  /** Per request: the CPU share of its CPU_BATCH batch (CPU time / wall time). */
  readonly share: Float64Array;
  readonly best: Int32Array;
  readonly cpuShare: number;
}

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** The script with findMatches and events timed per call; `packed` picks the event API. */
function timedReplay(indexer: KvIndexer, events: PreparedEvents, count: number, packed: boolean): ReplayRun {
  const tree = packed ? (indexer as RadixTreeIndexer) : null;
  const findNs = new Float64Array(count);
  const applyNs = new Float64Array(count);
  const share = new Float64Array(count);
  const best = new Int32Array(count);
  let batchCpu = cpuMicros();
  let batchWall = now();
  const startCpu = batchCpu;
  const startWall = batchWall;
  for (let r = 0; r < count; r++) {
    const t0 = now();
    const scores = indexer.findMatches(requests[r].local);
    const t1 = now();
    findNs[r] = Number(t1 - t0);
    let top = 0;
    for (let i = 0; i < scores.count; i++) if (scores.blocks[i] > top) top = scores.blocks[i];
    best[r] = top;
    if (tree !== null) {
      const stored = events.storedPacked[r];
      const removed = events.removedPacked[r];
      const t2 = now();
      if (stored !== null) throwIf(tree.applyStoredPacked(script.owner[r], ...stored));
      if (removed !== null) throwIf(tree.applyRemovedPacked(script.owner[r], removed));
      applyNs[r] = Number(now() - t2);
    } else {
      const [stored, removed] = routerEvents(r, events);
      const t2 = now();
      if (stored !== null) throwIf(indexer.apply(stored));
      if (removed !== null) throwIf(indexer.apply(removed));
      applyNs[r] = Number(now() - t2);
    }
    if ((r + 1) % CPU_BATCH === 0 || r === count - 1) {
      const cpu = cpuMicros();
      const wall = now();
      const s = Math.min(1, ((cpu - batchCpu) * 1000) / Number(wall - batchWall));
      share.fill(s, r - (r % CPU_BATCH), r + 1);
      batchCpu = cpu;
      batchWall = wall;
    }
  }
  const cpuShare = ((cpuMicros() - startCpu) * 1000) / Number(now() - startWall);
  return { findNs, applyNs, share, best, cpuShare };
}

/** Packed events only, no per-call timers: CPU and wall seconds. */
function eventsOnly(tree: RadixTreeIndexer, events: PreparedEvents): { cpu: number; wall: number } {
  const cpu0 = cpuMicros();
  const wall0 = now();
  for (let r = 0; r < requests.length; r++) {
    const stored = events.storedPacked[r];
    if (stored !== null) throwIf(tree.applyStoredPacked(script.owner[r], ...stored));
    const removed = events.removedPacked[r];
    if (removed !== null) throwIf(tree.applyRemovedPacked(script.owner[r], removed));
  }
  return { cpu: (cpuMicros() - cpu0) / 1e6, wall: Number(now() - wall0) / 1e9 };
}

/**
 * findMatches CPU time without per-call timers: the script's events are applied (packed when the
 * build has that API, else as fresh RouterEvents), and at every CPU_BATCH-request checkpoint the next
 * CPU_BATCH requests' queries run in a tight loop against the index as it is then (the churned index
 * of the replay, a few requests behind), inside one process.cpuUsage delta. Returns findMatches per CPU second.
 */
function checkpointFindCpu(indexer: KvIndexer, events: PreparedEvents, packed: boolean): number {
  const tree = packed ? (indexer as RadixTreeIndexer) : null;
  let cpu = 0;
  let queries = 0;
  let matched = 0;
  for (let r = 0; r < requests.length; r++) {
    if (r % CPU_BATCH === 0) {
      const end = Math.min(requests.length, r + CPU_BATCH);
      const cpu0 = cpuMicros();
      for (let q = r; q < end; q++) matched += indexer.findMatches(requests[q].local).count;
      cpu += cpuMicros() - cpu0;
      queries += end - r;
    }
    if (tree !== null) {
      const stored = events.storedPacked[r];
      if (stored !== null) throwIf(tree.applyStoredPacked(script.owner[r], ...stored));
      const removed = events.removedPacked[r];
      if (removed !== null) throwIf(tree.applyRemovedPacked(script.owner[r], removed));
    } else {
      const [stored, removed] = routerEvents(r, events);
      if (stored !== null) throwIf(indexer.apply(stored));
      if (removed !== null) throwIf(indexer.apply(removed));
    }
  }
  if (matched < 0) throw new Error('unreachable');
  return (queries / cpu) * 1e6;
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
  return median(rates);
}

/**
 * Work per CPU second: each call's wall time scaled by its CPU_BATCH batch's CPU share; the median over
 * BATCH-request batches, like the wall figures.
 */
function cpuRate(
  work: Float64Array | null,
  share: Float64Array,
  ns: Float64Array,
  from = 0,
  to = ns.length,
): number {
  const scaled = new Float64Array(to - from);
  for (let r = from; r < to; r++) scaled[r - from] = ns[r] * share[r];
  return medianRate(work === null ? null : work.subarray(from, to), scaled);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[sorted.length >> 1];
}

function p(ns: ArrayLike<number>, q: number): number {
  return percentile(Float64Array.from(ns).sort(), q) / 1000;
}

/** Per element: the minimum over runs. */
function elementMin(arrays: Float64Array[]): Float64Array {
  const out = Float64Array.from(arrays[0]);
  for (const a of arrays.slice(1)) for (let i = 0; i < out.length; i++) if (a[i] < out[i]) out[i] = a[i];
  return out;
}

// ---- hot prefix -----------------------------------------------------------------------------------

function mixU32(x: number): number {
  let h = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

const HOT_PREFIX = 32;
const HOT_PRIVATE = 30;

function buildHotPrefix(indexer: KvIndexer): Uint32Array[] {
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
    throwIf(
      indexer.apply({
        workerId,
        event: { eventId: 0n, dpRank, data: { kind: 'stored', parentHash: null, blocks } },
      }),
    );
    paths.push(local);
  }
  return paths;
}

/** Per query wall ns, CPU seconds of an untimed pass over the same queries, and a correctness check. */
function hotPrefixRound(
  indexer: KvIndexer,
  paths: Uint32Array[],
  queries: Int32Array,
): { ns: Float64Array; cpuPerQuery: number; ok: boolean } {
  const ns = new Float64Array(queries.length);
  let ok = true;
  for (let q = 0; q < queries.length; q++) {
    const o = queries[q];
    const t0 = now();
    const scores = indexer.findMatches(paths[o]);
    ns[q] = Number(now() - t0);
    if (q < 64) {
      // Every owner scores 32, the querying owner 62.
      const self = indexer.owners.find(ownerPairs[o].workerId, ownerPairs[o].dpRank);
      let good = scores.count === OWNERS;
      for (let i = 0; i < scores.count; i++)
        good &&= scores.blocks[i] === (scores.owners[i] === self ? HOT_PREFIX + HOT_PRIVATE : HOT_PREFIX);
      ok &&= good;
    }
  }
  const cpu0 = cpuMicros();
  let sink = 0;
  for (let q = 0; q < queries.length; q++) sink += indexer.findMatches(paths[queries[q]]).count;
  const cpuPerQuery = (cpuMicros() - cpu0) / queries.length;
  return { ns, cpuPerQuery, ok: ok && sink === queries.length * OWNERS };
}

// ---- baseline: per-owner hash sets, scanned ------------------------------------------------------------

/**
 * The brief's baseline: per (worker, rank), the set of block hashes it holds; a query checks, for
 * every owner, how many of its leading sequence hashes are in that owner's set.
 */
class HashSetScan {
  readonly sets = Array.from({ length: OWNERS }, () => new Set<bigint>());
  readonly blocks = new Int32Array(OWNERS);
  count = 0;
  readonly owners = new Int32Array(OWNERS);

  store(owner: number, hashes: readonly bigint[]): void {
    const set = this.sets[owner];
    for (const hash of hashes) set.add(hash);
  }

  remove(owner: number, hashes: readonly bigint[]): void {
    const set = this.sets[owner];
    for (const hash of hashes) set.delete(hash);
  }

  findMatches(sequence: readonly bigint[]): void {
    let count = 0;
    for (let owner = 0; owner < OWNERS; owner++) {
      const set = this.sets[owner];
      let depth = 0;
      while (depth < sequence.length && set.has(sequence[depth])) depth++;
      if (depth > 0) {
        this.owners[count] = owner;
        this.blocks[count++] = depth;
      }
    }
    this.count = count;
  }
}

function baselineReplay(count: number): { ns: Float64Array; share: Float64Array; best: Int32Array } {
  const baseline = new HashSetScan();
  const sequences = requests
    .slice(0, count)
    .map(({ blocks }) => Array.from(blocks, (b) => storedBlocks[b].blockHash));
  const ns = new Float64Array(count);
  const share = new Float64Array(count);
  const best = new Int32Array(count);
  let batchCpu = cpuMicros();
  let batchWall = now();
  for (let r = 0; r < count; r++) {
    const t0 = now();
    baseline.findMatches(sequences[r]);
    ns[r] = Number(now() - t0);
    let top = 0;
    for (let i = 0; i < baseline.count; i++) if (baseline.blocks[i] > top) top = baseline.blocks[i];
    best[r] = top;
    const owner = script.owner[r];
    if (top < sequences[r].length) baseline.store(owner, sequences[r].slice(top));
    const victims = script.victims.subarray(script.victimStart[r], script.victimStart[r + 1]);
    if (victims.length > 0)
      baseline.remove(
        owner,
        Array.from(victims, (b) => storedBlocks[b].blockHash),
      );
    if ((r + 1) % CPU_BATCH === 0 || r === count - 1) {
      const cpu = cpuMicros();
      const wall = now();
      share.fill(
        Math.min(1, ((cpu - batchCpu) * 1000) / Number(wall - batchWall)),
        r - (r % CPU_BATCH),
        r + 1,
      );
      batchCpu = cpu;
      batchWall = wall;
    }
  }
  return { ns, share, best };
}

// ---- run ------------------------------------------------------------------------------------------

function availableCores(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

const fmt = (v: number, digits = 2) => v.toLocaleString('en-US', { maximumFractionDigits: digits });

console.log(
  `workload: ${trace.requests.length} requests x ${PASSES} passes = ${requests.length} requests, ` +
    `${fmt(blockRefs, 0)} block refs, ${fmt(storedBlocks.length, 0)} unique blocks; ` +
    `${WORKERS} workers x ${RANKS} ranks, cap ${CAP} blocks per owner`,
);

const script = recordScript();
const events = prepareEvents(script);
const baselineCount = BASELINE_PASSES * requestsPerPass;
const ratioFrom = (BASELINE_PASSES - 1) * requestsPerPass;
console.log(
  `script: ${fmt((100 * script.overlapped) / requests.length, 1)}% of requests overlap, mean best overlap ` +
    `${fmt(script.overlapBlocks / Math.max(1, script.overlapped), 1)} blocks; ${fmt(events.totalBlockEvents, 0)} block ` +
    `events (${fmt(events.removals, 0)} removals)`,
);

const builds: TreeBuild[] = [
  { name: 'radix tree', create: (owners) => new RadixTreeIndexer({ owners }), packed: true },
];
if (args.compare !== undefined) {
  const module = (await import(pathToFileURL(resolve(args.compare)).href)) as {
    RadixTreeIndexer: new (options: { owners: OwnerTable }) => KvIndexer;
  };
  builds.push({
    name: `compare (${args.compare})`,
    create: (owners) => new module.RadixTreeIndexer({ owners }),
    packed: false,
  });
}

function fresh(build: TreeBuild): KvIndexer {
  const owners = new OwnerTable();
  internOwners(owners);
  return build.create(owners);
}

// JIT warm-up on throwaway indexers (not measured).
for (const build of builds) {
  for (const packed of build.packed ? [false, true] : [false]) {
    timedReplay(fresh(build), events, WARMUP, packed);
    const hot = fresh(build);
    const paths = buildHotPrefix(hot);
    hotPrefixRound(
      hot,
      paths,
      Int32Array.from({ length: 2000 }, (_, i) => i % OWNERS),
    );
  }
}

interface BuildResults {
  replays: ReplayRun[];
  replaysRouterEvent: ReplayRun[];
  replaysPacked: ReplayRun[];
  eventsPacked: { cpu: number; wall: number }[];
  /** findMatches per CPU second at replay checkpoints, per repeat. */
  checkpointFind: number[];
  hotNs: Float64Array[];
  hotCpu: number[];
  hotOk: boolean;
  bytesPerEntry: number;
  entries: number;
  nodes: number;
  checksumsAgree: boolean;
}
const results = builds.map(
  (): BuildResults => ({
    replays: [],
    replaysRouterEvent: [],
    replaysPacked: [],
    eventsPacked: [],
    checkpointFind: [],
    hotNs: [],
    hotCpu: [],
    hotOk: true,
    bytesPerEntry: 0,
    entries: 0,
    nodes: 0,
    checksumsAgree: true,
  }),
);
const hotRandom = new SeededRandom(SEED + 1);
const hotQueries = Int32Array.from({ length: 20 * OWNERS }, () => hotRandom.int(0, OWNERS - 1));
const hotIndexes = builds.map((build) => {
  const indexer = fresh(build);
  return { indexer, paths: buildHotPrefix(indexer) };
});

const loadStart = loadavg()[0];
for (let round = 0; round < REPEATS; round++) {
  builds.forEach((build, b) => {
    const out = results[b];
    for (const packed of build.packed ? [false, true] : [false]) {
      gc();
      const indexer = fresh(build);
      const run = timedReplay(indexer, events, requests.length, packed);
      out.replays.push(run);
      (packed ? out.replaysPacked : out.replaysRouterEvent).push(run);
      out.checksumsAgree &&= routingChecksum(script.owner, run.best, requests.length) === script.checksum;
      if (round === 0 && !packed) {
        gc();
        const stats = indexer.stats();
        out.bytesPerEntry = stats.bytes / stats.entries;
        out.entries = stats.entries;
        out.nodes = stats.nodes;
      }
      if (packed) {
        gc();
        out.eventsPacked.push(eventsOnly(fresh(build) as RadixTreeIndexer, events));
      }
    }
    gc();
    out.checkpointFind.push(checkpointFindCpu(fresh(build), events, build.packed));
    const hot = hotPrefixRound(hotIndexes[b].indexer, hotIndexes[b].paths, hotQueries);
    out.hotNs.push(hot.ns);
    out.hotCpu.push(hot.cpuPerQuery);
    out.hotOk &&= hot.ok;
  });
}

gc();
const naive = new NaiveIndexer({ owners: new OwnerTable() });
internOwners(naive.owners);
const naiveRun = timedReplay(naive, events, baselineCount, false);
const naiveAgrees =
  routingChecksum(script.owner, naiveRun.best, baselineCount) ===
  routingChecksum(script.owner, script.best, baselineCount);
gc();
const scan = baselineReplay(baselineCount);
const scanAgrees =
  routingChecksum(script.owner, scan.best, baselineCount) ===
  routingChecksum(script.owner, script.best, baselineCount);
const loadEnd = loadavg()[0];

interface Figures {
  findRate: number;
  findRateCpu: number;
  findRateCpuScaled: number;
  findP50: number;
  findP99: number;
  findP99Cpu: number;
  findHeadRate: number;
  findHeadRateCpu: number;
  eventsRate: number;
  eventsRateCpu: number;
  eventsPackedRate: number;
  eventsPackedRateCpu: number;
  eventsPackedOnlyWall: number;
  hotP50: number;
  hotP99: number;
  hotP99Cpu: number;
  hotCpuMean: number;
  cpuShare: number;
}

function figures(out: BuildResults): Figures {
  const runs = out.replays;
  const best = (xs: { cpu: number; wall: number }[], key: 'cpu' | 'wall') =>
    Math.min(...xs.map((x) => x[key]));
  const minFind = elementMin(runs.map((run) => run.findNs));
  const minHot = elementMin(out.hotNs);
  return {
    findRate: median(runs.map((run) => medianRate(null, run.findNs))),
    findRateCpu: median(out.checkpointFind),
    findRateCpuScaled: median(runs.map((run) => cpuRate(null, run.share, run.findNs))),
    findP50: median(runs.map((run) => p(run.findNs, 50))),
    findP99: median(runs.map((run) => p(run.findNs, 99))),
    findP99Cpu: p(minFind, 99),
    findHeadRate: median(runs.map((run) => medianRate(null, run.findNs, ratioFrom, baselineCount))),
    findHeadRateCpu: median(
      runs.map((run) => cpuRate(null, run.share, run.findNs, ratioFrom, baselineCount)),
    ),
    eventsRate: median(out.replaysRouterEvent.map((run) => medianRate(events.blockEvents, run.applyNs))),
    eventsRateCpu: median(
      out.replaysRouterEvent.map((run) => cpuRate(events.blockEvents, run.share, run.applyNs)),
    ),
    eventsPackedRate: median(out.replaysPacked.map((run) => medianRate(events.blockEvents, run.applyNs))),
    eventsPackedRateCpu:
      out.eventsPacked.length === 0 ? Number.NaN : events.totalBlockEvents / best(out.eventsPacked, 'cpu'),
    eventsPackedOnlyWall:
      out.eventsPacked.length === 0 ? Number.NaN : events.totalBlockEvents / best(out.eventsPacked, 'wall'),
    hotP50: median(out.hotNs.map((ns) => p(ns, 50))),
    hotP99: median(out.hotNs.map((ns) => p(ns, 99))),
    hotP99Cpu: p(minHot, 99),
    hotCpuMean: Math.min(...out.hotCpu),
    cpuShare: median(runs.map((run) => run.cpuShare)),
  };
}

const all = results.map(figures);
builds.forEach((build, b) => {
  const f = all[b];
  const out = results[b];
  console.log(
    `${build.name}: findMatches ${fmt(f.findRate, 0)}/s wall, ${fmt(f.findRateCpu, 0)}/s CPU (checkpoint batches), ` +
      `${fmt(f.findRateCpuScaled, 0)}/s CPU (per-call time x CPU share); ` +
      `p50 ${fmt(f.findP50)} / p99 ${fmt(f.findP99)} us wall, p99 ${fmt(f.findP99Cpu)} us (per-request min over ${REPEATS} repeats)`,
  );
  console.log(
    `  block events via apply(RouterEvent): ${fmt(f.eventsRate, 0)}/s wall per call (in replay), ` +
      `${fmt(f.eventsRateCpu, 0)}/s CPU (per-call time x CPU share)`,
  );
  if (build.packed)
    console.log(
      `  block events via applyStoredPacked/applyRemovedPacked: ${fmt(f.eventsPackedRate, 0)}/s wall per call (in replay), ` +
        `events only, no per-call timers: ${fmt(f.eventsPackedOnlyWall, 0)}/s wall, ${fmt(f.eventsPackedRateCpu, 0)}/s CPU`,
    );
  console.log(
    `  hot prefix (${HOT_PREFIX} blocks x ${OWNERS} owners + ${HOT_PRIVATE} private each): p50 ${fmt(f.hotP50)} / ` +
      `p99 ${fmt(f.hotP99)} us wall, p99 ${fmt(f.hotP99Cpu)} us (min over repeats), mean CPU ${fmt(f.hotCpuMean)} us; ` +
      `results ${out.hotOk ? 'correct' : 'WRONG'}`,
  );
  console.log(
    `  ${fmt(out.entries, 0)} entries, ${fmt(out.nodes, 0)} nodes, ${fmt(out.bytesPerEntry, 1)} bytes/entry; ` +
      `routing ${out.checksumsAgree ? 'agrees with' : 'DIFFERS from'} the script; CPU share in replays ${fmt(100 * f.cpuShare, 0)}%`,
  );
});

const tree = all[0];
const scanRate = medianRate(null, scan.ns, ratioFrom, baselineCount);
const scanRateCpu = cpuRate(null, scan.share, scan.ns, ratioFrom, baselineCount);
const naiveRate = medianRate(null, naiveRun.findNs, ratioFrom, baselineCount);
const naiveRateCpu = cpuRate(null, naiveRun.share, naiveRun.findNs, ratioFrom, baselineCount);
const baselineRatio = tree.findHeadRate / scanRate;
const baselineRatioCpu = tree.findHeadRateCpu / scanRateCpu;
console.log(
  `baseline, per-owner hash sets scanned (pass ${BASELINE_PASSES}, requests ${ratioFrom}..${baselineCount}): ` +
    `${fmt(scanRate, 0)}/s wall, ${fmt(scanRateCpu, 0)}/s CPU, p99 ${fmt(p(scan.ns.subarray(ratioFrom, baselineCount), 99))} us; ` +
    `radix tree ${fmt(tree.findHeadRate, 0)}/s wall, ${fmt(tree.findHeadRateCpu, 0)}/s CPU = ` +
    `${fmt(baselineRatio, 1)}x wall, ${fmt(baselineRatioCpu, 1)}x CPU; routing ${scanAgrees ? 'agrees' : 'DIFFERS'}`,
);
console.log(
  `NaiveIndexer (same pass): ${fmt(naiveRate, 0)}/s wall, ${fmt(naiveRateCpu, 0)}/s CPU; routing ${naiveAgrees ? 'agrees' : 'DIFFERS'}`,
);
console.log(`1-min load average ${fmt(loadStart, 1)} -> ${fmt(loadEnd, 1)} on ${availableCores()} cores`);

const round1 = (v: number, digits = 0) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : null);
const compareFields: Record<string, number | boolean | null> = {};
if (all.length > 1) {
  const c = all[1];
  Object.assign(compareFields, {
    compare_find_matches_per_s: round1(c.findRate),
    compare_find_matches_per_s_cpu: round1(c.findRateCpu),
    compare_find_matches_p99_us: round1(c.findP99, 3),
    compare_find_matches_p99_us_cpu: round1(c.findP99Cpu, 3),
    compare_hot_prefix_p99_us: round1(c.hotP99, 3),
    compare_hot_prefix_p99_us_cpu: round1(c.hotP99Cpu, 3),
    compare_events_per_s: round1(c.eventsRate),
    compare_events_per_s_cpu: round1(c.eventsRateCpu),
    compare_bytes_per_entry: round1(results[1].bytesPerEntry, 1),
  });
}
console.log(
  JSON.stringify({
    find_matches_per_s: round1(tree.findRate),
    find_matches_per_s_cpu: round1(tree.findRateCpu),
    find_matches_per_s_cpu_share_scaled: round1(tree.findRateCpuScaled),
    find_matches_p99_us: round1(tree.findP99, 3),
    find_matches_p99_us_cpu: round1(tree.findP99Cpu, 3),
    find_matches_p50_us: round1(tree.findP50, 3),
    hot_prefix_p99_us: round1(tree.hotP99, 3),
    hot_prefix_p99_us_cpu: round1(tree.hotP99Cpu, 3),
    hot_prefix_mean_us_cpu: round1(tree.hotCpuMean, 3),
    events_per_s: round1(tree.eventsRate),
    events_per_s_cpu: round1(tree.eventsRateCpu),
    events_packed_per_s: round1(tree.eventsPackedRate),
    events_packed_per_s_cpu: round1(tree.eventsPackedRateCpu),
    bytes_per_entry: round1(results[0].bytesPerEntry, 1),
    baseline_ratio: round1(baselineRatio, 1),
    baseline_ratio_cpu: round1(baselineRatioCpu, 1),
    baseline_find_matches_per_s: round1(scanRate),
    baseline_find_matches_per_s_cpu: round1(scanRateCpu),
    naive_indexer_find_matches_per_s: round1(naiveRate),
    naive_indexer_find_matches_per_s_cpu: round1(naiveRateCpu),
    checksums_agree: results.every((r) => r.checksumsAgree) && scanAgrees && naiveAgrees,
    hot_prefix_correct: results.every((r) => r.hotOk),
    cpu_share: round1(tree.cpuShare, 2),
    load_average_1m: round1(loadEnd, 2),
    repeats: REPEATS,
    requests: requests.length,
    block_events: events.totalBlockEvents,
    entries: results[0].entries,
    ...compareFields,
  }),
);
