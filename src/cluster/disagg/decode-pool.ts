/**
 * The `backend` component of a model holds decode workers and aggregated workers. A disaggregated
 * decode (it carries bootstrap info) goes to a decode worker, or to an aggregated one when the
 * pool has no decode worker (an aggregated engine with a KV transfer pulls like a decode engine);
 * a request that prefills locally (conditional disaggregation, fallback) needs an aggregated one.
 * In a pool of one kind the router chooses freely; in a mixed pool the choice is made among the
 * workers of the right kind by the same cost (or, for load-only policies, the least loaded rank)
 * and pinned.
 */
import type { WorkerId } from '../../kv/events.ts';
import type { WorkerRole } from '../../protocol/generate.ts';
import { NoWorkersError } from '../../routing/errors.ts';
import { KvRouter } from '../../routing/kv-router.ts';
import type { RouteOptions } from '../../routing/policy.ts';
import type { ModelRouter, RequestRouting } from '../model-router.ts';
import { DisaggError } from './errors.ts';

export type DecodeNeed = 'pull' | 'local-prefill';

/** The roles that can serve a need in this pool; empty when none can. */
export function rolesFor(router: ModelRouter, need: DecodeNeed): ReadonlySet<WorkerRole> {
  const roles = new Set<WorkerRole>();
  for (const { card } of router.instances()) roles.add(card.role);
  if (need === 'local-prefill') return roles.has('aggregated') ? new Set(['aggregated']) : new Set();
  if (roles.has('decode')) return new Set(['decode']);
  return roles.has('aggregated') ? new Set(['aggregated']) : new Set();
}

/** Whether a worker of this role can serve the need at all (pins may name either kind for a pull). */
export function roleCanServe(role: WorkerRole, need: DecodeNeed): boolean {
  return need === 'pull' ? role === 'decode' || role === 'aggregated' : role === 'aggregated';
}

/** True when some worker of the pool can prefill a prompt itself. */
export function canPrefillLocally(router: ModelRouter): boolean {
  return rolesFor(router, 'local-prefill').size > 0;
}

/**
 * The routing for a request with this need: unchanged when every worker qualifies, else pinned to
 * the best qualifying (worker, rank). A pinned worker that cannot serve the need is a
 * DISAGG_WRONG_ROLE (an aggregated worker may be pinned for a pull).
 */
export function routingFor(
  router: ModelRouter,
  tokens: readonly number[],
  routing: RequestRouting,
  need: DecodeNeed,
): RequestRouting {
  const roles = rolesFor(router, need);
  const instances = router.instances();
  const allowed = new Set<WorkerId>();
  for (const { workerId, card } of instances) if (roles.has(card.role)) allowed.add(workerId);
  if (routing.workerId !== undefined) {
    const pinned = instances.find((i) => i.workerId === routing.workerId);
    if (pinned !== undefined && !roleCanServe(pinned.card.role, need))
      throw new DisaggError(
        'DISAGG_WRONG_ROLE',
        `worker ${routing.workerId} is a ${pinned.card.role} worker and cannot ${need === 'pull' ? 'decode a prefilled request' : 'prefill a prompt'}`,
        400,
      );
    return routing;
  }
  if (allowed.size === instances.length) return routing;
  if (allowed.size === 0)
    throw new NoWorkersError(
      need === 'pull'
        ? `no decode worker of ${router.model} can take a prefilled request`
        : `no aggregated worker of ${router.model} can prefill a prompt`,
    );
  const options: RouteOptions = {
    ...(routing.dpRank !== undefined ? { dpRank: routing.dpRank } : {}),
    ...(routing.overrides !== undefined ? { overrides: routing.overrides } : {}),
  };
  const policy = router.policy;
  let best: { workerId: WorkerId; dpRank: number } | undefined;
  if (policy instanceof KvRouter) {
    let bestCost = Number.POSITIVE_INFINITY;
    for (const load of policy.potentialLoads(tokens, options))
      if (allowed.has(load.workerId) && load.cost < bestCost) {
        bestCost = load.cost;
        best = load;
      }
  } else {
    const decision = router.decide(tokens, routing);
    if (allowed.has(decision.workerId)) best = decision;
    else {
      let bestLoad = Number.POSITIVE_INFINITY;
      for (const load of policy.loads()) {
        if (!allowed.has(load.workerId)) continue;
        if (routing.dpRank !== undefined && load.dpRank !== routing.dpRank) continue;
        const busy = load.activeRequests + load.activeDecodeBlocks;
        if (busy < bestLoad) {
          bestLoad = busy;
          best = load;
        }
      }
    }
  }
  if (best === undefined)
    throw new NoWorkersError(`no ${[...roles].join('/')} worker of ${router.model} fits`);
  return { ...routing, workerId: best.workerId, dpRank: best.dpRank };
}
