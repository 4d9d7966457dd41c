/** The least-loaded rank (active blocks + prefill tokens / block size); ties at random. */
import type { PolicyName } from '../policy.ts';
import { BaselinePolicy } from './baseline.ts';

export class LeastLoadedPolicy extends BaselinePolicy {
  readonly name: PolicyName = 'least-loaded';
  private readonly load = (owner: number): number => this.blockLoad(owner);

  protected choose(_tokens: ArrayLike<number>, candidates: Int32Array, count: number): number {
    return this.leastLoaded(candidates, count, this.load);
  }
}
