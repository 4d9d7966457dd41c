/**
 * Time source, injectable everywhere that reads time or waits, so tests and the trace replay can
 * run on a fake or virtual clock. Times are milliseconds.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  now(): number;
  /** Calls fn after `ms` of this clock's time. */
  setTimer(fn: () => void, ms: number): TimerHandle;
}

/**
 * Wall-clock time. A zero (or negative) wait runs on the next event-loop turn (setImmediate)
 * instead of after setTimeout's 1 ms minimum: at speed-up 0 ("no delay") an engine iteration would
 * otherwise cost two forced 1 ms sleeps, capping a rank at ~500 iterations per second. Positive
 * waits are unref'd timeouts; a zero wait is not unref'd (an unref'd immediate does not stop the
 * loop from blocking in its I/O poll) but it keeps the process alive for one turn at most.
 */
export const realClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimer(fn, ms) {
    if (!(ms > 0)) return new ImmediateHandle(setImmediate(fn));
    const handle = setTimeout(fn, ms);
    handle.unref?.();
    return new TimeoutHandle(handle);
  },
};

// Handles are class instances rather than `{ cancel: () => ... }` literals: the engine makes one
// per iteration, and under tsx every named closure is wrapped in a name-setting call (~0.75 µs).
class ImmediateHandle implements TimerHandle {
  constructor(private readonly immediate: NodeJS.Immediate) {}
  cancel(): void {
    clearImmediate(this.immediate);
  }
}

class TimeoutHandle implements TimerHandle {
  constructor(private readonly timeout: NodeJS.Timeout) {}
  cancel(): void {
    clearTimeout(this.timeout);
  }
}

/** A clock that only moves when told to; due timers fire in time order on advance(). */
export class ManualClock implements Clock {
  private time: number;
  private seq = 0;
  private timers: { at: number; seq: number; fn: () => void; live: boolean }[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.time + Math.max(0, ms), seq: this.seq++, fn, live: true };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.live = false;
      },
    };
  }

  advance(ms: number): void {
    const target = this.time + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => t.live);
      let next: (typeof this.timers)[number] | undefined;
      for (const t of this.timers)
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      if (!next) break;
      this.time = next.at;
      next.live = false;
      next.fn();
    }
    this.time = target;
  }
}
