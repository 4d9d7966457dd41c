/**
 * `kvgate router`: the standalone router service (Dynamo's `python -m dynamo.router`). It routes
 * for the workers of one `ns.component.generate` endpoint and serves `{ns}.router.best_worker_id`
 * and `{ns}.router.generate` on a distributed runtime, for frontends in other processes. The block
 * size is required (there is no model card to take it from); prefill pools usually run with
 * `--no-track-active-blocks`.
 */
import type { Command } from 'commander';
import { RouterService } from '../router-service/router-service.ts';
import { addRouterOptions, type KvRouterConfigInput, parseRouterConfig } from '../routing/config.ts';
import { connectDistributedRuntime } from '../runtime/distributed.ts';
import { errorMessage } from '../runtime/errors.ts';
import { formatEndpointId, parseEndpointId } from '../runtime/types.ts';
import { log } from '../util/log.ts';
import { onShutdownSignal } from '../util/shutdown.ts';
import { positiveInt } from './arg-parsers.ts';
import { routerConfigFrom } from './frontend-flags.ts';
import { addRuntimeOptions, runtimeSettingsFromOptions } from './runtime-options.ts';
import { CliUsageError, exitTwoOnUsageError, startOrExit, usageGuard } from './usage.ts';

interface RouterFlags {
  endpoint?: string;
  blockSize?: number;
  trackActiveBlocks: boolean;
  waitForWorkers: number;
}

export function registerRouterCommand(program: Command): void {
  const cmd = program
    .command('router')
    .description('standalone KV router service: best_worker_id and a routing generate for other frontends')
    .option('--endpoint <ns.component.endpoint>', 'the workers to route, e.g. kvgate.prefill.generate')
    .option('--block-size <tokens>', 'the workers’ KV block size (required)', positiveInt)
    .option('--no-track-active-blocks', 'track prompt tokens only, not active blocks (prefill pools)')
    .option('--wait-for-workers <ms>', 'how long a query waits for a first worker', positiveInt, 30_000);
  addRouterOptions(cmd);
  addRuntimeOptions(cmd);
  exitTwoOnUsageError(cmd);
  cmd.action(usageGuard(runRouter));
}

/** The router config from the flags: `--block-size` (or `--router-block-size`) is required. */
export function routerServiceConfig(flags: RouterFlags & Record<string, unknown>): KvRouterConfigInput & {
  blockSize: number;
} {
  const { config, blockSizeGiven } = routerConfigFrom(flags);
  const given = flags.blockSize ?? (blockSizeGiven ? config.blockSize : undefined);
  if (given === undefined)
    throw new CliUsageError(
      'give the workers’ KV block size: --block-size N (the router has no model card to read it from)',
    );
  if (flags.blockSize !== undefined && blockSizeGiven && config.blockSize !== flags.blockSize)
    throw new CliUsageError(
      `--block-size ${flags.blockSize} and --router-block-size ${config.blockSize} disagree`,
    );
  const merged = {
    ...config,
    blockSize: given,
    ...(flags.trackActiveBlocks === false ? { trackActiveBlocks: false } : {}),
  };
  try {
    parseRouterConfig(merged);
  } catch (error) {
    throw new CliUsageError(errorMessage(error));
  }
  return merged;
}

async function runRouter(flags: RouterFlags): Promise<void> {
  if (flags.endpoint === undefined)
    throw new CliUsageError('give the workers’ endpoint to route: --endpoint NS.COMPONENT.generate');
  let endpoint: ReturnType<typeof parseEndpointId>;
  try {
    endpoint = parseEndpointId(flags.endpoint);
  } catch (error) {
    throw new CliUsageError(`--endpoint: ${errorMessage(error)}`);
  }
  if (endpoint.endpoint !== 'generate')
    throw new CliUsageError(
      `--endpoint: the router routes generate endpoints, got ${formatEndpointId(endpoint)}`,
    );
  const opts = flags as RouterFlags & Record<string, unknown>;
  const config = routerServiceConfig(opts);
  const settings = runtimeSettingsFromOptions(opts);
  if (opts.namespace !== undefined && settings.namespace !== endpoint.namespace)
    throw new CliUsageError(
      `--namespace ${settings.namespace} differs from the --endpoint namespace ${endpoint.namespace}`,
    );
  if (settings.distributed === undefined)
    throw new CliUsageError('kvgate router joins a distributed runtime: give --nats URL and --etcd URL');

  const distributed = settings.distributed;
  const runtime = await startOrExit(
    () => connectDistributedRuntime(distributed),
    'cannot connect to NATS / etcd: ',
  );
  const service = await startOrExit(
    () => RouterService.start({ runtime, endpoint, config, waitForWorkersMs: flags.waitForWorkers }),
    'router: ',
    () => runtime.close(),
  );
  onShutdownSignal(async () => {
    await service.close();
    await runtime.close();
  });
  log.info({ endpoint: formatEndpointId(endpoint), blockSize: config.blockSize }, 'kvgate router: ready');
  process.stdout.write(
    `kvgate router ${service.instanceId.toString(16)} serving ${endpoint.namespace}.router.best_worker_id and ${endpoint.namespace}.router.generate for ${formatEndpointId(endpoint)} (block size ${config.blockSize}, track active blocks ${config.trackActiveBlocks ?? true})\n`,
  );
}
