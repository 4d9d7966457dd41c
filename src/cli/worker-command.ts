/**
 * `kvgate worker`: one engine worker joining a distributed deployment (NATS + etcd): the mock
 * engine in-process, or an external SGLang / vLLM server (`--engine sglang|vllm --engine-url`, run
 * by src/engine/adapters/remote-worker-cli.ts). It serves
 * generate / kv_indexer_query / kv_transfer, publishes KV events and load, registers its model
 * card under a lease, and on SIGTERM or SIGINT deregisters, drains and exits. In-process workers
 * are started by `kvgate serve` instead.
 */
import { hostname } from 'node:os';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  addRemoteEngineOptions,
  type RemoteEngineFlags,
  remoteEngineFlagProblem,
  runRemoteEngineWorker,
} from '../engine/adapters/remote-worker-cli.ts';
import type { WorkerRole } from '../protocol/generate.ts';
import { connectDistributedRuntime, type DistributedRuntime } from '../runtime/distributed.ts';
import { log } from '../util/log.ts';
import { onShutdownSignal } from '../util/shutdown.ts';
import { MockEngineAdapter } from '../worker/engine-adapter.ts';
import { Worker } from '../worker/worker.ts';
import { modelName, nonNegativeInt, nonNegativeNumber, port, positiveInt } from './arg-parsers.ts';
import { addRuntimeOptions, runtimeSettingsFromOptions } from './runtime-options.ts';
import { CliUsageError, exitTwoOnUsageError, startOrExit, usageGuard } from './usage.ts';

/** A port other processes connect to (0, "any free port", cannot be advertised). */
function advertisedPort(value: string): number {
  const n = port(value);
  if (n === 0) throw new InvalidArgumentError('expected a port in [1, 65535]');
  return n;
}

interface WorkerFlags extends RemoteEngineFlags {
  engine: 'mock' | 'sglang' | 'vllm';
  model: string;
  role: WorkerRole;
  dpSize?: number;
  blockSize?: number;
  numGpuBlocks?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  speedupRatio?: number;
  seed?: number;
  prefixCaching: boolean;
  durableKvEvents?: boolean;
  bootstrapHost?: string;
  bootstrapPort: number;
  drainTimeout: number;
  metricsInterval: number;
}

export function registerWorkerCommand(program: Command): void {
  const cmd = program
    .command('worker')
    .description('run one engine worker against NATS + etcd (in-process workers: kvgate serve)')
    .addOption(
      new Option(
        '--engine <kind>',
        'engine behind the worker (sglang / vllm: an external server, see --engine-url)',
      )
        .choices(['mock', 'sglang', 'vllm'])
        .default('mock'),
    )
    .requiredOption('--model <name>', 'model name served (goes in the model card)', modelName)
    .addOption(
      new Option('--role <role>', 'aggregated, prefill or decode')
        .choices(['aggregated', 'prefill', 'decode'])
        .default('aggregated'),
    )
    .option(
      '--dp-size <n>',
      'data-parallel ranks (mock default 1; sglang / vllm: from the engine)',
      positiveInt,
    )
    .option('--block-size <tokens>', 'tokens per KV block (default 64)', positiveInt)
    .option('--num-gpu-blocks <n>', 'KV blocks per rank (default 16384)', positiveInt)
    .option('--max-num-seqs <n>', 'running requests per rank (default 256)', positiveInt)
    .option('--max-num-batched-tokens <n>', 'tokens per iteration (default 8192)', positiveInt)
    .option(
      '--speedup-ratio <x>',
      'simulated time runs x times faster; 0 = no delay (default 1)',
      nonNegativeNumber,
    )
    .option('--seed <n>', 'seed of the output tokens and room ids (default 0)', nonNegativeInt)
    .option('--no-prefix-caching', 'disable prefix caching (and KV events)')
    .option(
      '--durable-kv-events',
      'publish KV events into a JetStream stream (routers with --router-durable-kv-events replay it)',
    )
    .option(
      '--bootstrap-host <host>',
      'prefill role: host advertised to decode workers (default this host name)',
    )
    .option(
      '--bootstrap-port <port>',
      'prefill role: port advertised to decode workers',
      advertisedPort,
      8998,
    )
    .option(
      '--drain-timeout <seconds>',
      'on SIGTERM, wait this long for in-flight requests',
      nonNegativeNumber,
      30,
    )
    .option('--metrics-interval <ms>', 'publish load at least this often', positiveInt, 1000);
  addRemoteEngineOptions(cmd);
  addRuntimeOptions(cmd);
  exitTwoOnUsageError(cmd);
  cmd.action(
    usageGuard((flags: WorkerFlags, command: Command) =>
      startOrExit(
        () => runWorker(flags, command.opts()),
        '',
        (error) => log.error({ err: error }, 'worker: failed to start'),
      ),
    ),
  );
}

async function runWorker(flags: WorkerFlags, opts: Record<string, unknown>): Promise<void> {
  const settings = runtimeSettingsFromOptions(opts);
  if (settings.distributed === undefined)
    throw new CliUsageError(
      'kvgate worker joins a distributed runtime: give --nats URL and --etcd URL (or KVGATE_NATS and KVGATE_ETCD). ' +
        'In-process workers are created by `kvgate serve`.',
    );
  const problem = remoteEngineFlagProblem(flags);
  if (problem !== null) throw new CliUsageError(problem);
  if (flags.engine !== 'mock') {
    await runRemoteEngineWorker({
      flags,
      runtime: await connectDistributedRuntime(settings.distributed),
      namespace: settings.namespace,
      modelName: flags.model,
      drainTimeoutMs: flags.drainTimeout * 1000,
      metricsIntervalMs: flags.metricsInterval,
    });
    return;
  }
  const bootstrapHost = flags.bootstrapHost ?? hostname();
  const engineOptions = {
    mode: flags.role,
    dataParallelSize: flags.dpSize ?? 1,
    enablePrefixCaching: flags.prefixCaching,
    bootstrapHost,
    bootstrapPort: flags.bootstrapPort,
    ...(flags.blockSize !== undefined ? { blockSize: flags.blockSize } : {}),
    ...(flags.numGpuBlocks !== undefined ? { numGpuBlocks: flags.numGpuBlocks } : {}),
    ...(flags.maxNumSeqs !== undefined ? { maxNumSeqs: flags.maxNumSeqs } : {}),
    ...(flags.maxNumBatchedTokens !== undefined ? { maxNumBatchedTokens: flags.maxNumBatchedTokens } : {}),
    ...(flags.speedupRatio !== undefined ? { speedupRatio: flags.speedupRatio } : {}),
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
  };
  // Validate the engine options before connecting anywhere (a bad flag exits with code 2).
  new MockEngineAdapter(engineOptions).close();

  const runtime: DistributedRuntime = await connectDistributedRuntime(settings.distributed);
  const worker = await Worker.start({
    runtime,
    namespace: settings.namespace,
    modelName: flags.model,
    engine: MockEngineAdapter.factory(engineOptions),
    ...(flags.role === 'prefill' ? { bootstrap: { host: bootstrapHost, port: flags.bootstrapPort } } : {}),
    drainTimeoutMs: flags.drainTimeout * 1000,
    metricsIntervalMs: flags.metricsInterval,
    runtimeConfig: { engine: flags.engine },
    durableKvEvents: flags.durableKvEvents === true,
  });
  log.info(
    {
      instanceId: worker.instanceId.toString(16),
      namespace: settings.namespace,
      component: worker.component,
      model: flags.model,
      role: flags.role,
      dpSize: engineOptions.dataParallelSize,
    },
    'worker: serving (registration follows)',
  );

  onShutdownSignal(async () => {
    log.info('worker: shutting down');
    await worker.shutdown();
    await runtime.close().catch((error: unknown) => log.warn({ err: error }, 'worker: runtime close failed'));
  });
}
