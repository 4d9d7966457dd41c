import { DataParallelEngine } from '../../src/engine/data-parallel-engine.ts';
import type { EngineOptions } from '../../src/engine/options.ts';
import type { RequestResult, RequestSink } from '../../src/engine/sequence.ts';
import type { KvCacheEvent } from '../../src/kv/events.ts';
import type { BootstrapInfo, GenerateChunk } from '../../src/protocol/generate.ts';
import { VirtualClock } from '../../src/util/virtual-clock.ts';

export interface Harness {
  clock: VirtualClock;
  engine: DataParallelEngine;
  events: KvCacheEvent[];
}

export function harness(options: Partial<EngineOptions> = {}): Harness {
  const clock = new VirtualClock();
  const engine = new DataParallelEngine({ clock, ...options });
  const events: KvCacheEvent[] = [];
  engine.onKvEvent((event) => events.push(event));
  return { clock, engine, events };
}

/** Tokens [start, start + length). */
export function range(start: number, length: number): number[] {
  return Array.from({ length }, (_, i) => start + i);
}

export interface Collected extends RequestSink {
  tokens: number[];
  started?: { dpRank: number; bootstrap: BootstrapInfo | undefined };
  result?: RequestResult;
  firstTokenAt: number;
}

export function collector(clock: VirtualClock): Collected {
  const sink: Collected = {
    tokens: [],
    firstTokenAt: Number.NaN,
    onStart(dpRank, bootstrap) {
      sink.started = { dpRank, bootstrap };
    },
    onToken(token) {
      if (sink.tokens.length === 0) sink.firstTokenAt = clock.now();
      sink.tokens.push(token);
    },
    onFinish(result) {
      sink.result = result;
    },
  };
  return sink;
}

export async function drain(stream: AsyncIterable<GenerateChunk>): Promise<GenerateChunk[]> {
  const chunks: GenerateChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

export function storedEvents(events: readonly KvCacheEvent[], dpRank?: number) {
  return events.filter(
    (e): e is KvCacheEvent & { data: { kind: 'stored' } } =>
      e.data.kind === 'stored' && (dpRank === undefined || e.dpRank === dpRank),
  ) as (KvCacheEvent & { data: Extract<KvCacheEvent['data'], { kind: 'stored' }> })[];
}
