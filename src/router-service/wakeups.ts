/** Waits parked until something changes (a router or instance appears, a close) or a timeout. */
export class Wakeups {
  private readonly waiters = new Set<() => void>();

  /** Resolves on the next wakeAll(), or after `ms`, whichever comes first. */
  next(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.waiters.add(wake);
    });
  }

  wakeAll(): void {
    for (const wake of [...this.waiters]) wake();
  }
}
