/**
 * From `kvgate worker --engine sglang|vllm --engine-url URL [...]` to the supervisor's connect
 * function: probe the engine, pick its KV-event source (flags first, then what the engine reports),
 * and build the adapter factory.
 */
import type { KvEventsSource } from './remote-engine.ts';
import { probeSglang, SglangEngineAdapter } from './sglang-adapter.ts';
import type { EngineConnection } from './supervised-worker.ts';
import { probeVllm, VllmEngineAdapter, type VllmProbeOverrides } from './vllm-adapter.ts';

export type RemoteEngineKind = 'sglang' | 'vllm';

export interface RemoteEngineSettings extends VllmProbeOverrides {
  readonly engine: RemoteEngineKind;
  readonly url: string;
  /** `tcp://host:port` of rank 0's KV-event publisher; SGLang default: its `kv_events_config`. */
  readonly kvEventsUrl?: string;
  /** `tcp://host:port` of rank 0's replay socket. */
  readonly kvReplayUrl?: string;
  readonly kvTopic?: string;
  readonly hashSeed?: bigint;
}

export function remoteEngineConnector(
  settings: RemoteEngineSettings,
): (signal: AbortSignal) => Promise<EngineConnection> {
  const flagEvents: KvEventsSource | undefined =
    settings.kvEventsUrl === undefined
      ? undefined
      : {
          endpoint: settings.kvEventsUrl,
          ...(settings.kvReplayUrl !== undefined ? { replayEndpoint: settings.kvReplayUrl } : {}),
          ...(settings.kvTopic !== undefined ? { topic: settings.kvTopic } : {}),
        };
  const extra = settings.hashSeed !== undefined ? { hashSeed: settings.hashSeed } : {};
  const runtimeConfig = { engine: settings.engine, engineUrl: settings.url };
  return async (signal) => {
    if (settings.engine === 'sglang') {
      const info = await probeSglang(settings.url, signal);
      const kvEvents = flagEvents ?? info.kvEvents;
      return {
        engine: SglangEngineAdapter.factory(settings.url, info, {
          ...extra,
          ...(kvEvents !== undefined ? { kvEvents } : {}),
        }),
        ...(info.bootstrap !== undefined ? { bootstrap: info.bootstrap } : {}),
        runtimeConfig,
      };
    }
    const info = await probeVllm(settings.url, settings, signal);
    return {
      engine: VllmEngineAdapter.factory(settings.url, info, {
        ...extra,
        ...(flagEvents !== undefined ? { kvEvents: flagEvents } : {}),
      }),
      runtimeConfig,
    };
  };
}
