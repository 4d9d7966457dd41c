/** Uniformly random (worker, rank). */
import type { PolicyName } from '../policy.ts';
import { randomIndex } from '../random.ts';
import { BaselinePolicy } from './baseline.ts';

export class RandomPolicy extends BaselinePolicy {
  readonly name: PolicyName = 'random';

  protected choose(_tokens: ArrayLike<number>, _candidates: Int32Array, count: number): number {
    return randomIndex(this.random, count);
  }
}
