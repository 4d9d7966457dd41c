/** Retries an async operation with capped exponential back-off and jitter, logging each failure. */
import { log } from '../util/log.ts';
import { errorMessage, RuntimeError } from './errors.ts';

export interface BackoffOptions {
  readonly initialMs?: number;
  readonly maxMs?: number;
  /** Stops retrying (the returned promise rejects with RUNTIME_CLOSED). */
  readonly signal?: AbortSignal;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new RuntimeError('RUNTIME_CLOSED', 'stopped'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new RuntimeError('RUNTIME_CLOSED', 'stopped'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export async function retryWithBackoff<T>(
  what: string,
  operation: () => Promise<T>,
  options: BackoffOptions = {},
): Promise<T> {
  const initial = options.initialMs ?? 100;
  const max = options.maxMs ?? 5_000;
  let delay = initial;
  for (let attempt = 1; ; attempt++) {
    if (options.signal?.aborted) throw new RuntimeError('RUNTIME_CLOSED', `${what}: stopped`);
    try {
      return await operation();
    } catch (error) {
      if (options.signal?.aborted) throw new RuntimeError('RUNTIME_CLOSED', `${what}: stopped`);
      const wait = Math.round(delay * (0.8 + 0.4 * Math.random()));
      log.warn({ what, attempt, retryInMs: wait, err: errorMessage(error) }, 'runtime: retrying');
      await sleep(wait, options.signal);
      delay = Math.min(max, delay * 2);
    }
  }
}
