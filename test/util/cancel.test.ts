import { describe, expect, it, vi } from 'vitest';
import { type Cancellation, CancelSource } from '../../src/util/cancel.ts';
import { log } from '../../src/util/log.ts';

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

  it('a throwing listener does not stop the others; its error is logged, never thrown', () => {
    const source = new CancelSource();
    const calls: string[] = [];
    const logged = vi.spyOn(log, 'error').mockImplementation(() => undefined);
    try {
      const failure = new Error('listener failed');
      source.addEventListener('abort', () => {
        throw failure;
      });
      source.addEventListener('abort', () => calls.push('after'));
      expect(() => source.abort()).not.toThrow();
      expect(calls).toEqual(['after']);
      expect(logged).toHaveBeenCalledTimes(1);
      expect(logged.mock.calls[0][0]).toEqual({ err: failure });
    } finally {
      logged.mockRestore();
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
