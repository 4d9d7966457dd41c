/**
 * At speed-up 0 every rank iteration is a zero-delay timer of the wall clock, i.e. one
 * setImmediate (an Immediate object, a handle, a pass of Node's immediate queue) per rank per
 * step. The wall clock's zero-delay timers of all engines in the process instead share one
 * setImmediate per event-loop turn: the timers set before it runs, run in it, in the order they
 * were set, in the turn their own immediates would have run in (those set while it runs wait for
 * the next turn, as immediates do). Other clocks are used as they are: the order of a fake clock's
 * same-time timers is part of what tests pin down.
 */
import { type Clock, realClock, type TimerHandle } from '../util/clock.ts';
import { RunQueue } from '../util/run-all.ts';

class BatchedTimer implements TimerHandle {
  cancelled = false;

  constructor(readonly fn: () => void) {}

  cancel(): void {
    this.cancelled = true;
  }
}

function runTimer(timer: BatchedTimer): void {
  if (!timer.cancelled) timer.fn();
}

class ZeroDelayBatch implements Clock {
  /** The others still run when one throws; the first error surfaces as its own immediate's would have. */
  private readonly due = new RunQueue<BatchedTimer>(runTimer);

  constructor(private readonly clock: Clock) {}

  now(): number {
    return this.clock.now();
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    if (ms > 0) return this.clock.setTimer(fn, ms);
    const timer = new BatchedTimer(fn);
    if (this.due.push(timer)) this.clock.setTimer(this.flush, 0);
    return timer;
  }

  private readonly flush = (): void => {
    this.due.drain();
  };
}

let wallClockBatch: ZeroDelayBatch | null = null;

/** The clock to schedule engine steps on: the wall clock with batched zero delays, any other as it is. */
export function withBatchedZeroDelays(clock: Clock): Clock {
  if (clock !== realClock) return clock;
  wallClockBatch ??= new ZeroDelayBatch(realClock);
  return wallClockBatch;
}
