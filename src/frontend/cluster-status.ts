/**
 * What the dashboard and the per-(worker, rank) Prometheus gauges show about a cluster: for every
 * worker discovery sees (every model, every component) and each of its ranks, the router's tracked
 * load (active decode blocks, prefill tokens) and the worker's latest kv_metrics report (KV usage,
 * prefix hit rate). `snapshot()` reads it fresh and brings the gauges up to date, dropping the
 * series of workers that left; call it on every dashboard poll and metrics scrape.
 */
import type { ModelWatcher } from '../cluster/model-watcher.ts';
import type { WorkerId } from '../kv/events.ts';
import type { DashboardData, DashboardRank, DashboardWorker } from './dashboard.ts';
import type { FrontendMetrics } from './metrics.ts';

export class ClusterStatus {
  private shown = new Set<WorkerId>();

  constructor(
    private readonly watcher: ModelWatcher,
    private readonly metrics?: FrontendMetrics,
  ) {}

  snapshot(): DashboardData {
    const workers: DashboardWorker[] = [];
    const queued = new Map<string, number>();
    for (const router of this.watcher.routers()) {
      queued.set(router.model, (queued.get(router.model) ?? 0) + router.queued);
      const loads = new Map<string, ReturnType<typeof router.loads>[number]>();
      for (const load of router.loads()) loads.set(`${load.workerId}:${load.dpRank}`, load);
      const instances = router.instances().sort((a, b) => (a.workerId < b.workerId ? -1 : 1));
      for (const { workerId, card } of instances) {
        const ranks: DashboardRank[] = [];
        for (let dpRank = 0; dpRank < card.dataParallelSize; dpRank++) {
          const load = loads.get(`${workerId}:${dpRank}`);
          const reported = load?.reported;
          ranks.push({
            dpRank,
            activeDecodeBlocks: load?.activeDecodeBlocks ?? 0,
            activePrefillTokens: load?.activePrefillTokens ?? 0,
            kvUsage: reported?.kvUsage ?? 0,
            hitRate: reported?.prefixHitRate ?? 0,
            totalBlocks: card.totalKvBlocks,
          });
        }
        workers.push({ workerId, model: router.model, role: card.role, ranks });
      }
    }
    this.updateGauges(workers);
    for (const [model, count] of queued) this.metrics?.setRouterQueued(model, count);
    return { workers };
  }

  private updateGauges(workers: readonly DashboardWorker[]): void {
    const metrics = this.metrics;
    if (metrics === undefined) return;
    const now = new Set<WorkerId>();
    for (const worker of workers) {
      now.add(worker.workerId);
      for (const rank of worker.ranks) {
        metrics.setWorkerLoad(
          { workerId: worker.workerId, dpRank: rank.dpRank, model: worker.model },
          {
            activeDecodeBlocks: rank.activeDecodeBlocks,
            activePrefillTokens: rank.activePrefillTokens,
            kvUsage: rank.kvUsage,
            hitRate: rank.hitRate,
          },
        );
      }
    }
    for (const workerId of this.shown) if (!now.has(workerId)) metrics.removeWorker(workerId);
    this.shown = now;
  }
}
