import { describe, expect, it } from 'vitest';
import { withBatchedZeroDelays } from '../../src/engine/zero-delay-timers.ts';
import { ManualClock, realClock } from '../../src/util/clock.ts';

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('withBatchedZeroDelays', () => {
  it('leaves any clock but the wall clock as it is, and shares one batch for the wall clock', () => {
    const manual = new ManualClock();
    expect(withBatchedZeroDelays(manual)).toBe(manual);
    expect(withBatchedZeroDelays(realClock)).not.toBe(realClock);
    expect(withBatchedZeroDelays(realClock)).toBe(withBatchedZeroDelays(realClock));
  });

  it('runs the zero-delay timers of a turn together, in order, in one immediate', async () => {
    const clock = withBatchedZeroDelays(realClock);
    const order: string[] = [];
    clock.setTimer(() => order.push('a'), 0);
    setImmediate(() => order.push('immediate'));
    clock.setTimer(() => order.push('b'), -1);
    expect(order).toEqual([]);
    await nextTurn();
    expect(order).toEqual(['a', 'b', 'immediate']);
  });

  it('a cancelled timer does not run; one set while the batch runs waits for the next turn', async () => {
    const clock = withBatchedZeroDelays(realClock);
    const order: string[] = [];
    const cancelled = clock.setTimer(() => order.push('cancelled'), 0);
    clock.setTimer(() => {
      order.push('first');
      clock.setTimer(() => order.push('later'), 0);
    }, 0);
    cancelled.cancel();
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual(['first']);
    await nextTurn();
    expect(order).toEqual(['first', 'later']);
  });

  it('a positive delay is the wall clock’s own timer', async () => {
    const clock = withBatchedZeroDelays(realClock);
    let fired = false;
    const started = performance.now();
    await new Promise<void>((resolve) =>
      clock.setTimer(() => {
        fired = true;
        resolve();
      }, 15),
    );
    expect(fired).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(14);
  });

  it('a throwing timer does not stop the others, and its error is uncaught', async () => {
    const clock = withBatchedZeroDelays(realClock);
    const order: string[] = [];
    const uncaught: unknown[] = [];
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      clock.setTimer(() => {
        throw new Error('step failed');
      }, 0);
      clock.setTimer(() => order.push('after'), 0);
      await nextTurn();
      await nextTurn();
      expect(order).toEqual(['after']);
      expect(uncaught).toEqual([new Error('step failed')]);
      // The batch keeps working afterwards.
      clock.setTimer(() => order.push('next'), 0);
      await nextTurn();
      expect(order).toEqual(['after', 'next']);
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const listener of listeners) process.on('uncaughtException', listener);
    }
  });
});
