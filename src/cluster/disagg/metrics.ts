/**
 * Prometheus counters of disaggregated serving, next to the frontend's own metrics: how requests
 * ran (disaggregated, or aggregated and why), which prefill and decode (worker, rank) served them,
 * and prefill failures.
 */
import { Counter, type Registry } from 'prom-client';
import type { DisaggOutcome } from './disaggregated-model-router.ts';

export class DisaggMetrics {
  private readonly requests: Counter<'model' | 'mode' | 'reason'>;
  private readonly prefillRanks: Counter<'model' | 'worker_id' | 'dp_rank'>;
  private readonly decodeRanks: Counter<'model' | 'worker_id' | 'dp_rank'>;
  private readonly prefillFailures: Counter<'model' | 'worker_id'>;

  constructor(registry: Registry, prefix = 'kvgate_frontend') {
    const registers = [registry];
    this.requests = new Counter({
      name: `${prefix}_disagg_requests_total`,
      help: 'Requests by how they ran: disaggregated, or aggregated with the reason',
      labelNames: ['model', 'mode', 'reason'],
      registers,
    });
    this.prefillRanks = new Counter({
      name: `${prefix}_disagg_prefill_rank_requests_total`,
      help: 'Disaggregated requests per prefill (worker, dp_rank)',
      labelNames: ['model', 'worker_id', 'dp_rank'],
      registers,
    });
    this.decodeRanks = new Counter({
      name: `${prefix}_disagg_decode_rank_requests_total`,
      help: 'Disaggregated requests per decode (worker, dp_rank)',
      labelNames: ['model', 'worker_id', 'dp_rank'],
      registers,
    });
    this.prefillFailures = new Counter({
      name: `${prefix}_disagg_prefill_failures_total`,
      help: 'Prefills that failed (fallback or error followed)',
      labelNames: ['model', 'worker_id'],
      registers,
    });
  }

  /** Feeds the counters; pass as DisaggregationOptions.onOutcome. */
  readonly record = (outcome: DisaggOutcome): void => {
    const model = outcome.model;
    switch (outcome.kind) {
      case 'disaggregated':
        this.requests.inc({ model, mode: 'disaggregated', reason: '' });
        this.prefillRanks.inc({
          model,
          worker_id: outcome.prefill.workerId.toString(),
          dp_rank: String(outcome.prefill.dpRank),
        });
        this.decodeRanks.inc({
          model,
          worker_id: outcome.decode.workerId.toString(),
          dp_rank: String(outcome.decode.dpRank),
        });
        return;
      case 'aggregated':
        this.requests.inc({ model, mode: 'aggregated', reason: outcome.reason });
        return;
      case 'prefill_failed':
        this.prefillFailures.inc({ model, worker_id: outcome.prefillWorkerId.toString() });
        return;
    }
  };
}
