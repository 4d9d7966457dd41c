import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Wakeups } from '../../src/router-service/wakeups.ts';

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
});
