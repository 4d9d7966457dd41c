import { describe, expect, it } from 'vitest';
import { type Cancellation, CancelSource } from '../../src/util/cancel.ts';

describe('CancelSource', () => {
  it('starts live, and abort() sets the flag and the reason once', () => {
    const source = new CancelSource();
    expect(source.aborted).toBe(false);
    expect(source.reason).toBeUndefined();
    const why = new Error('client went away');
    source.abort(why);
    expect(source.aborted).toBe(true);
    expect(source.reason).toBe(why);
    source.abort(new Error('later'));
    expect(source.reason).toBe(why);
  });

  it('without a reason, the reason is an AbortError DOMException (as AbortController)', () => {
    const source = new CancelSource();
    source.abort();
    expect(source.reason).toBeInstanceOf(DOMException);
    expect((source.reason as DOMException).name).toBe('AbortError');
  });

  it('calls every listener once, in order, functions and handleEvent objects alike', () => {
    const source = new CancelSource();
    const calls: string[] = [];
    source.addEventListener('abort', () => calls.push('a'));
    source.addEventListener('abort', { handleEvent: () => calls.push('b') });
    source.addEventListener('abort', () => calls.push('c'), { once: true });
    source.abort();
    source.abort();
    expect(calls).toEqual(['a', 'b', 'c']);
  });

  it('ignores a listener added twice, and one added after the abort', () => {
    const source = new CancelSource();
    let calls = 0;
    const listener = () => calls++;
    source.addEventListener('abort', listener);
    source.addEventListener('abort', listener);
    source.abort();
    source.addEventListener('abort', listener);
    expect(calls).toBe(1);
  });

  it('a removed listener is not called, also one removed by an earlier listener during the abort', () => {
    const source = new CancelSource();
    const calls: string[] = [];
    const removed = () => calls.push('removed');
    const late = () => calls.push('late');
    source.addEventListener('abort', removed);
    source.removeEventListener('abort', removed);
    source.addEventListener('abort', () => {
      calls.push('first');
      source.removeEventListener('abort', late);
    });
    source.addEventListener('abort', late);
    source.addEventListener('abort', () => calls.push('last'));
    source.abort();
    expect(calls).toEqual(['first', 'last']);
  });

  it('removing the only listener leaves nothing to call', () => {
    const source = new CancelSource();
    let calls = 0;
    const listener = { handleEvent: () => calls++ };
    source.addEventListener('abort', listener);
    source.removeEventListener('abort', listener);
    source.abort();
    expect(calls).toBe(0);
  });

  it('a throwing listener does not stop the others; its error surfaces as uncaught', async () => {
    const source = new CancelSource();
    const calls: string[] = [];
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    try {
      source.addEventListener('abort', () => {
        throw new Error('listener failed');
      });
      source.addEventListener('abort', () => calls.push('after'));
      source.abort();
      expect(calls).toEqual(['after']);
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(uncaught).toEqual([new Error('listener failed')]);
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const listener of listeners) process.on('uncaughtException', listener);
    }
  });

  it('an AbortSignal and a CancelSource both fit where a Cancellation is taken', () => {
    const controller = new AbortController();
    const source = new CancelSource();
    const seen: string[] = [];
    const watch = (name: string, cancellation: Cancellation) =>
      cancellation.addEventListener('abort', () => seen.push(`${name}:${String(cancellation.reason)}`));
    watch('signal', controller.signal);
    watch('source', source.signal);
    controller.abort('x');
    source.abort('y');
    expect(seen).toEqual(['signal:x', 'source:y']);
  });
});
