/**
 * `kvgate serve`: the embedded deployment. Frontend, router and N mock-engine workers with
 * data-parallel ranks run in one process on the local runtime; prints the URL once every worker
 * is routable. SIGINT / SIGTERM stop it cleanly (in-flight requests finish first).
 */
import type { Command } from 'commander';
import { startDisaggEmbeddedServer } from '../cluster/disagg/embedded.ts';
import { EngineError } from '../engine/errors.ts';
import { errorMessage } from '../runtime/errors.ts';
import { log } from '../util/log.ts';
import { onShutdownSignal } from '../util/shutdown.ts';
import { type EmbeddedServer, startEmbeddedServer } from './embedded-server.ts';
import {
  addDisaggOptions,
  addFrontendOptions,
  type DisaggFlags,
  envOption,
  exitTwoOnUsageError,
  type FrontendFlags,
  frontendOptionsFrom,
  modelName,
  nonNegativeInt,
  nonNegativeNumber,
  positiveInt,
  routerConfigFrom,
  UsageError,
  usageGuard,
} from './frontend-flags.ts';

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  model: 'kvgate-mock',
  workers: 2,
  dpSize: 4,
  blockSize: 64,
  numGpuBlocks: 16_384,
  maxNumSeqs: 256,
  maxNumBatchedTokens: 8_192,
  speedupRatio: 10,
} as const;

interface ServeFlags extends FrontendFlags, DisaggFlags {
  model: string;
  workers: number;
  dpSize: number;
  blockSize: number;
  numGpuBlocks: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  speedupRatio: number;
  prefillWorkers: number;
  decodeWorkers?: number;
}

export function registerServeCommand(program: Command): void {
  const cmd = program
    .command('serve')
    .description('frontend + router + mock-engine workers in one process (embedded; local runtime)')
    .addOption(
      envOption('--model <name>', 'model name the workers serve', 'KVGATE_MODEL')
        .argParser(modelName)
        .default(SERVE_DEFAULTS.model),
    )
    .addOption(
      envOption('--workers <n>', 'mock-engine workers', 'KVGATE_WORKERS')
        .argParser(positiveInt)
        .default(SERVE_DEFAULTS.workers),
    )
    .addOption(
      envOption('--dp-size <n>', 'data-parallel ranks per worker', 'KVGATE_DP_SIZE')
        .argParser(positiveInt)
        .default(SERVE_DEFAULTS.dpSize),
    )
    .addOption(
      envOption('--block-size <tokens>', 'tokens per KV block', 'KVGATE_BLOCK_SIZE')
        .argParser(positiveInt)
        .default(SERVE_DEFAULTS.blockSize),
    )
    .addOption(
      envOption('--num-gpu-blocks <n>', 'KV blocks per rank', 'KVGATE_NUM_GPU_BLOCKS')
        .argParser(positiveInt)
        .default(SERVE_DEFAULTS.numGpuBlocks),
    )
    .addOption(
      envOption('--max-num-seqs <n>', 'running sequences per rank', 'KVGATE_MAX_NUM_SEQS')
        .argParser(positiveInt)
        .default(SERVE_DEFAULTS.maxNumSeqs),
    )
    .addOption(
      envOption(
        '--max-num-batched-tokens <n>',
        'tokens per engine step per rank',
        'KVGATE_MAX_NUM_BATCHED_TOKENS',
      )
        .argParser(positiveInt)
        .default(SERVE_DEFAULTS.maxNumBatchedTokens),
    )
    .addOption(
      envOption(
        '--speedup-ratio <x>',
        'simulated engine time runs this many times faster than real time (0 = no delay)',
        'KVGATE_SPEEDUP_RATIO',
      )
        .argParser(nonNegativeNumber)
        .default(SERVE_DEFAULTS.speedupRatio),
    )
    .addOption(
      envOption(
        '--prefill-workers <n>',
        'disaggregated: prefill workers in front of the decode workers (0 = aggregated)',
        'KVGATE_PREFILL_WORKERS',
      )
        .argParser(nonNegativeInt)
        .default(0),
    )
    .addOption(
      envOption(
        '--decode-workers <n>',
        'disaggregated: decode workers (default --workers)',
        'KVGATE_DECODE_WORKERS',
      ).argParser(positiveInt),
    );
  addDisaggOptions(cmd);
  addFrontendOptions(cmd, { host: SERVE_DEFAULTS.host });
  exitTwoOnUsageError(cmd);
  cmd.action(usageGuard(serveAction));
}

async function serveAction(flags: ServeFlags): Promise<void> {
  const { config, blockSizeGiven } = routerConfigFrom(flags);
  if (blockSizeGiven && config.blockSize !== flags.blockSize)
    throw new UsageError(
      `--router-block-size ${config.blockSize} differs from the workers' --block-size ${flags.blockSize}; the router must use the workers' block size`,
    );
  if (flags.maxNumBatchedTokens < flags.blockSize)
    throw new UsageError(
      `--max-num-batched-tokens ${flags.maxNumBatchedTokens} is smaller than --block-size ${flags.blockSize}`,
    );
  const common = await frontendOptionsFrom(flags, config);
  const engine = {
    dataParallelSize: flags.dpSize,
    blockSize: flags.blockSize,
    numGpuBlocks: flags.numGpuBlocks,
    maxNumSeqs: flags.maxNumSeqs,
    maxNumBatchedTokens: flags.maxNumBatchedTokens,
    speedupRatio: flags.speedupRatio,
  };
  if (flags.prefillWorkers > 0) {
    const decodeWorkers = flags.decodeWorkers ?? flags.workers;
    let disagg: Awaited<ReturnType<typeof startDisaggEmbeddedServer>>;
    try {
      disagg = await startDisaggEmbeddedServer({
        ...common,
        model: flags.model,
        prefillWorkers: flags.prefillWorkers,
        decodeWorkers,
        // Decode workers that may also prefill (conditional disaggregation) run as aggregated engines.
        decodeRole: flags.disaggMinUncachedTokens > 0 ? 'aggregated' : 'decode',
        minUncachedTokens: flags.disaggMinUncachedTokens,
        enforceDisagg: flags.enforceDisagg === true,
        engine,
        host: flags.host,
        port: flags.port,
      });
    } catch (error) {
      if (error instanceof EngineError && error.code === 'ENGINE_INVALID_OPTIONS')
        throw new UsageError(error.message);
      process.stderr.write(`error: kvgate serve could not start: ${errorMessage(error)}\n`);
      process.exit(1);
    }
    onShutdownSignal(() => disagg.close());
    process.stdout.write(
      `kvgate listening on ${disagg.url} (model ${flags.model}, ${flags.prefillWorkers} prefill + ${decodeWorkers} decode workers x ${flags.dpSize} ranks, router ${flags.routerMode})\n`,
    );
    return;
  }
  let server: EmbeddedServer;
  try {
    server = await startEmbeddedServer({
      ...common,
      model: flags.model,
      workers: flags.workers,
      engine,
      host: flags.host,
      port: flags.port,
    });
  } catch (error) {
    if (error instanceof EngineError && error.code === 'ENGINE_INVALID_OPTIONS')
      throw new UsageError(error.message);
    process.stderr.write(`error: kvgate serve could not start: ${errorMessage(error)}\n`);
    process.exit(1);
  }
  onShutdownSignal(() => server.close());
  log.info(
    {
      model: flags.model,
      workers: server.workers.map((w) => w.instanceId.toString()),
      dpSize: flags.dpSize,
      routerMode: flags.routerMode,
    },
    'kvgate serve: ready',
  );
  process.stdout.write(
    `kvgate listening on ${server.url} (model ${flags.model}, ${flags.workers} workers x ${flags.dpSize} ranks, router ${flags.routerMode})\n`,
  );
}
