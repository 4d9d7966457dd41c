import type { Cancellation } from './cancel.ts';

/** Waits parked until something changes (a router or instance appears, a state change, a close) or a timeout. */
export class Wakeups {
  private readonly waiters = new Set<() => void>();

  /**
   * Resolves on the next wakeAll(), after `ms`, or when `signal` is aborted (at once if it already
   * is), whichever comes first. The timer and the abort listener go with the wait.
   */
  next(ms: number, signal?: Cancellation): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        signal?.removeEventListener('abort', wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.waiters.add(wake);
      signal?.addEventListener('abort', wake, { once: true });
    });
  }

  wakeAll(): void {
    for (const wake of [...this.waiters]) wake();
  }
}
