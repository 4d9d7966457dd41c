/**
 * Dynamo's router queue (`router_queue_threshold`): while every (worker, rank) is busy, new
 * requests wait here instead of piling onto the engines, and leave oldest first (an arrival time
 * moved earlier by a priority jump) as load drops. Whether the ranks are busy is the owner's
 * question (`isBusy`); the owner calls `drain()` when load drops (prefill done, request freed,
 * worker added) and `admitted()` once a released request has been routed, so each release sees the
 * load of the one before it.
 */
import type { Cancellation } from '../util/cancel.ts';
import { type Clock, realClock, type TimerHandle } from '../util/clock.ts';

export interface RouterQueueOptions {
  /** True when no rank may take another request now. */
  readonly isBusy: () => boolean;
  readonly clock?: Clock;
  /** While requests wait, a drain is tried this often even without a load change (Dynamo: 60 s). */
  readonly tickMs?: number;
}

/** Why a waiting request left the queue without being released. */
export class RouterQueueError extends Error {
  constructor(
    readonly code: 'ROUTER_QUEUE_CANCELLED' | 'ROUTER_QUEUE_CLOSED',
    message: string,
  ) {
    super(message);
    this.name = 'RouterQueueError';
  }
}

interface Waiter {
  readonly key: number;
  readonly seq: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  /** Still in the heap and unsettled (a cancelled waiter stays in the heap until it surfaces). */
  live: boolean;
  detach: (() => void) | null;
}

export class RouterQueue {
  private readonly isBusy: () => boolean;
  private readonly clock: Clock;
  private readonly tickMs: number;
  private readonly heap: Waiter[] = [];
  private live = 0;
  private seq = 0;
  /** A released request has not been routed yet: its load is not visible, so release no other. */
  private releasing = false;
  private tick: TimerHandle | null = null;
  private closed = false;

  constructor(options: RouterQueueOptions) {
    this.isBusy = options.isBusy;
    this.clock = options.clock ?? realClock;
    this.tickMs = options.tickMs ?? 60_000;
  }

  /** Requests waiting now. */
  get length(): number {
    return this.live;
  }

  /** A new request must wait: others already wait (no overtaking), or every rank is busy. */
  mustWait(): boolean {
    return this.live > 0 || this.releasing || this.isBusy();
  }

  /**
   * Waits for a turn. Resolves when released (the caller then routes and calls `admitted()`);
   * rejects with ROUTER_QUEUE_CANCELLED when `signal` aborts, ROUTER_QUEUE_CLOSED on close().
   * `priorityJumpMs` moves the request ahead of those that arrived up to that long before it.
   */
  wait(priorityJumpMs: number | undefined = 0, signal?: Cancellation): Promise<void> {
    if (this.closed)
      return Promise.reject(new RouterQueueError('ROUTER_QUEUE_CLOSED', 'the router queue is closed'));
    if (signal?.aborted)
      return Promise.reject(new RouterQueueError('ROUTER_QUEUE_CANCELLED', 'cancelled while queued'));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        key: this.clock.now() - Math.max(0, priorityJumpMs ?? 0),
        seq: this.seq++,
        resolve,
        reject,
        live: true,
        detach: null,
      };
      if (signal !== undefined) {
        const onAbort = () => {
          if (!waiter.live) return;
          waiter.live = false;
          this.live--;
          reject(new RouterQueueError('ROUTER_QUEUE_CANCELLED', 'cancelled while queued'));
          this.drain();
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.push(waiter);
      this.live++;
      this.armTick();
      this.drain();
    });
  }

  /** Releases the first waiting request if some rank has room and no release is being routed. */
  drain(): void {
    if (this.releasing) return;
    for (;;) {
      const top = this.heap[0];
      if (top === undefined) break;
      if (!top.live) {
        this.pop();
        continue;
      }
      if (this.isBusy()) break;
      this.pop();
      top.live = false;
      this.live--;
      top.detach?.();
      this.releasing = true;
      top.resolve();
      break;
    }
    if (this.live === 0) this.disarmTick();
  }

  /** The released request was routed (or gave up): its load is visible, the next may go. */
  admitted(): void {
    if (!this.releasing) return;
    this.releasing = false;
    this.drain();
  }

  /** Rejects every waiting request; later waits reject at once. */
  close(): void {
    this.closed = true;
    this.disarmTick();
    const waiting = this.heap.splice(0);
    for (const waiter of waiting) {
      if (!waiter.live) continue;
      waiter.live = false;
      waiter.detach?.();
      waiter.reject(new RouterQueueError('ROUTER_QUEUE_CLOSED', 'the router queue is closed'));
    }
    this.live = 0;
  }

  private armTick(): void {
    if (this.tick !== null) return;
    this.tick = this.clock.setTimer(() => {
      this.tick = null;
      this.drain();
      if (this.live > 0) this.armTick();
    }, this.tickMs);
  }

  private disarmTick(): void {
    this.tick?.cancel();
    this.tick = null;
  }

  // A binary min-heap on (key, seq): earliest effective arrival first, then arrival order.
  private push(waiter: Waiter): void {
    const heap = this.heap;
    let i = heap.push(waiter) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < heap.length && before(heap[left], heap[least])) least = left;
      if (right < heap.length && before(heap[right], heap[least])) least = right;
      if (least === i) return;
      [heap[i], heap[least]] = [heap[least], heap[i]];
      i = least;
    }
  }
}

function before(a: Waiter, b: Waiter): boolean {
  return a.key < b.key || (a.key === b.key && a.seq < b.seq);
}
