/**
 * Counters, gauges and histograms for the per-request hot path, exposed through a prom-client
 * `Registry` exactly as prom-client's own would be (same exposition text). prom-client hashes the
 * label object on every observation; here a caller resolves its label values once into a series
 * handle (`series(...)`) and then observes through the handle: a few number writes per call.
 *
 * A series appears in the exposition once it has been used (incremented, set or observed, even
 * by zero), as with prom-client.
 */
import type { Metric, Registry } from 'prom-client';

type MetricType = 'counter' | 'gauge' | 'histogram';

export interface FastMetricConfig<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly registers: readonly Registry[];
}

type Labels<L extends string> = Readonly<Record<L, string>>;

/** What prom-client's Registry reads from a metric to write its exposition text. */
interface ExposedValue {
  readonly labels: Record<string, string | number>;
  readonly sharedLabels?: Record<string, string>;
  readonly value: number;
  readonly metricName?: string;
}

abstract class FastMetric<L extends string, S extends { used: boolean }> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum' as const;
  abstract readonly type: MetricType;
  private readonly byKey = new Map<string, { labels: Labels<L>; series: S }>();
  private readonly labelNames: readonly L[];

  constructor(config: FastMetricConfig<L>) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames;
    // The Registry only reads name, help, type, aggregator, get() and reset(): see the class comment.
    for (const registry of config.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The series of these label values (made on first use; keep the handle for repeated calls). */
  series(labels: Labels<L>): S {
    let key = '';
    for (const name of this.labelNames) key += `${labels[name]}\u0000`;
    let entry = this.byKey.get(key);
    if (entry === undefined) {
      const ordered = {} as Record<L, string>;
      for (const name of this.labelNames) ordered[name] = labels[name];
      entry = { labels: ordered, series: this.create() };
      this.byKey.set(key, entry);
    }
    return entry.series;
  }

  /** Every series in use, with its label values. */
  *entries(): IterableIterator<{ labels: Labels<L>; series: S }> {
    for (const entry of this.byKey.values()) if (entry.series.used) yield entry;
  }

  reset(): void {
    for (const { series } of this.byKey.values()) this.clear(series);
  }

  async get(): Promise<{
    name: string;
    help: string;
    type: MetricType;
    aggregator: 'sum';
    values: ExposedValue[];
  }> {
    const values: ExposedValue[] = [];
    for (const { labels, series } of this.byKey.values())
      if (series.used) this.expose(labels, series, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  protected abstract create(): S;
  protected abstract clear(series: S): void;
  protected abstract expose(labels: Labels<L>, series: S, out: ExposedValue[]): void;
}

export class CounterSeries {
  used = false;
  value = 0;

  inc(by = 1): void {
    this.used = true;
    this.value += by;
  }
}

export class FastCounter<L extends string> extends FastMetric<L, CounterSeries> {
  readonly type = 'counter' as const;

  protected create(): CounterSeries {
    return new CounterSeries();
  }

  protected clear(series: CounterSeries): void {
    series.used = false;
    series.value = 0;
  }

  protected expose(labels: Labels<L>, series: CounterSeries, out: ExposedValue[]): void {
    out.push({ labels: { ...labels }, value: series.value });
  }
}

export class GaugeSeries {
  used = false;
  value = 0;

  inc(by = 1): void {
    this.used = true;
    this.value += by;
  }

  dec(by = 1): void {
    this.used = true;
    this.value -= by;
  }

  set(value: number): void {
    this.used = true;
    this.value = value;
  }
}

export class FastGauge<L extends string> extends FastMetric<L, GaugeSeries> {
  readonly type = 'gauge' as const;

  /** The value of every series in use. */
  current(): { labels: Labels<L>; value: number }[] {
    return [...this.entries()].map(({ labels, series }) => ({ labels, value: series.value }));
  }

  protected create(): GaugeSeries {
    return new GaugeSeries();
  }

  protected clear(series: GaugeSeries): void {
    series.used = false;
    series.value = 0;
  }

  protected expose(labels: Labels<L>, series: GaugeSeries, out: ExposedValue[]): void {
    out.push({ labels: { ...labels }, value: series.value });
  }
}

export class HistogramSeries {
  used = false;
  sum = 0;
  count = 0;
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  readonly buckets: Float64Array;

  constructor(private readonly bounds: readonly number[]) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  /** Records `value` `times` times (a chunk of several tokens has one latency per token). */
  observe(value: number, times = 1): void {
    if (!Number.isFinite(value)) return;
    this.used = true;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.buckets[i] += times;
    for (let k = 0; k < times; k++) this.sum += value; // as prom-client sums: one addition each
    this.count += times;
  }
}

export class FastHistogram<L extends string> extends FastMetric<L, HistogramSeries> {
  readonly type = 'histogram' as const;
  private readonly bounds: readonly number[];

  constructor(config: FastMetricConfig<L> & { readonly buckets: readonly number[] }) {
    super(config);
    this.bounds = [...config.buckets].sort((a, b) => a - b);
  }

  protected create(): HistogramSeries {
    return new HistogramSeries(this.bounds);
  }

  protected clear(series: HistogramSeries): void {
    series.used = false;
    series.sum = 0;
    series.count = 0;
    series.buckets.fill(0);
  }

  /** prom-client's shape: cumulative `_bucket` lines with `le` first, then `+Inf`, `_sum`, `_count`. */
  protected expose(labels: Labels<L>, series: HistogramSeries, out: ExposedValue[]): void {
    const bucketName = `${this.name}_bucket`;
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += series.buckets[i];
      out.push({
        labels: { le: this.bounds[i] },
        sharedLabels: labels,
        value: cumulative,
        metricName: bucketName,
      });
    }
    out.push({ labels: { le: '+Inf' }, sharedLabels: labels, value: series.count, metricName: bucketName });
    out.push({ labels: {}, sharedLabels: labels, value: series.sum, metricName: `${this.name}_sum` });
    out.push({ labels: {}, sharedLabels: labels, value: series.count, metricName: `${this.name}_count` });
  }
}
