/**
 * A single-consumer push/pull queue: producers push values (or end / fail it), the consumer awaits
 * `next()`. Values pushed before the failure are delivered first; `failNow` skips them.
 */
export class AsyncQueue<T> {
  private items: T[] = [];
  private head = 0;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  private done = false;
  private error: unknown;
  private hasError = false;

  get closed(): boolean {
    return this.done || this.hasError;
  }

  push(value: T): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.resolve({ value, done: false });
    } else this.items.push(value);
  }

  end(): void {
    if (this.closed) return;
    this.done = true;
    this.wake();
  }

  fail(error: unknown): void {
    if (this.closed) return;
    this.hasError = true;
    this.error = error;
    this.wake();
  }

  /** Fails and drops anything still queued. */
  failNow(error: unknown): void {
    this.items = [];
    this.head = 0;
    this.fail(error);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.items.length) {
      const value = this.items[this.head++];
      if (this.head === this.items.length) {
        this.items = [];
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.hasError) return Promise.reject(this.error);
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    if (this.hasError) w.reject(this.error);
    else w.resolve({ value: undefined, done: true });
  }
}
