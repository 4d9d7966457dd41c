/**
 * Power of two choices: two distinct random ranks, the less loaded wins (load = active blocks +
 * prefill tokens / block size, the same token-based load SGLang uses when it knows it).
 */
import type { PolicyName } from '../policy.ts';
import { randomIndex } from '../random.ts';
import { BaselinePolicy } from './baseline.ts';

export class PowerOfTwoPolicy extends BaselinePolicy {
  readonly name: PolicyName = 'power-of-two';

  protected choose(_tokens: ArrayLike<number>, candidates: Int32Array, count: number): number {
    const first = randomIndex(this.random, count);
    let second = randomIndex(this.random, count - 1);
    if (second >= first) second++;
    return this.blockLoad(candidates[second]) < this.blockLoad(candidates[first]) ? second : first;
  }
}
