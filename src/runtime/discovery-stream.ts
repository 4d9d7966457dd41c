/** Discovery watches as an async iterable: current instances first, then changes, until aborted. */
import { AsyncQueue } from './async-queue.ts';
import type { Discovery, DiscoveryEvent, EndpointPrefix } from './types.ts';

export async function* watchDiscovery(
  discovery: Discovery,
  prefix: EndpointPrefix,
  signal?: AbortSignal,
): AsyncGenerator<DiscoveryEvent> {
  if (signal?.aborted) return;
  const queue = new AsyncQueue<DiscoveryEvent>();
  const watch = await discovery.watch(prefix, (event) => queue.push(event));
  const stop = () => queue.end();
  signal?.addEventListener('abort', stop, { once: true });
  try {
    for (;;) {
      const next = await queue.next();
      if (next.done) return;
      yield next.value;
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    watch.close();
  }
}
