/**
 * Cancellation for in-process hot paths. An AbortController costs several microseconds to create
 * (an EventTarget, its internal slots) and each listener a few more; a request goes through
 * several layers that only need "has it been cancelled, why, tell me when". `Cancellation` is the
 * structural subset of AbortSignal those layers use, so a real AbortSignal still fits wherever a
 * Cancellation is taken (public edges, the NATS plane, tests), and `CancelSource` is a small
 * implementation: a flag, a reason and usually one listener.
 */
import { log } from './log.ts';

/** A function, or an object whose `handleEvent` is called (as for EventTarget listeners). */
export type CancelListener = (() => void) | { handleEvent(): void };

/** What a cancellable internal API takes: an AbortSignal fits, and so does a CancelSource. */
export interface Cancellation {
  readonly aborted: boolean;
  /** Why it was cancelled (undefined before). */
  readonly reason: unknown;
  /** Called once, on cancellation (not if added after it). Adding the same listener twice is a no-op. */
  addEventListener(type: 'abort', listener: CancelListener, options?: { readonly once?: boolean }): void;
  removeEventListener(type: 'abort', listener: CancelListener): void;
}

/**
 * A cancellation and its trigger in one object (an AbortController and its signal, without the
 * EventTarget): pass it where a Cancellation is taken, call `abort()` to cancel. Listeners are
 * called in the order they were added; one that throws does not stop the others (the error is
 * logged).
 */
export class CancelSource implements Cancellation {
  aborted = false;
  reason: unknown = undefined;
  /** No listener, one, or several (most cancellations have at most one). */
  private listeners: CancelListener | CancelListener[] | null = null;

  /** This source as a Cancellation (for code written against AbortController's `signal`). */
  get signal(): Cancellation {
    return this;
  }

  /** Every listener runs once (`once` is implied: a cancellation happens once). */
  addEventListener(_type: 'abort', listener: CancelListener, _options?: { readonly once?: boolean }): void {
    if (this.aborted) return;
    const current = this.listeners;
    if (current === null) this.listeners = listener;
    else if (Array.isArray(current)) {
      if (!current.includes(listener)) current.push(listener);
    } else if (current !== listener) this.listeners = [current, listener];
  }

  removeEventListener(_type: 'abort', listener: CancelListener): void {
    const current = this.listeners;
    if (current === listener) this.listeners = null;
    else if (Array.isArray(current)) {
      const i = current.indexOf(listener);
      if (i >= 0) current.splice(i, 1);
    }
  }

  /**
   * Cancels (once; later calls do nothing). Without a reason, the reason is an AbortError
   * DOMException, as AbortController's.
   */
  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason =
      reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
    const listeners = this.listeners;
    if (listeners === null) return;
    if (!Array.isArray(listeners)) {
      this.listeners = null;
      callListener(listeners);
      return;
    }
    // A listener removed by an earlier one (during this dispatch) is not called.
    const live = listeners;
    for (const listener of [...listeners]) {
      if (!live.includes(listener)) continue;
      callListener(listener);
    }
    this.listeners = null;
  }
}

function callListener(listener: CancelListener): void {
  try {
    if (typeof listener === 'function') listener();
    else listener.handleEvent();
  } catch (error) {
    // The dispatch goes on. Unlike EventTarget (which rethrows it as an uncaught exception and so
    // ends the process), the failure is logged: a faulty cancellation hook must not take the
    // router or the frontend down.
    log.error({ err: error }, 'cancellation: an abort listener failed');
  }
}
