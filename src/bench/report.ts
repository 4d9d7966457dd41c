/**
 * The replay report: one entry per routing policy plus the infinite-cache oracle. `report.json` is
 * deterministic (same trace, options and seed give the same bytes): it holds virtual-time figures
 * only, never wall-clock times or dates.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KvRouterConfig } from '../routing/config.ts';
import { renderReportHtml } from './report-html.ts';

export interface LatencySummary {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly mean: number;
}

export interface RankLoad {
  /** Worker id as a decimal string (u64). */
  readonly workerId: string;
  readonly dpRank: number;
  /** Virtual ms the rank spent in scheduler passes (prefill + decode). */
  readonly busyMs: number;
  /** Requests routed to this rank. */
  readonly requests: number;
}

export interface PolicyReport {
  readonly policy: string;
  readonly requests: number;
  readonly completed: number;
  readonly failed: number;
  readonly ttftMs: LatencySummary;
  readonly itlMs: LatencySummary;
  readonly e2eMs: LatencySummary;
  /** Output tokens per second of virtual time, first arrival to last finish. */
  readonly outputTokensPerS: number;
  /** Virtual ms from the first arrival to the last finish. */
  readonly makespanMs: number;
  readonly promptTokens: number;
  /** Prompt tokens the engines served from their prefix caches (their usage). */
  readonly cachedTokens: number;
  /** cachedTokens / promptTokens. */
  readonly hitRate: number;
  /** Max / mean busy time over every (worker, rank); 1 is perfectly even. */
  readonly loadImbalance: number;
  readonly preemptions: number;
  /** Engine KV events the router rejected (0 when the event pipeline is sound). */
  readonly kvEventErrors: number;
  readonly ranks: readonly RankLoad[];
  /** TTFT quantiles 0, 1, ..., 100 % (ms): the CDF the HTML report draws. */
  readonly ttftCdfMs: readonly number[];
}

export interface OracleReport {
  readonly blockSize: number;
  readonly promptTokens: number;
  readonly hitTokens: number;
  readonly hitRate: number;
}

export interface TraceSummary {
  /** File name of the trace (no directory, so the report does not depend on the working directory). */
  readonly source: string;
  readonly requests: number;
  readonly skippedLines: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  /** First to last arrival, ms, as recorded. */
  readonly recordedDurationMs: number;
  /** First to last arrival, ms, after dividing timestamps by the rate multiplier. */
  readonly replayedDurationMs: number;
}

export interface ReplaySettings {
  readonly workers: number;
  readonly dpSize: number;
  readonly rate: number;
  readonly blockSize: number;
  readonly traceBlockSize: number;
  readonly numGpuBlocks: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly speedupRatio: number;
  readonly seed: number;
  readonly limit: number | null;
  readonly policies: readonly string[];
  /** The router settings every policy got (the `kv` policy uses all of them). */
  readonly router: KvRouterConfig;
}

export interface ReplayReport {
  readonly kind: 'kvgate-replay-report';
  readonly version: 1;
  readonly settings: ReplaySettings;
  readonly trace: TraceSummary;
  readonly oracle: OracleReport;
  readonly policies: readonly PolicyReport[];
}

/** The benchmark line: the last stdout line of `kvgate bench replay` and `npm run bench:replay`. */
export interface ReplayHeadline {
  readonly kv_ttft_p90_ms: number | null;
  readonly rr_ttft_p90_ms: number | null;
  readonly kv_hit_rate: number | null;
  readonly oracle_hit_rate: number;
  /** Lowest TTFT p90 among the policies other than kv. */
  readonly best_peer_ttft_p90_ms: number | null;
  readonly replay_speed_x: number;
}

export function headline(report: ReplayReport, replaySpeedX: number): ReplayHeadline {
  const byName = new Map(report.policies.map((p) => [p.policy, p]));
  const kv = byName.get('kv');
  const rr = byName.get('round-robin');
  const peers = report.policies.filter((p) => p.policy !== 'kv').map((p) => p.ttftMs.p90);
  return {
    kv_ttft_p90_ms: kv ? kv.ttftMs.p90 : null,
    rr_ttft_p90_ms: rr ? rr.ttftMs.p90 : null,
    kv_hit_rate: kv ? kv.hitRate : null,
    oracle_hit_rate: report.oracle.hitRate,
    best_peer_ttft_p90_ms: peers.length > 0 ? Math.min(...peers) : null,
    replay_speed_x: replaySpeedX,
  };
}

export function reportJson(report: ReplayReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

/** Writes `report.json` and `report.html` into `dir` (created if missing); returns their paths. */
export async function writeReport(
  dir: string,
  report: ReplayReport,
): Promise<{ json: string; html: string }> {
  await mkdir(dir, { recursive: true });
  const json = join(dir, 'report.json');
  const html = join(dir, 'report.html');
  await writeFile(json, reportJson(report));
  await writeFile(html, renderReportHtml(report));
  return { json, html };
}
