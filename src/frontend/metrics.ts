/**
 * Prometheus metrics of the frontend, on a Registry of its own (never prom-client's global one, so
 * several servers in one process, as in tests, do not collide). Names follow Dynamo's
 * `dynamo_frontend_*` family with a `kvgate_frontend_` prefix, plus per-(worker, rank) load gauges
 * that the router side feeds through `setWorkerLoad`.
 */
import { Gauge, Registry } from 'prom-client';
import type { WorkerId } from '../kv/events.ts';
import {
  type CounterSeries,
  FastCounter,
  FastGauge,
  FastHistogram,
  type GaugeSeries,
  type HistogramSeries,
} from './fast-metrics.ts';

export type Endpoint = 'chat_completions' | 'completions';
export type RequestOutcome = 'success' | 'error' | 'cancelled';

export interface FinishedUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
}

/** Timing of one HTTP generation request; create with `FrontendMetrics.startRequest`. */
export interface RequestTimer {
  /** Tokens arrived (any choice). The first call records time to first token. */
  tokens(count: number): void;
  /** Router decision time reported by the backend. */
  routing(seconds: number): void;
  /** Ends the request; safe to call more than once (the first call counts). */
  finish(outcome: RequestOutcome, httpStatus: number, usage?: FinishedUsage): void;
}

export interface WorkerRankLabels {
  readonly workerId: WorkerId;
  readonly dpRank: number;
  readonly model?: string;
}

export interface WorkerRankLoad {
  readonly activeDecodeBlocks?: number;
  readonly activePrefillTokens?: number;
  /** Fraction of the rank's KV blocks in use, 0..1. */
  readonly kvUsage?: number;
  /** Prefix-cache hit rate of the rank, 0..1. */
  readonly hitRate?: number;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const TOKEN_BUCKETS = [16, 64, 256, 1024, 4096, 16384, 65536, 262144];
const RATIO_BUCKETS = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];

export class FrontendMetrics {
  readonly registry: Registry;
  private readonly requests: FastCounter<'model' | 'endpoint' | 'request_type' | 'status' | 'code'>;
  private readonly inflight: FastGauge<'model'>;
  private readonly duration: FastHistogram<'model' | 'endpoint'>;
  private readonly ttft: FastHistogram<'model'>;
  private readonly itl: FastHistogram<'model'>;
  private readonly inputSequence: FastHistogram<'model'>;
  private readonly outputSequence: FastHistogram<'model'>;
  private readonly inputTokens: FastCounter<'model'>;
  private readonly outputTokens: FastCounter<'model'>;
  private readonly cachedTokens: FastCounter<'model'>;
  private readonly kvHitRate: FastHistogram<'model'>;
  private readonly routingOverhead: FastHistogram<'model'>;
  private readonly decodeBlocks: Gauge<'model' | 'worker_id' | 'dp_rank'>;
  private readonly prefillTokens: Gauge<'model' | 'worker_id' | 'dp_rank'>;
  private readonly kvUsage: Gauge<'model' | 'worker_id' | 'dp_rank'>;
  private readonly rankHitRate: Gauge<'model' | 'worker_id' | 'dp_rank'>;
  private readonly routerQueued: Gauge<'model'>;
  private readonly workerSeries = new Map<WorkerId, Set<string>>();
  /** Series handles per model and (endpoint, stream or unary): resolved once, not per request. */
  private readonly seriesByRequestKind = new Map<string, RequestSeries[]>();

  constructor(options: { prefix?: string; registry?: Registry } = {}) {
    const p = options.prefix ?? 'kvgate_frontend';
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    this.requests = new FastCounter({
      name: `${p}_requests_total`,
      help: 'HTTP generation requests by model, endpoint, stream or unary, outcome and HTTP status.',
      labelNames: ['model', 'endpoint', 'request_type', 'status', 'code'],
      registers,
    });
    this.inflight = new FastGauge({
      name: `${p}_inflight_requests`,
      help: 'Requests being served.',
      labelNames: ['model'],
      registers,
    });
    this.duration = new FastHistogram({
      name: `${p}_request_duration_seconds`,
      help: 'Request duration.',
      labelNames: ['model', 'endpoint'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.ttft = new FastHistogram({
      name: `${p}_time_to_first_token_seconds`,
      help: 'Time from request arrival to the first generated token.',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.itl = new FastHistogram({
      name: `${p}_inter_token_latency_seconds`,
      help: 'Time between generated tokens.',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inputSequence = new FastHistogram({
      name: `${p}_input_sequence_tokens`,
      help: 'Prompt length in tokens.',
      labelNames: ['model'],
      buckets: TOKEN_BUCKETS,
      registers,
    });
    this.outputSequence = new FastHistogram({
      name: `${p}_output_sequence_tokens`,
      help: 'Generated tokens per request.',
      labelNames: ['model'],
      buckets: TOKEN_BUCKETS,
      registers,
    });
    this.inputTokens = new FastCounter({
      name: `${p}_input_tokens_total`,
      help: 'Prompt tokens.',
      labelNames: ['model'],
      registers,
    });
    this.outputTokens = new FastCounter({
      name: `${p}_output_tokens_total`,
      help: 'Generated tokens.',
      labelNames: ['model'],
      registers,
    });
    this.cachedTokens = new FastCounter({
      name: `${p}_cached_tokens_total`,
      help: 'Prompt tokens served from the prefix cache.',
      labelNames: ['model'],
      registers,
    });
    this.kvHitRate = new FastHistogram({
      name: `${p}_kv_hit_rate`,
      help: 'Per request, cached prompt tokens / prompt tokens.',
      labelNames: ['model'],
      buckets: RATIO_BUCKETS,
      registers,
    });
    this.routingOverhead = new FastHistogram({
      name: `${p}_routing_overhead_seconds`,
      help: 'Time the router spent choosing a worker and rank.',
      labelNames: ['model'],
      buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers,
    });
    const rank = ['model', 'worker_id', 'dp_rank'] as const;
    this.decodeBlocks = new Gauge({
      name: `${p}_worker_active_decode_blocks`,
      help: 'Active (deduplicated) decode blocks per worker and rank.',
      labelNames: rank,
      registers,
    });
    this.prefillTokens = new Gauge({
      name: `${p}_worker_active_prefill_tokens`,
      help: 'Prefill tokens in flight per worker and rank.',
      labelNames: rank,
      registers,
    });
    this.kvUsage = new Gauge({
      name: `${p}_worker_kv_usage_ratio`,
      help: 'Fraction of KV blocks in use per worker and rank.',
      labelNames: rank,
      registers,
    });
    this.rankHitRate = new Gauge({
      name: `${p}_worker_kv_hit_rate`,
      help: 'Prefix-cache hit rate per worker and rank.',
      labelNames: rank,
      registers,
    });
    this.routerQueued = new Gauge({
      name: `${p}_router_queued_requests`,
      help: 'Requests waiting in the router queue (--router-queue-threshold) per model.',
      labelNames: ['model'],
      registers,
    });
  }

  startRequest(
    model: string,
    endpoint: Endpoint,
    stream: boolean,
    now: () => number = performanceNow,
  ): RequestTimer {
    return new Timer(this.requestSeries(model, endpoint, stream), now);
  }

  private requestSeries(model: string, endpoint: Endpoint, stream: boolean): RequestSeries {
    let byKind = this.seriesByRequestKind.get(model);
    if (byKind === undefined) {
      byKind = [];
      this.seriesByRequestKind.set(model, byKind);
    }
    const slot = (endpoint === 'chat_completions' ? 0 : 2) + (stream ? 1 : 0);
    let series = byKind[slot];
    if (series === undefined) {
      const requestType = stream ? 'stream' : 'unary';
      const byModel = { model };
      series = {
        outcome: (status, code) =>
          this.requests.series({ model, endpoint, request_type: requestType, status, code: String(code) }),
        outcomes: new Map(),
        inflight: this.inflight.series(byModel),
        duration: this.duration.series({ model, endpoint }),
        ttft: this.ttft.series(byModel),
        itl: this.itl.series(byModel),
        routing: this.routingOverhead.series(byModel),
        inputSequence: this.inputSequence.series(byModel),
        outputSequence: this.outputSequence.series(byModel),
        inputTokens: this.inputTokens.series(byModel),
        outputTokens: this.outputTokens.series(byModel),
        cachedTokens: this.cachedTokens.series(byModel),
        kvHitRate: this.kvHitRate.series(byModel),
      };
      byKind[slot] = series;
    }
    return series;
  }

  /** Counts a request rejected before it reached a backend (bad input, unknown model, busy). */
  rejected(model: string, endpoint: Endpoint, stream: boolean, httpStatus: number): void {
    this.requests
      .series({
        model,
        endpoint,
        request_type: stream ? 'stream' : 'unary',
        status: 'error',
        code: String(httpStatus),
      })
      .inc();
  }

  /** Sets the load gauges of one (worker, rank); fields left out keep their value. */
  setWorkerLoad(labels: WorkerRankLabels, load: WorkerRankLoad): void {
    const series = {
      model: labels.model ?? '',
      worker_id: labels.workerId.toString(),
      dp_rank: String(labels.dpRank),
    };
    if (load.activeDecodeBlocks !== undefined) this.decodeBlocks.set(series, load.activeDecodeBlocks);
    if (load.activePrefillTokens !== undefined) this.prefillTokens.set(series, load.activePrefillTokens);
    if (load.kvUsage !== undefined) this.kvUsage.set(series, load.kvUsage);
    if (load.hitRate !== undefined) this.rankHitRate.set(series, load.hitRate);
    let keys = this.workerSeries.get(labels.workerId);
    if (!keys) {
      keys = new Set();
      this.workerSeries.set(labels.workerId, keys);
    }
    keys.add(JSON.stringify(series));
  }

  /** Sets how many requests of a model wait in its routers' queues. */
  setRouterQueued(model: string, queued: number): void {
    this.routerQueued.set({ model }, queued);
  }

  /** Drops every series of a worker (all ranks), e.g. when its lease expires. */
  removeWorker(workerId: WorkerId): void {
    for (const key of this.workerSeries.get(workerId) ?? []) {
      const series = JSON.parse(key) as { model: string; worker_id: string; dp_rank: string };
      for (const gauge of [this.decodeBlocks, this.prefillTokens, this.kvUsage, this.rankHitRate])
        gauge.remove(series);
    }
    this.workerSeries.delete(workerId);
  }

  /** Requests in flight per model (for the dashboard). */
  inflightRequests(): Record<string, number> {
    const byModel: Record<string, number> = {};
    for (const { labels, value } of this.inflight.current()) byModel[labels.model] = value;
    return byModel;
  }

  contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

const performanceNow = performance.now.bind(performance);

/** The series one kind of request writes to. */
interface RequestSeries {
  readonly outcome: (status: RequestOutcome, code: number) => CounterSeries;
  readonly outcomes: Map<number, CounterSeries>;
  readonly inflight: GaugeSeries;
  readonly duration: HistogramSeries;
  readonly ttft: HistogramSeries;
  readonly itl: HistogramSeries;
  readonly routing: HistogramSeries;
  readonly inputSequence: HistogramSeries;
  readonly outputSequence: HistogramSeries;
  readonly inputTokens: CounterSeries;
  readonly outputTokens: CounterSeries;
  readonly cachedTokens: CounterSeries;
  readonly kvHitRate: HistogramSeries;
}

const OUTCOME_SLOTS: Record<RequestOutcome, number> = { success: 0, error: 1, cancelled: 2 };

class Timer implements RequestTimer {
  private readonly start: number;
  private lastToken = -1;
  private done = false;

  constructor(
    private readonly series: RequestSeries,
    private readonly now: () => number,
  ) {
    this.start = now();
    series.inflight.inc();
  }

  tokens(count: number): void {
    const t = this.now();
    if (this.lastToken < 0) this.series.ttft.observe((t - this.start) / 1000);
    else this.series.itl.observe((t - this.lastToken) / 1000 / count, count);
    this.lastToken = t;
  }

  routing(seconds: number): void {
    this.series.routing.observe(seconds);
  }

  finish(outcome: RequestOutcome, httpStatus: number, usage?: FinishedUsage): void {
    if (this.done) return;
    this.done = true;
    const series = this.series;
    series.inflight.dec();
    const slot = httpStatus * 4 + OUTCOME_SLOTS[outcome];
    let requests = series.outcomes.get(slot);
    if (requests === undefined) {
      requests = series.outcome(outcome, httpStatus);
      series.outcomes.set(slot, requests);
    }
    requests.inc();
    series.duration.observe((this.now() - this.start) / 1000);
    if (usage) {
      series.inputSequence.observe(usage.promptTokens);
      series.outputSequence.observe(usage.completionTokens);
      series.inputTokens.inc(usage.promptTokens);
      series.outputTokens.inc(usage.completionTokens);
      series.cachedTokens.inc(usage.cachedTokens);
      if (usage.promptTokens > 0) series.kvHitRate.observe(usage.cachedTokens / usage.promptTokens);
    }
  }
}
