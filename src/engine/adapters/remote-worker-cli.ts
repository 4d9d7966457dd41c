/**
 * `kvgate worker --engine sglang|vllm --engine-url URL`: the flags of an external engine and the
 * process around its supervised worker (registered while the engine is healthy; SIGTERM / SIGINT
 * deregister, drain and exit). `kvgate worker` adds these options and hands non-mock engines here.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { positiveInt } from '../../cli/arg-parsers.ts';
import type { DistributedRuntime } from '../../runtime/distributed.ts';
import { log } from '../../util/log.ts';
import { onShutdownSignal } from '../../util/shutdown.ts';
import { type RemoteEngineKind, remoteEngineConnector } from './connect.ts';
import { httpHealthCheck, SupervisedWorker } from './supervised-worker.ts';

export interface RemoteEngineFlags {
  engine: string;
  engineUrl?: string;
  kvEventsUrl?: string;
  kvReplayUrl?: string;
  kvTopic?: string;
  healthInterval: number;
  dpSize?: number;
  blockSize?: number;
  numGpuBlocks?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  /** Publish KV events into a JetStream stream (`kvgate worker --durable-kv-events`). */
  durableKvEvents?: boolean;
}

function httpUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('expected an http(s) URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidArgumentError('expected an http(s) URL');
  return value.replace(/\/+$/, '');
}

function tcpEndpoint(value: string): string {
  if (!/^tcp:\/\/[^:]+:\d{1,5}$/.test(value)) throw new InvalidArgumentError('expected tcp://HOST:PORT');
  return value;
}

/** The external-engine options of `kvgate worker`. */
export function addRemoteEngineOptions(cmd: Command): Command {
  return cmd
    .option(
      '--engine-url <url>',
      'sglang / vllm: the engine’s HTTP base URL, e.g. http://127.0.0.1:30000',
      httpUrl,
    )
    .option(
      '--kv-events-url <tcp://host:port>',
      'KV-event publisher of rank 0 (rank r at port + r); SGLang default: its --kv-events-config',
      tcpEndpoint,
    )
    .option(
      '--kv-replay-url <tcp://host:port>',
      'KV-event replay socket of rank 0 (rank r at port + r)',
      tcpEndpoint,
    )
    .option('--kv-topic <topic>', 'KV-event topic to subscribe to (default: all)')
    .option('--health-interval <ms>', 'sglang / vllm: engine health-check interval', positiveInt, 2000);
}

/** Why the flags cannot start an external-engine worker, or null. */
export function remoteEngineFlagProblem(flags: RemoteEngineFlags): string | null {
  if (flags.engine === 'mock')
    return flags.engineUrl === undefined ? null : '--engine-url needs --engine sglang or vllm';
  if (flags.engineUrl === undefined) return `--engine ${flags.engine} needs --engine-url`;
  return null;
}

/** Runs the supervised worker until SIGTERM / SIGINT. */
export async function runRemoteEngineWorker(options: {
  readonly flags: RemoteEngineFlags;
  readonly runtime: DistributedRuntime;
  readonly namespace: string;
  readonly modelName: string;
  readonly drainTimeoutMs: number;
  readonly metricsIntervalMs: number;
}): Promise<void> {
  const { flags, runtime } = options;
  const url = flags.engineUrl!;
  const supervisor = SupervisedWorker.start({
    runtime,
    namespace: options.namespace,
    modelName: options.modelName,
    drainTimeoutMs: options.drainTimeoutMs,
    metricsIntervalMs: options.metricsIntervalMs,
    ...(flags.durableKvEvents === true ? { durableKvEvents: true } : {}),
    healthIntervalMs: flags.healthInterval,
    healthy: httpHealthCheck(url),
    connect: remoteEngineConnector({
      engine: flags.engine as RemoteEngineKind,
      url,
      ...(flags.kvEventsUrl !== undefined ? { kvEventsUrl: flags.kvEventsUrl } : {}),
      ...(flags.kvReplayUrl !== undefined ? { kvReplayUrl: flags.kvReplayUrl } : {}),
      ...(flags.kvTopic !== undefined ? { kvTopic: flags.kvTopic } : {}),
      ...(flags.dpSize !== undefined ? { dataParallelSize: flags.dpSize } : {}),
      ...(flags.blockSize !== undefined ? { blockSize: flags.blockSize } : {}),
      ...(flags.numGpuBlocks !== undefined ? { numGpuBlocks: flags.numGpuBlocks } : {}),
      ...(flags.maxNumSeqs !== undefined ? { maxNumSeqs: flags.maxNumSeqs } : {}),
      ...(flags.maxNumBatchedTokens !== undefined ? { maxNumBatchedTokens: flags.maxNumBatchedTokens } : {}),
    }),
  });
  log.info(
    {
      instanceId: supervisor.instanceId.toString(16),
      engine: flags.engine,
      url,
      namespace: options.namespace,
    },
    'worker: waiting for the engine (registers once it answers)',
  );
  onShutdownSignal(async () => {
    log.info('worker: shutting down');
    await supervisor.stop();
    await runtime.close().catch((error: unknown) => log.warn({ err: error }, 'worker: runtime close failed'));
  });
}
