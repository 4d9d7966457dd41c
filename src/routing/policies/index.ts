/** Routing policies by name: `createPolicy('kv' | 'round-robin' | ...)`. */
import type { OwnerTable } from '../../kv/owners.ts';
import type { Clock } from '../../util/clock.ts';
import { type KvRouterConfig, type KvRouterConfigInput, parseRouterConfig } from '../config.ts';
import { UnknownPolicyError } from '../errors.ts';
import { KvRouter } from '../kv-router.ts';
import { POLICY_NAMES, type PolicyName, type RoutingPolicy } from '../policy.ts';
import type { RandomSource } from '../random.ts';
import { type CacheAwareOptions, CacheAwarePolicy } from './cache-aware.ts';
import { LeastLoadedPolicy } from './least-loaded.ts';
import { PowerOfTwoPolicy } from './power-of-two.ts';
import { RandomPolicy } from './random.ts';
import { RoundRobinPolicy } from './round-robin.ts';

export { CacheAwarePolicy, LeastLoadedPolicy, PowerOfTwoPolicy, RandomPolicy, RoundRobinPolicy };

export interface CreatePolicyOptions {
  /** Router config (block size and stale limit apply to every policy; the rest to `kv`). */
  readonly config?: KvRouterConfigInput | KvRouterConfig;
  readonly clock?: Clock;
  readonly random?: RandomSource;
  readonly owners?: OwnerTable;
  readonly cacheAware?: CacheAwareOptions;
}

export function isPolicyName(name: string): name is PolicyName {
  return (POLICY_NAMES as readonly string[]).includes(name);
}

export function createPolicy(name: string, options: CreatePolicyOptions = {}): RoutingPolicy {
  if (!isPolicyName(name)) throw new UnknownPolicyError(name, POLICY_NAMES);
  const config = parseRouterConfig(options.config ?? {});
  const { clock, random, owners } = options;
  const base = {
    blockSize: config.blockSize,
    staleRequestSecs: config.staleRequestSecs,
    clock,
    random,
    owners,
  };
  switch (name) {
    case 'kv':
      return new KvRouter(config, { clock, random, owners });
    case 'round-robin':
      return new RoundRobinPolicy(base);
    case 'random':
      return new RandomPolicy(base);
    case 'power-of-two':
      return new PowerOfTwoPolicy(base);
    case 'least-loaded':
      return new LeastLoadedPolicy(base);
    case 'cache-aware':
      return new CacheAwarePolicy({ ...base, ...options.cacheAware });
  }
}
