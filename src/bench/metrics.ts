/**
 * Per-policy measurements of one replay, in virtual milliseconds: every request's arrival, first
 * token, inter-token gaps and finish, plus the engines' usage (cached prompt tokens) and per-rank
 * counters. `summarise` turns them into the report's PolicyReport.
 */
import type { LatencySummary, PolicyReport, RankLoad } from './report.ts';
import { cdfPoints, percentile, round, SampleBuffer, sortedCopy } from './stats.ts';

export interface RankCounters {
  readonly workerId: string;
  readonly dpRank: number;
  readonly busyMs: number;
  readonly preemptions: number;
}

export class PolicyMetrics {
  private readonly arrival: Float64Array;
  private readonly firstToken: Float64Array;
  private readonly lastToken: Float64Array;
  private readonly finish: Float64Array;
  private readonly itl = new SampleBuffer();
  private completedCount = 0;
  private failedCount = 0;
  private promptTokens = 0;
  private cachedTokens = 0;
  private outputTokens = 0;
  private firstArrival = Number.POSITIVE_INFINITY;
  private lastFinish = Number.NEGATIVE_INFINITY;
  private readonly routedTo = new Map<string, number>();

  constructor(
    readonly policy: string,
    readonly requests: number,
  ) {
    this.arrival = new Float64Array(requests).fill(Number.NaN);
    this.firstToken = new Float64Array(requests).fill(Number.NaN);
    this.lastToken = new Float64Array(requests).fill(Number.NaN);
    this.finish = new Float64Array(requests).fill(Number.NaN);
  }

  get completed(): number {
    return this.completedCount;
  }

  get failed(): number {
    return this.failedCount;
  }

  arrived(index: number, now: number, rankKey: string): void {
    this.arrival[index] = now;
    if (now < this.firstArrival) this.firstArrival = now;
    this.routedTo.set(rankKey, (this.routedTo.get(rankKey) ?? 0) + 1);
  }

  /** `count` tokens arrived together at `now` (a chunk). */
  tokens(index: number, now: number, count: number): void {
    if (count <= 0) return;
    if (Number.isNaN(this.firstToken[index])) {
      this.firstToken[index] = now;
      // Tokens that came out with the first one: no gap between them.
      for (let i = 1; i < count; i++) this.itl.push(0);
    } else {
      const gap = (now - this.lastToken[index]) / count;
      for (let i = 0; i < count; i++) this.itl.push(gap);
    }
    this.lastToken[index] = now;
    this.outputTokens += count;
  }

  hasFirstToken(index: number): boolean {
    return !Number.isNaN(this.firstToken[index]);
  }

  finished(index: number, now: number, promptTokens: number, cachedTokens: number): void {
    this.finish[index] = now;
    this.completedCount++;
    this.promptTokens += promptTokens;
    this.cachedTokens += cachedTokens;
    if (now > this.lastFinish) this.lastFinish = now;
  }

  failedRequest(index: number, now: number): void {
    this.finish[index] = now;
    this.failedCount++;
    if (now > this.lastFinish) this.lastFinish = now;
  }

  summarise(ranks: readonly RankCounters[], kvEventErrors: number): PolicyReport {
    const ttft: number[] = [];
    const e2e: number[] = [];
    for (let i = 0; i < this.requests; i++) {
      if (Number.isNaN(this.finish[i]) || Number.isNaN(this.firstToken[i])) continue;
      ttft.push(this.firstToken[i] - this.arrival[i]);
      e2e.push(this.finish[i] - this.arrival[i]);
    }
    const ttftSorted = sortedCopy(ttft);
    const e2eSorted = sortedCopy(e2e);
    const itlSorted = this.itl.sorted();
    const makespan = Number.isFinite(this.lastFinish) ? this.lastFinish - this.firstArrival : 0;
    let busySum = 0;
    let busyMax = 0;
    for (const r of ranks) {
      busySum += r.busyMs;
      if (r.busyMs > busyMax) busyMax = r.busyMs;
    }
    const busyMean = ranks.length > 0 ? busySum / ranks.length : 0;
    const rankLoads: RankLoad[] = ranks.map((r) => ({
      workerId: r.workerId,
      dpRank: r.dpRank,
      busyMs: round(r.busyMs),
      requests: this.routedTo.get(`${r.workerId}:${r.dpRank}`) ?? 0,
    }));
    return {
      policy: this.policy,
      requests: this.requests,
      completed: this.completedCount,
      failed: this.failedCount,
      ttftMs: summary(ttftSorted),
      itlMs: summary(itlSorted),
      e2eMs: summary(e2eSorted),
      outputTokensPerS: makespan > 0 ? round((this.outputTokens * 1000) / makespan) : 0,
      makespanMs: round(makespan),
      promptTokens: this.promptTokens,
      cachedTokens: this.cachedTokens,
      hitRate: this.promptTokens > 0 ? round(this.cachedTokens / this.promptTokens, 6) : 0,
      loadImbalance: busyMean > 0 ? round(busyMax / busyMean, 4) : 1,
      preemptions: ranks.reduce((n, r) => n + r.preemptions, 0),
      kvEventErrors,
      ranks: rankLoads,
      ttftCdfMs: cdfPoints(ttftSorted).map((v) => round(v)),
    };
  }
}

function summary(sorted: Float64Array): LatencySummary {
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i];
  return {
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    mean: sorted.length > 0 ? round(sum / sorted.length) : 0,
  };
}
