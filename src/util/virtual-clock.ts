/**
 * A discrete-event clock: time jumps straight to the next due timer, nothing ever sleeps. The same
 * engine code runs live on `realClock` and, on this clock, replays hours of traffic in seconds.
 *
 * Timers live in a binary min-heap ordered by (due time, insertion order), so timers due at the
 * same instant fire in the order they were set. Cancelled timers are dropped lazily when they
 * reach the top of the heap.
 */
import type { Clock, TimerHandle } from './clock.ts';

interface VirtualTimer {
  readonly at: number;
  readonly seq: number;
  fn: (() => void) | null;
}

export class VirtualClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly heap: VirtualTimer[] = [];
  private live = 0;
  private fired = 0;

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const delay = Math.max(ms, 0);
    const timer: VirtualTimer = { at: this.time + delay, seq: this.seq++, fn };
    this.push(timer);
    this.live++;
    return {
      cancel: () => {
        if (timer.fn !== null) {
          timer.fn = null;
          this.live--;
        }
      },
    };
  }

  /** Timers set and not yet fired or cancelled. */
  get pending(): number {
    return this.live;
  }

  /** Timers fired since construction. */
  get firedCount(): number {
    return this.fired;
  }

  /** Due time of the next live timer, or undefined when none is pending. */
  nextDue(): number | undefined {
    this.dropCancelled();
    return this.heap.length > 0 ? this.heap[0].at : undefined;
  }

  /**
   * Fires timers in time order until none is left (timers set while running are fired too).
   * `maxTimers` bounds a runaway loop (a component that re-arms itself forever): exceeding it throws.
   */
  runUntilIdle(maxTimers = Number.POSITIVE_INFINITY): number {
    let count = 0;
    for (;;) {
      const timer = this.popLive();
      if (timer === undefined) return count;
      if (++count > maxTimers) throw new Error(`VirtualClock: more than ${maxTimers} timers fired`);
      this.fire(timer);
    }
  }

  /** Fires every timer due at or before `time`, then sets the clock to `time` (never backwards). */
  runUntil(time: number): number {
    let count = 0;
    for (;;) {
      this.dropCancelled();
      if (this.heap.length === 0 || this.heap[0].at > time) break;
      const timer = this.popLive()!;
      count++;
      this.fire(timer);
    }
    if (time > this.time) this.time = time;
    return count;
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): number {
    return this.runUntil(this.time + Math.max(0, ms));
  }

  /**
   * Like runUntilIdle (or runUntil when `until` is given), but lets promise callbacks and I/O run
   * between timers (a macrotask turn each time), for components that hop through promises between
   * clock events. Resolves once no timer is due after such a turn.
   */
  async settle(options: { until?: number; maxTimers?: number } = {}): Promise<number> {
    const until = options.until ?? Number.POSITIVE_INFINITY;
    const maxTimers = options.maxTimers ?? Number.POSITIVE_INFINITY;
    let count = 0;
    for (;;) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.dropCancelled();
      if (this.heap.length === 0 || this.heap[0].at > until) break;
      if (++count > maxTimers) throw new Error(`VirtualClock: more than ${maxTimers} timers fired`);
      this.fire(this.pop());
    }
    if (until !== Number.POSITIVE_INFINITY && until > this.time) this.time = until;
    return count;
  }

  private fire(timer: VirtualTimer): void {
    const fn = timer.fn!;
    timer.fn = null;
    this.live--;
    this.fired++;
    if (timer.at > this.time) this.time = timer.at;
    fn();
  }

  private popLive(): VirtualTimer | undefined {
    this.dropCancelled();
    return this.heap.length > 0 ? this.pop() : undefined;
  }

  private dropCancelled(): void {
    while (this.heap.length > 0 && this.heap[0].fn === null) this.pop();
  }

  private static before(a: VirtualTimer, b: VirtualTimer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(timer: VirtualTimer): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(timer);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!VirtualClock.before(timer, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = timer;
  }

  private pop(): VirtualTimer {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop()!;
    const n = heap.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const child = r < n && VirtualClock.before(heap[r], heap[l]) ? r : l;
        if (!VirtualClock.before(heap[child], last)) break;
        heap[i] = heap[child];
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}
