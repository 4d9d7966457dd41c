/** Shortens `list` to `length` with pop(), which keeps its storage (setting `length = 0` drops it). */
export function truncate<T>(list: T[], length: number): void {
  while (list.length > length) list.pop();
}

/**
 * Calls `run` on every item of `list`, in order, then empties it (keeping its storage). An item
 * that throws does not stop the others: the first error is rethrown once all of them have run.
 */
export function runAll<T>(list: T[], run: (item: T) => void): void {
  let failure: { error: unknown } | null = null;
  for (let i = 0; i < list.length; i++) {
    try {
      run(list[i]);
    } catch (error) {
      failure ??= { error };
    }
  }
  truncate(list, 0);
  if (failure !== null) throw failure.error;
}

/**
 * Items queued to be run together in one drain (a promise reaction, an immediate): those queued
 * while a drain runs wait for the next one. Two arrays take turns, so queueing and draining
 * allocate nothing once they have grown.
 */
export class RunQueue<T> {
  private queue: T[] = [];
  /** The previous drain's queue, emptied, kept for its storage. */
  private spare: T[] = [];

  constructor(private readonly run: (item: T) => void) {}

  /** Queues `item`; true when it is the first since the last drain, i.e. the caller schedules one. */
  push(item: T): boolean {
    return this.queue.push(item) === 1;
  }

  /** Runs the items queued so far, as {@link runAll} does. */
  drain(): void {
    const due = this.queue;
    this.queue = this.spare;
    try {
      runAll(due, this.run);
    } finally {
      this.spare = due;
    }
  }
}
