/**
 * Trace replay in virtual time: every request of a trace goes through a real routing policy to a
 * real mock engine (one DataParallelEngine per worker, all on one VirtualClock), exactly as the
 * gateway wires them: engine KV events become RouterEvents for the router, the first token marks
 * prefill done, the finish frees the request. Each policy runs on fresh engines and a fresh router,
 * so policies see identical traffic. Wall-clock time is measured for the replay speed only and
 * never enters the report.
 */
import { DataParallelEngine } from '../engine/data-parallel-engine.ts';
import { EngineError } from '../engine/errors.ts';
import type { RequestResult, RequestSink } from '../engine/sequence.ts';
import type { KvCacheEvent, WorkerId } from '../kv/events.ts';
import type { GenerateRequest } from '../protocol/generate.ts';
import { type KvRouterConfig, type KvRouterConfigInput, parseRouterConfig } from '../routing/config.ts';
import { createPolicy } from '../routing/policies/index.ts';
import { POLICY_NAMES, type PolicyName, type RoutingPolicy } from '../routing/policy.ts';
import { seededRandom } from '../routing/random.ts';
import { VirtualClock } from '../util/virtual-clock.ts';
import { PolicyMetrics, type RankCounters } from './metrics.ts';
import { PrefixCacheOracle } from './oracle.ts';
import type { ReplayReport, ReplaySettings } from './report.ts';
import { round } from './stats.ts';
import { MOONCAKE_BLOCK_SIZE, type ParsedTrace, type TraceRequest, TraceTokenExpander } from './trace.ts';

export const REPLAY_POLICIES: readonly PolicyName[] = POLICY_NAMES;

/** A year: no request of a replay is ever expired as stale. */
const NO_STALE_EXPIRY_SECS = 365 * 24 * 3600;

/** Engine sizes default to Dynamo's mocker (reference dynamo-router.md §9). */
export const REPLAY_DEFAULTS = {
  workers: 4,
  dpSize: 1,
  rate: 1,
  blockSize: 64,
  numGpuBlocks: 16_384,
  maxNumSeqs: 256,
  maxNumBatchedTokens: 8192,
  speedupRatio: 1,
  seed: 0,
} as const;

export interface ReplayProgress {
  readonly policy: string;
  readonly done: number;
  readonly total: number;
}

export interface ReplayOptions {
  /** Name of the trace in the report (a file name, not a path). */
  readonly source: string;
  readonly workers?: number;
  readonly dpSize?: number;
  /** Arrival-rate multiplier: timestamps are divided by it. */
  readonly rate?: number;
  readonly policies?: readonly string[];
  readonly blockSize?: number;
  readonly traceBlockSize?: number;
  readonly numGpuBlocks?: number;
  readonly maxNumSeqs?: number;
  readonly maxNumBatchedTokens?: number;
  readonly speedupRatio?: number;
  readonly seed?: number;
  /**
   * Router settings (Dynamo's KvRouterConfig: overlap weight, temperature, ...). The replay sets the
   * block size to `blockSize` and turns the stale-request expiry off (every request is freed).
   */
  readonly routerConfig?: KvRouterConfigInput;
  /** Recorded in the report (the trace is expected to be cut already). */
  readonly limit?: number | null;
  readonly onProgress?: (progress: ReplayProgress) => void;
}

export interface PolicyTiming {
  readonly policy: string;
  /** Wall-clock ms of this policy's replay. */
  readonly wallMs: number;
  /** Virtual ms simulated (first arrival to last finish). */
  readonly virtualMs: number;
  /** virtualMs / wallMs. */
  readonly speedX: number;
}

export interface ReplayResult {
  readonly report: ReplayReport;
  readonly timing: readonly PolicyTiming[];
  /**
   * The trace's recorded duration (first to last arrival, before the rate multiplier) over the mean
   * wall time of one policy's replay: how much faster than real time one replay runs.
   */
  readonly replaySpeedX: number;
}

function checkPositiveInt(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
}

function routerConfigOf(options: ReplayOptions): KvRouterConfig {
  const blockSize = options.blockSize ?? REPLAY_DEFAULTS.blockSize;
  const given = options.routerConfig ?? {};
  if (given.blockSize !== undefined && given.blockSize !== blockSize)
    throw new RangeError(`router block size ${given.blockSize} differs from the engines' ${blockSize}`);
  // Every request is freed on finish, so the stale-request safety net (for lost streams) is off:
  // under overload a request may legitimately wait longer than the default 300 s.
  return parseRouterConfig({ ...given, blockSize, staleRequestSecs: NO_STALE_EXPIRY_SECS });
}

function settingsOf(options: ReplayOptions): ReplaySettings {
  const d = REPLAY_DEFAULTS;
  const settings: ReplaySettings = {
    workers: options.workers ?? d.workers,
    dpSize: options.dpSize ?? d.dpSize,
    rate: options.rate ?? d.rate,
    blockSize: options.blockSize ?? d.blockSize,
    traceBlockSize: options.traceBlockSize ?? MOONCAKE_BLOCK_SIZE,
    numGpuBlocks: options.numGpuBlocks ?? d.numGpuBlocks,
    maxNumSeqs: options.maxNumSeqs ?? d.maxNumSeqs,
    maxNumBatchedTokens: options.maxNumBatchedTokens ?? d.maxNumBatchedTokens,
    speedupRatio: options.speedupRatio ?? d.speedupRatio,
    seed: options.seed ?? d.seed,
    limit: options.limit ?? null,
    policies: [...(options.policies ?? REPLAY_POLICIES)],
    router: routerConfigOf(options),
  };
  checkPositiveInt('workers', settings.workers);
  checkPositiveInt('dpSize', settings.dpSize);
  checkPositiveInt('blockSize', settings.blockSize);
  checkPositiveInt('traceBlockSize', settings.traceBlockSize);
  checkPositiveInt('numGpuBlocks', settings.numGpuBlocks);
  checkPositiveInt('maxNumSeqs', settings.maxNumSeqs);
  checkPositiveInt('maxNumBatchedTokens', settings.maxNumBatchedTokens);
  if (!Number.isSafeInteger(settings.seed) || settings.seed < 0)
    throw new RangeError(`seed must be a non-negative integer, got ${settings.seed}`);
  if (!(settings.rate > 0 && Number.isFinite(settings.rate)))
    throw new RangeError(`rate must be a positive number, got ${settings.rate}`);
  if (!(settings.speedupRatio > 0 && Number.isFinite(settings.speedupRatio)))
    throw new RangeError(`speedupRatio must be a positive number, got ${settings.speedupRatio}`);
  if (settings.policies.length === 0) throw new RangeError('at least one policy is needed');
  for (const p of settings.policies) {
    if (!(REPLAY_POLICIES as readonly string[]).includes(p))
      throw new RangeError(`unknown policy "${p}" (known: ${REPLAY_POLICIES.join(', ')})`);
  }
  return settings;
}

/** Worker ids of the replay: 1..W (u64, as the router and events carry them). */
function workerIdOf(index: number): WorkerId {
  return BigInt(index + 1);
}

/** Mixes the run seed with a per-policy salt so policies do not share one random stream. */
function policySeed(seed: number, policy: string): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (let i = 0; i < policy.length; i++) h = Math.imul(h ^ policy.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** One policy over the whole trace, on fresh engines and a fresh router. */
async function replayPolicy(
  requests: readonly TraceRequest[],
  policyName: PolicyName,
  settings: ReplaySettings,
  expander: TraceTokenExpander,
  onProgress: ((progress: ReplayProgress) => void) | undefined,
): Promise<{ metrics: PolicyMetrics; ranks: RankCounters[]; eventErrors: number }> {
  const clock = new VirtualClock();
  const policy: RoutingPolicy = createPolicy(policyName, {
    config: settings.router,
    clock,
    random: seededRandom(policySeed(settings.seed, policyName)),
  });
  const engines: DataParallelEngine[] = [];
  let eventErrors = 0;
  for (let w = 0; w < settings.workers; w++) {
    const workerId = workerIdOf(w);
    policy.addWorker(workerId, {
      dataParallelSize: settings.dpSize,
      blockSize: settings.blockSize,
      totalKvBlocks: settings.numGpuBlocks,
      maxNumSeqs: settings.maxNumSeqs,
      maxNumBatchedTokens: settings.maxNumBatchedTokens,
    });
    const engine = new DataParallelEngine({
      workerId,
      dataParallelSize: settings.dpSize,
      blockSize: settings.blockSize,
      numGpuBlocks: settings.numGpuBlocks,
      maxNumSeqs: settings.maxNumSeqs,
      maxNumBatchedTokens: settings.maxNumBatchedTokens,
      speedupRatio: settings.speedupRatio,
      seed: settings.seed,
      clock,
    });
    engine.onKvEvent((event: KvCacheEvent) => {
      const error = policy.applyEvent({ workerId, event });
      if (error !== null) eventErrors++;
    });
    engines.push(engine);
  }

  const metrics = new PolicyMetrics(policyName, requests.length);
  const total = requests.length;
  const progressStep = Math.max(1, Math.floor(total / 200));
  const report = (): void => {
    if (onProgress && (metrics.completed + metrics.failed) % progressStep === 0)
      onProgress({ policy: policyName, done: metrics.completed + metrics.failed, total });
  };

  const submit = (index: number): void => {
    const request = requests[index];
    const requestId = `r${index}`;
    const tokens = expander.expand(request);
    const decision = policy.route(requestId, tokens);
    const workerIndex = Number(decision.workerId) - 1;
    metrics.arrived(index, clock.now(), `${decision.workerId}:${decision.dpRank}`);
    const sink: RequestSink = {
      onToken() {
        if (!metrics.hasFirstToken(index)) policy.markPrefillCompleted(requestId);
        metrics.tokens(index, clock.now(), 1);
      },
      onFinish(result: RequestResult) {
        policy.free(requestId);
        if (result.reason !== 'stop' && result.reason !== 'length') metrics.failedRequest(index, clock.now());
        else metrics.finished(index, clock.now(), result.usage.promptTokens, result.usage.cachedTokens);
        report();
      },
    };
    const generate: GenerateRequest = {
      requestId,
      // The engine takes a Uint32Array prompt as is (hashed without a copy; see engine/validate.ts),
      // though the protocol type names arrays only. `tokens` is fresh per request and never reused.
      tokenIds: tokens as unknown as readonly number[],
      sampling: { maxTokens: request.outputLength, ignoreEos: true },
      dpRank: decision.dpRank,
    };
    try {
      engines[workerIndex].submit(generate, sink);
    } catch (err) {
      // A request the engine refuses (e.g. larger than a rank's KV cache) fails alone.
      if (!(err instanceof EngineError)) throw err;
      policy.free(requestId);
      metrics.failedRequest(index, clock.now());
      report();
    }
  };

  // Arrivals chain one timer at a time, so the clock's heap holds engine timers plus one arrival.
  const arrivalAt = (index: number): number => requests[index].timestamp / settings.rate;
  let next = 0;
  const arrive = (): void => {
    const now = arrivalAt(next);
    while (next < total && arrivalAt(next) === now) submit(next++);
    if (next < total) clock.setTimer(arrive, arrivalAt(next) - clock.now());
  };
  if (total > 0) clock.setTimer(arrive, arrivalAt(0));

  // Run in slices of virtual time so a progress bar can redraw between them.
  const sliceMs = 1000;
  for (let due = clock.nextDue(); due !== undefined; due = clock.nextDue()) {
    clock.runUntil(due + sliceMs);
    if (onProgress) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  for (const engine of engines) engine.close();
  onProgress?.({ policy: policyName, done: total, total });

  const ranks: RankCounters[] = [];
  engines.forEach((engine, w) => {
    for (const m of engine.rankMetrics()) {
      ranks.push({
        workerId: workerIdOf(w).toString(),
        dpRank: m.dpRank,
        busyMs: m.busyMs / settings.speedupRatio,
        preemptions: m.preemptions,
      });
    }
  });
  return { metrics, ranks, eventErrors };
}

/** Replays the trace once per policy and measures the oracle; see ReplayResult. */
export async function runReplay(trace: ParsedTrace, options: ReplayOptions): Promise<ReplayResult> {
  const settings = settingsOf(options);
  const requests = trace.requests;
  const expander = new TraceTokenExpander({ traceBlockSize: settings.traceBlockSize });

  const oracle = new PrefixCacheOracle(settings.blockSize);
  let scratch = new Uint32Array(0);
  let promptTokens = 0;
  let outputTokens = 0;
  for (const r of requests) {
    if (scratch.length < r.inputLength) scratch = new Uint32Array(r.inputLength * 2);
    oracle.observe(expander.expand(r, scratch));
    promptTokens += r.inputLength;
    outputTokens += r.outputLength;
  }
  const recordedDurationMs =
    requests.length > 0 ? requests[requests.length - 1].timestamp - requests[0].timestamp : 0;

  const policies = [];
  const timing: PolicyTiming[] = [];
  for (const name of settings.policies) {
    const started = performance.now();
    const { metrics, ranks, eventErrors } = await replayPolicy(
      requests,
      name as PolicyName,
      settings,
      expander,
      options.onProgress,
    );
    const wallMs = performance.now() - started;
    const summary = metrics.summarise(ranks, eventErrors);
    policies.push(summary);
    timing.push({ policy: name, wallMs, virtualMs: summary.makespanMs, speedX: summary.makespanMs / wallMs });
  }

  const meanWallMs = timing.reduce((s, t) => s + t.wallMs, 0) / Math.max(1, timing.length);
  const report: ReplayReport = {
    kind: 'kvgate-replay-report',
    version: 1,
    settings,
    trace: {
      source: options.source,
      requests: requests.length,
      skippedLines: trace.skipped.length,
      promptTokens,
      outputTokens,
      recordedDurationMs: round(recordedDurationMs),
      replayedDurationMs: round(recordedDurationMs / settings.rate),
    },
    oracle: {
      blockSize: settings.blockSize,
      promptTokens: oracle.promptTokens,
      hitTokens: oracle.hitTokens,
      hitRate: round(oracle.hitRate, 6),
    },
    policies,
  };
  return { report, timing, replaySpeedX: meanWallMs > 0 ? round(recordedDurationMs / meanWallMs, 1) : 0 };
}
