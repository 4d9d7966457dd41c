/**
 * Flags shared by `kvgate serve` and `kvgate frontend`: disaggregation, HTTP address, routing
 * policy and router settings, migration, API keys, busy thresholds, tokenizer. Every flag except
 * the `--enforce-disagg` switch can also come from a `KVGATE_*` environment variable (the flag
 * wins). A bad value is a usage error: a clear message on stderr and exit code 2.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { BusyThresholds } from '../frontend/backend.ts';
import type { ClusterFrontendOptions } from '../frontend/cluster-frontend.ts';
import { addRouterOptions, type KvRouterConfigInput, routerConfigFromOptions } from '../routing/config.ts';
import { POLICY_NAMES, type PolicyName } from '../routing/policy.ts';
import { errorMessage } from '../runtime/errors.ts';
import { loadTokenizer, type Tokenizer } from '../tokens/tokenizer.ts';
import {
  fraction,
  host,
  nonEmpty,
  nonNegativeInt,
  nonNegativeNumber,
  port,
  positiveInt,
} from './arg-parsers.ts';
import { envOption } from './env-option.ts';
import { CliUsageError } from './usage.ts';

function policy(value: string): PolicyName {
  if (!(POLICY_NAMES as readonly string[]).includes(value))
    throw new InvalidArgumentError(`expected one of ${POLICY_NAMES.join(', ')}`);
  return value as PolicyName;
}

/** Repeatable; the environment variable may hold several keys separated by commas. */
function apiKeys(value: string, previous: string[] | undefined): string[] {
  const keys = value
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k !== '');
  if (keys.length === 0) throw new InvalidArgumentError('expected a non-empty key');
  return [...(previous ?? []), ...keys];
}

export interface FrontendFlags {
  host: string;
  port: number;
  routerMode: PolicyName;
  migrationLimit: number;
  apiKey?: string[];
  activeDecodeBlocksThreshold?: number;
  activePrefillTokensThreshold?: number;
  activePrefillTokensThresholdFrac?: number;
  tokenizer?: string;
  maxInflight?: number;
  /** Disaggregated serving: prompts with fewer uncached tokens prefill on the decode worker. */
  disaggMinUncachedTokens: number;
  enforceDisagg?: boolean;
}

export function addFrontendOptions(cmd: Command, defaults: { host: string }): Command {
  const options = [
    envOption(
      '--disagg-min-uncached-tokens <n>',
      'disaggregated: prompts with fewer uncached tokens prefill on the decode worker (0 = always disaggregate)',
      nonNegativeInt,
      0,
    ),
    new Option(
      '--enforce-disagg',
      'disaggregated: fail requests rather than run them without a prefill worker',
    ),
    envOption('--host <host>', 'address to listen on', host, defaults.host),
    envOption('--port <port>', 'HTTP port (0 = any free port)', port, 8000),
    envOption('--router-mode <mode>', `routing policy: ${POLICY_NAMES.join(' | ')}`, policy, 'kv'),
    envOption(
      '--migration-limit <n>',
      'times a request moves to another worker when its worker dies mid-stream (0 = fail at once)',
      nonNegativeInt,
      3,
    ),
    envOption(
      '--api-key <key>',
      'require this bearer key (repeatable; the env var takes comma-separated keys)',
      apiKeys,
    ),
    envOption(
      '--active-decode-blocks-threshold <fraction>',
      'busy when active decode blocks exceed this share of a rank’s KV blocks (503 when every rank is busy)',
      fraction,
    ),
    envOption(
      '--active-prefill-tokens-threshold <tokens>',
      'busy when a rank has more prompt tokens than this waiting to prefill',
      nonNegativeInt,
    ),
    envOption(
      '--active-prefill-tokens-threshold-frac <fraction>',
      'busy when prefill tokens exceed this multiple of max_num_batched_tokens',
      nonNegativeNumber,
    ),
    envOption('--tokenizer <path>', 'Hugging Face tokenizer.json (default: the o200k_base BPE)', nonEmpty),
    envOption(
      '--max-inflight <n>',
      'answer 429 above this many requests in flight (default unlimited)',
      positiveInt,
    ),
  ];
  for (const option of options) cmd.addOption(option);
  addRouterOptions(cmd);
  return cmd;
}

/**
 * The router config from the `--router-*` flags and KVGATE_ROUTER_* variables. The block size is
 * left out unless given, so each model's router takes its workers' block size.
 */
export function routerConfigFrom(
  flags: object,
  env: Readonly<Record<string, string | undefined>> = process.env,
): { config: KvRouterConfigInput; blockSizeGiven: boolean } {
  let config: KvRouterConfigInput;
  try {
    config = routerConfigFromOptions(flags as Readonly<Record<string, unknown>>, env);
  } catch (error) {
    throw new CliUsageError(errorMessage(error));
  }
  const blockSizeGiven =
    (flags as { routerBlockSize?: unknown }).routerBlockSize !== undefined ||
    env.KVGATE_ROUTER_BLOCK_SIZE !== undefined;
  if (blockSizeGiven) return { config, blockSizeGiven };
  const { blockSize: _default, ...rest } = config;
  return { config: rest, blockSizeGiven };
}

export function busyThresholdsFrom(flags: FrontendFlags): Partial<BusyThresholds> {
  return {
    ...(flags.activeDecodeBlocksThreshold !== undefined
      ? { activeDecodeBlocksThreshold: flags.activeDecodeBlocksThreshold }
      : {}),
    ...(flags.activePrefillTokensThreshold !== undefined
      ? { activePrefillTokensThreshold: flags.activePrefillTokensThreshold }
      : {}),
    ...(flags.activePrefillTokensThresholdFrac !== undefined
      ? { activePrefillTokensThresholdFrac: flags.activePrefillTokensThresholdFrac }
      : {}),
  };
}

export async function tokenizerFrom(flags: FrontendFlags): Promise<Tokenizer> {
  try {
    return await loadTokenizer(flags.tokenizer !== undefined ? { tokenizerJsonPath: flags.tokenizer } : {});
  } catch (error) {
    throw new CliUsageError(`--tokenizer ${flags.tokenizer}: ${errorMessage(error)}`);
  }
}

/** The frontend settings every command shares (the caller adds the runtime). */
export async function frontendOptionsFrom(
  flags: FrontendFlags,
  routerConfig: KvRouterConfigInput,
): Promise<Omit<ClusterFrontendOptions, 'runtime'>> {
  return {
    policy: flags.routerMode,
    routerConfig,
    migrationLimit: flags.migrationLimit,
    busyThresholds: busyThresholdsFrom(flags),
    tokenizer: await tokenizerFrom(flags),
    ...(flags.apiKey !== undefined ? { apiKeys: flags.apiKey } : {}),
    ...(flags.maxInflight !== undefined ? { maxInflight: flags.maxInflight } : {}),
  };
}
