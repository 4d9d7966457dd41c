/**
 * `kvgate frontend`: the OpenAI frontend and router of a distributed deployment. It connects to
 * NATS and etcd, discovers the workers of its namespace (started with `kvgate worker`), keeps one
 * router per model and serves them over HTTP; when prefill workers (`--role prefill`) serve a
 * model, its requests are disaggregated through a KV- and DP-aware prefill router (DESIGN §8).
 * SIGINT / SIGTERM stop it cleanly.
 */
import type { Command } from 'commander';
import { startDisaggregatedFrontend } from '../cluster/disagg/frontend.ts';
import { listenFrontend } from '../frontend/server.ts';
import { connectDistributedRuntime } from '../runtime/distributed.ts';
import { log } from '../util/log.ts';
import { onShutdownSignal } from '../util/shutdown.ts';
import {
  addFrontendOptions,
  type FrontendFlags,
  frontendOptionsFrom,
  routerConfigFrom,
} from './frontend-flags.ts';
import { addRuntimeOptions, runtimeSettingsFromOptions } from './runtime-options.ts';
import { CliUsageError, exitTwoOnUsageError, startOrExit, usageGuard } from './usage.ts';

export function registerFrontendCommand(program: Command): void {
  const cmd = program
    .command('frontend')
    .description(
      'OpenAI frontend + router over NATS and etcd, serving the workers started with kvgate worker',
    );
  addFrontendOptions(cmd, { host: '0.0.0.0' });
  addRuntimeOptions(cmd);
  exitTwoOnUsageError(cmd);
  cmd.action(usageGuard(frontendAction));
}

async function frontendAction(flags: FrontendFlags): Promise<void> {
  const settings = runtimeSettingsFromOptions(flags);
  if (settings.distributed === undefined)
    throw new CliUsageError(
      'kvgate frontend joins a distributed runtime: give --nats URL and --etcd URL (or KVGATE_NATS and KVGATE_ETCD). ' +
        'For everything in one process use `kvgate serve`.',
    );
  const { config } = routerConfigFrom(flags);
  const common = await frontendOptionsFrom(flags, config);
  const distributed = settings.distributed;
  const runtime = await startOrExit(
    () => connectDistributedRuntime(distributed),
    'cannot connect to NATS / etcd: ',
  );
  const frontend = await startDisaggregatedFrontend({
    ...common,
    runtime,
    namespace: settings.namespace,
    enforceDisagg: flags.enforceDisagg === true,
    minUncachedTokens: flags.disaggMinUncachedTokens,
  });
  const address = await startOrExit(
    () => listenFrontend(frontend.app, { host: flags.host, port: flags.port }),
    `cannot listen on ${flags.host}:${flags.port}: `,
    async () => {
      await frontend.close().catch(() => undefined);
      await runtime.close().catch(() => undefined);
    },
  );
  onShutdownSignal(async () => {
    await frontend.close();
    await runtime.close();
  });
  log.info(
    { namespace: settings.namespace, routerMode: flags.routerMode, url: address.url },
    'kvgate frontend: ready',
  );
  process.stdout.write(
    `kvgate listening on ${address.url} (namespace ${settings.namespace}, router ${flags.routerMode})\n`,
  );
}
