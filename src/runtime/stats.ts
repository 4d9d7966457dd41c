/**
 * Dropped-input accounting: every malformed key, frame or message a plane drops is logged once per
 * occurrence and counted, per plane object (for tests and health) and process-wide (Prometheus).
 */
import { Counter, register } from 'prom-client';
import { log } from '../util/log.ts';
import type { MalformedCounts } from './types.ts';

export type PlaneName = keyof MalformedCounts;

const METRIC = 'kvgate_runtime_malformed_total';

function processCounter(): Counter<'plane'> {
  const existing = register.getSingleMetric(METRIC);
  if (existing) return existing as Counter<'plane'>;
  return new Counter({
    name: METRIC,
    help: 'Malformed discovery records, request frames and events that were dropped',
    labelNames: ['plane'],
  });
}

const malformedTotal = processCounter();

export class MalformedCounter {
  readonly counts: MalformedCounts = { discovery: 0, request: 0, event: 0 };

  drop(plane: PlaneName, what: string, detail: string): void {
    this.counts[plane]++;
    malformedTotal.inc({ plane });
    log.warn({ plane, what, detail: detail.slice(0, 200) }, 'runtime: dropped malformed input');
  }
}
