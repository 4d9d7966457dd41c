import { describe, expect, it } from 'vitest';
import { priorityJumpMs } from '../../src/cluster/model-router.ts';
import { RouterQueue, RouterQueueError } from '../../src/routing/router-queue.ts';
import { ManualClock } from '../../src/util/clock.ts';

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function queueWith(busy: { value: boolean }, clock = new ManualClock()) {
  return new RouterQueue({ isBusy: () => busy.value, clock, tickMs: 60_000 });
}

describe('RouterQueue', () => {
  it('lets a request through at once while some rank has room and nobody waits', async () => {
    const busy = { value: false };
    const queue = queueWith(busy);
    expect(queue.mustWait()).toBe(false);
    busy.value = true;
    expect(queue.mustWait()).toBe(true);
  });

  it('releases waiting requests one at a time, oldest first, each after the previous was admitted', async () => {
    const busy = { value: true };
    const clock = new ManualClock();
    const queue = queueWith(busy, clock);
    const released: string[] = [];
    for (const name of ['a', 'b', 'c']) {
      void queue.wait().then(() => released.push(name));
      clock.advance(1);
    }
    await settle();
    expect(queue.length).toBe(3);
    expect(released).toEqual([]);
    busy.value = false;
    queue.drain();
    queue.drain(); // a second load drop before `a` is routed releases nobody else
    await settle();
    expect(released).toEqual(['a']);
    expect(queue.mustWait()).toBe(true); // b and c still wait: no overtaking
    queue.admitted();
    await settle();
    expect(released).toEqual(['a', 'b']);
    busy.value = true; // b's load made every rank busy again
    queue.admitted();
    await settle();
    expect(released).toEqual(['a', 'b']);
    busy.value = false;
    queue.drain();
    await settle();
    expect(released).toEqual(['a', 'b', 'c']);
    queue.admitted();
    expect(queue.length).toBe(0);
    expect(queue.mustWait()).toBe(false);
  });

  it('a priority jump moves a request ahead of those that arrived up to that long before it', async () => {
    const busy = { value: true };
    const clock = new ManualClock(1_000);
    const queue = queueWith(busy, clock);
    const released: string[] = [];
    void queue.wait().then(() => released.push('old'));
    clock.advance(100);
    void queue.wait().then(() => released.push('older-than-jump'));
    clock.advance(100);
    void queue.wait(150).then(() => released.push('urgent'));
    busy.value = false;
    for (let i = 0; i < 3; i++) {
      queue.drain();
      await settle();
      queue.admitted();
    }
    await settle();
    expect(released).toEqual(['old', 'urgent', 'older-than-jump']);
  });

  it('an aborted wait rejects with a coded error and leaves the queue', async () => {
    const busy = { value: true };
    const queue = queueWith(busy);
    const controller = new AbortController();
    const waiting = queue.wait(0, controller.signal);
    const other = queue.wait();
    expect(queue.length).toBe(2);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'ROUTER_QUEUE_CANCELLED' });
    expect(queue.length).toBe(1);
    busy.value = false;
    queue.drain();
    await expect(other).resolves.toBeUndefined();
    const aborted = new AbortController();
    aborted.abort();
    await expect(queue.wait(0, aborted.signal)).rejects.toBeInstanceOf(RouterQueueError);
  });

  it('tries again on its tick when no load change is reported', async () => {
    const busy = { value: true };
    const clock = new ManualClock();
    const queue = queueWith(busy, clock);
    let released = false;
    void queue.wait().then(() => {
      released = true;
    });
    busy.value = false;
    clock.advance(59_999);
    await settle();
    expect(released).toBe(false);
    clock.advance(1);
    await settle();
    expect(released).toBe(true);
  });

  it('close rejects every waiting request and every later one', async () => {
    const queue = queueWith({ value: true });
    const waiting = [queue.wait(), queue.wait()];
    queue.close();
    for (const w of waiting) await expect(w).rejects.toMatchObject({ code: 'ROUTER_QUEUE_CLOSED' });
    expect(queue.length).toBe(0);
    await expect(queue.wait()).rejects.toMatchObject({ code: 'ROUTER_QUEUE_CLOSED' });
  });

  it('takes its priority jump from nvext.agent_hints.latency_sensitivity (seconds); none for 0, negative or absent', () => {
    expect(priorityJumpMs(2.5)).toBe(2_500);
    expect(priorityJumpMs(0)).toBeUndefined();
    expect(priorityJumpMs(-1)).toBeUndefined();
    expect(priorityJumpMs(undefined)).toBeUndefined();
    expect(priorityJumpMs(Number.MAX_VALUE)).toBe(Number.MAX_SAFE_INTEGER);
  });
});
