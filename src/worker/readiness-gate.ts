import type { Cancellation } from '../util/cancel.ts';

/** A one-shot gate: waiters park until it opens; a waiter's own signal releases it with an error. */
export class ReadinessGate {
  private opened = false;
  private readonly waiters = new Set<() => void>();

  get isOpen(): boolean {
    return this.opened;
  }

  open(): void {
    if (this.opened) return;
    this.opened = true;
    for (const wake of [...this.waiters]) wake();
    this.waiters.clear();
  }

  /** Resolves once open; rejects with the signal's reason when it aborts first. */
  wait(signal?: Cancellation): Promise<void> {
    if (this.opened) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.waiters.delete(wake);
        reject(signal?.reason);
      };
      const wake = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
