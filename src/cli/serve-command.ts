/**
 * `kvgate serve`: the embedded deployment. Frontend, router and N mock-engine workers with
 * data-parallel ranks run in one process on the local runtime; prints the URL once every worker
 * is routable. SIGINT / SIGTERM stop it cleanly (in-flight requests finish first).
 */
import type { Command } from 'commander';
import { startDisaggEmbeddedServer } from '../cluster/disagg/embedded.ts';
import { log } from '../util/log.ts';
import { onShutdownSignal } from '../util/shutdown.ts';
import { modelName, nonNegativeInt, nonNegativeNumber, positiveInt } from './arg-parsers.ts';
import { startEmbeddedServer } from './embedded-server.ts';
import { envOption } from './env-option.ts';
import {
  addFrontendOptions,
  type FrontendFlags,
  frontendOptionsFrom,
  routerConfigFrom,
} from './frontend-flags.ts';
import { CliUsageError, exitTwoOnUsageError, startOrExit, usageGuard } from './usage.ts';

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

interface ServeFlags extends FrontendFlags {
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
  const d = SERVE_DEFAULTS;
  const options = [
    envOption('--model <name>', 'model name the workers serve', modelName, d.model),
    envOption('--workers <n>', 'mock-engine workers', positiveInt, d.workers),
    envOption('--dp-size <n>', 'data-parallel ranks per worker', positiveInt, d.dpSize),
    envOption('--block-size <tokens>', 'tokens per KV block', positiveInt, d.blockSize),
    envOption('--num-gpu-blocks <n>', 'KV blocks per rank', positiveInt, d.numGpuBlocks),
    envOption('--max-num-seqs <n>', 'running sequences per rank', positiveInt, d.maxNumSeqs),
    envOption(
      '--max-num-batched-tokens <n>',
      'tokens per engine step per rank',
      positiveInt,
      d.maxNumBatchedTokens,
    ),
    envOption(
      '--speedup-ratio <x>',
      'simulated engine time runs this many times faster than real time (0 = no delay)',
      nonNegativeNumber,
      d.speedupRatio,
    ),
    envOption(
      '--prefill-workers <n>',
      'disaggregated: prefill workers in front of the decode workers (0 = aggregated)',
      nonNegativeInt,
      0,
    ),
    envOption('--decode-workers <n>', 'disaggregated: decode workers (default --workers)', positiveInt),
  ];
  const cmd = program
    .command('serve')
    .description('frontend + router + mock-engine workers in one process (embedded; local runtime)');
  for (const option of options) cmd.addOption(option);
  addFrontendOptions(cmd, { host: SERVE_DEFAULTS.host });
  exitTwoOnUsageError(cmd);
  cmd.action(usageGuard(serveAction));
}

const SERVE_START_FAILED = 'kvgate serve could not start: ';

async function serveAction(flags: ServeFlags): Promise<void> {
  const { config, blockSizeGiven } = routerConfigFrom(flags);
  if (blockSizeGiven && config.blockSize !== flags.blockSize)
    throw new CliUsageError(
      `--router-block-size ${config.blockSize} differs from the workers' --block-size ${flags.blockSize}; the router must use the workers' block size`,
    );
  if (flags.maxNumBatchedTokens < flags.blockSize)
    throw new CliUsageError(
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
    const disagg = await startOrExit(
      () =>
        startDisaggEmbeddedServer({
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
        }),
      SERVE_START_FAILED,
    );
    onShutdownSignal(() => disagg.close());
    process.stdout.write(
      `kvgate listening on ${disagg.url} (model ${flags.model}, ${flags.prefillWorkers} prefill + ${decodeWorkers} decode workers x ${flags.dpSize} ranks, router ${flags.routerMode})\n`,
    );
    return;
  }
  const server = await startOrExit(
    () =>
      startEmbeddedServer({
        ...common,
        model: flags.model,
        workers: flags.workers,
        engine,
        host: flags.host,
        port: flags.port,
      }),
    SERVE_START_FAILED,
  );
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
