/** Round-robin over every (worker, rank): the fleet's ranks in turn, ignoring cache and load. */
import type { PolicyName } from '../policy.ts';
import { BaselinePolicy } from './baseline.ts';

export class RoundRobinPolicy extends BaselinePolicy {
  readonly name: PolicyName = 'round-robin';
  private next = 0;

  protected choose(
    _tokens: ArrayLike<number>,
    _candidates: Int32Array,
    count: number,
    commit: boolean,
  ): number {
    const index = this.next % count;
    if (commit) this.next = (this.next + 1) % 0x4000_0000;
    return index;
  }
}
