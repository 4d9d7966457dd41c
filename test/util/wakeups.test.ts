import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CancelSource } from '../../src/util/cancel.ts';
import { Wakeups } from '../../src/util/wakeups.ts';

describe('Wakeups', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('wakeAll releases every parked wait at once and clears their timers', async () => {
    const wakeups = new Wakeups();
    let woken = 0;
    for (const wait of [wakeups.next(60_000), wakeups.next(60_000)]) void wait.then(() => woken++);
    await vi.advanceTimersByTimeAsync(1000);
    expect(woken).toBe(0);
    wakeups.wakeAll();
    await vi.advanceTimersByTimeAsync(0);
    expect(woken).toBe(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a wait nobody wakes ends at its timeout; a wait parked later needs a later wake', async () => {
    const wakeups = new Wakeups();
    let first = false;
    void wakeups.next(1000).then(() => {
      first = true;
    });
    await vi.advanceTimersByTimeAsync(999);
    expect(first).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(first).toBe(true);
    wakeups.wakeAll();
    let second = false;
    void wakeups.next(1000).then(() => {
      second = true;
    });
    await vi.advanceTimersByTimeAsync(10);
    expect(second).toBe(false);
    wakeups.wakeAll();
    await vi.advanceTimersByTimeAsync(0);
    expect(second).toBe(true);
  });

  it('an abort ends the wait at once and leaves no timer or listener behind', async () => {
    for (const source of [new CancelSource(), new AbortController()]) {
      const wakeups = new Wakeups();
      let woken = false;
      void wakeups.next(60_000, source.signal).then(() => {
        woken = true;
      });
      await vi.advanceTimersByTimeAsync(10);
      expect(woken).toBe(false);
      expect(vi.getTimerCount()).toBe(1);
      source.abort();
      await vi.advanceTimersByTimeAsync(0);
      expect(woken).toBe(true);
      expect(vi.getTimerCount()).toBe(0);
    }
  });

  it('an already aborted signal resolves without parking; a wait woken otherwise drops its abort listener', async () => {
    const aborted = new CancelSource();
    aborted.abort();
    const wakeups = new Wakeups();
    let woken = false;
    void wakeups.next(60_000, aborted).then(() => {
      woken = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(woken).toBe(true);
    expect(vi.getTimerCount()).toBe(0);

    const live = new CancelSource();
    const removed: unknown[] = [];
    const remove = live.removeEventListener.bind(live);
    live.removeEventListener = (type, listener) => {
      removed.push(listener);
      remove(type, listener);
    };
    const wait = wakeups.next(60_000, live);
    wakeups.wakeAll();
    await wait;
    expect(removed).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});
