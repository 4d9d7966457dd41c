/**
 * Runtime flags shared by the commands that join a distributed deployment (worker, frontend,
 * router): where NATS and etcd are, their credentials and TLS files (passed through), the
 * namespace and the lease TTL. Every flag can also come from the environment (`KVGATE_*`); a flag
 * wins over the environment.
 */
import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { DEFAULT_NAMESPACE } from '../protocol/wire.ts';
import type { DistributedRuntimeOptions } from '../runtime/distributed.ts';
import type { EtcdStoreOptions } from '../runtime/etcd/kv-store.ts';
import type { NatsOptions } from '../runtime/nats/connection.ts';
import { isValidName } from '../runtime/types.ts';
import { envVariable } from './env-option.ts';
import { CliUsageError } from './usage.ts';

interface RuntimeFlag {
  /** Commander attribute name. */
  readonly key: string;
  readonly flags: string;
  /** `--name`, as errors name the flag. */
  readonly long: string;
  readonly env: string;
  readonly help: string;
}

function runtimeFlag(flags: string, help: string): RuntimeFlag {
  const option = new Option(flags);
  const long = option.long ?? flags;
  return { key: option.attributeName(), flags, long, env: envVariable(long), help };
}

const RUNTIME_FLAGS: readonly RuntimeFlag[] = [
  runtimeFlag('--nats <urls>', 'NATS server URL(s), comma separated'),
  runtimeFlag('--etcd <urls>', 'etcd endpoint(s), comma separated'),
  runtimeFlag('--namespace <name>', `namespace (default ${DEFAULT_NAMESPACE})`),
  runtimeFlag('--lease-ttl <seconds>', 'discovery lease TTL in seconds (default 10)'),
  runtimeFlag('--nats-token <token>', 'NATS auth token'),
  runtimeFlag('--nats-user <user>', 'NATS user'),
  runtimeFlag('--nats-pass <password>', 'NATS password'),
  runtimeFlag('--nats-creds <file>', 'NATS .creds file'),
  runtimeFlag('--nats-tls-ca <file>', 'NATS TLS CA file'),
  runtimeFlag('--nats-tls-cert <file>', 'NATS TLS client certificate'),
  runtimeFlag('--nats-tls-key <file>', 'NATS TLS client key'),
  runtimeFlag('--etcd-user <user>', 'etcd user'),
  runtimeFlag('--etcd-pass <password>', 'etcd password'),
  runtimeFlag('--etcd-tls-ca <file>', 'etcd TLS CA file'),
  runtimeFlag('--etcd-tls-cert <file>', 'etcd TLS client certificate'),
  runtimeFlag('--etcd-tls-key <file>', 'etcd TLS client key'),
];

/** Adds the runtime flags to a command. */
export function addRuntimeOptions(cmd: Command): Command {
  for (const flag of RUNTIME_FLAGS) cmd.addOption(new Option(flag.flags, `${flag.help} (env ${flag.env})`));
  return cmd;
}

export interface RuntimeSettings {
  readonly namespace: string;
  /** Absent when neither --nats nor --etcd (nor their variables) was given. */
  readonly distributed?: DistributedRuntimeOptions;
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new CliUsageError(`${what}: cannot read ${JSON.stringify(path)} (${(error as Error).message})`);
  }
}

/** Resolves the runtime flags (flag, else environment) and validates them; throws CliUsageError. */
export function runtimeSettingsFromOptions(
  opts: object,
  env: Readonly<Record<string, string | undefined>> = process.env,
): RuntimeSettings {
  const given = opts as Readonly<Record<string, unknown>>;
  const value = (key: string): { text: string; source: string } | undefined => {
    const flag = RUNTIME_FLAGS.find((f) => f.key === key)!;
    const fromFlag = given[key];
    if (typeof fromFlag === 'string') return { text: fromFlag, source: flag.long };
    const fromEnv = env[flag.env];
    if (fromEnv !== undefined && fromEnv !== '') return { text: fromEnv, source: flag.env };
    return undefined;
  };
  const namespace = value('namespace');
  if (namespace !== undefined && !isValidName(namespace.text))
    throw new CliUsageError(
      `${namespace.source}: invalid namespace ${JSON.stringify(namespace.text)} (letters, digits, _ and -)`,
    );
  let leaseTtlSeconds: number | undefined;
  const ttl = value('leaseTtl');
  if (ttl !== undefined) {
    leaseTtlSeconds = Number(ttl.text);
    if (!Number.isInteger(leaseTtlSeconds) || leaseTtlSeconds < 1 || leaseTtlSeconds > 3600)
      throw new CliUsageError(
        `${ttl.source}: expected a whole number of seconds in [1, 3600], got ${JSON.stringify(ttl.text)}`,
      );
  }
  const nats = value('nats');
  const etcd = value('etcd');
  const settings = { namespace: namespace?.text ?? DEFAULT_NAMESPACE };
  if (nats === undefined && etcd === undefined) return settings;
  if (nats === undefined || etcd === undefined)
    throw new CliUsageError(
      `a distributed runtime needs both NATS and etcd: ${nats === undefined ? 'give --nats URL (or KVGATE_NATS)' : 'give --etcd URL (or KVGATE_ETCD)'}`,
    );
  const natsServers = list(nats.text);
  for (const url of natsServers)
    if (!/^(nats|tls|wss?):\/\/[^\s]+$/.test(url) && !/^[\w.-]+:\d+$/.test(url))
      throw new CliUsageError(`${nats.source}: not a NATS URL: ${JSON.stringify(url)}`);
  const etcdHosts = list(etcd.text);
  for (const host of etcdHosts)
    if (!/^(https?:\/\/)?[\w.-]+(:\d+)?$/.test(host))
      throw new CliUsageError(`${etcd.source}: not an etcd endpoint: ${JSON.stringify(host)}`);
  if (natsServers.length === 0 || etcdHosts.length === 0)
    throw new CliUsageError('--nats and --etcd need at least one address each');

  const natsUser = value('natsUser');
  const natsPass = value('natsPass');
  if ((natsUser === undefined) !== (natsPass === undefined))
    throw new CliUsageError('--nats-user and --nats-pass go together');
  const natsCreds = value('natsCreds');
  if (natsCreds !== undefined) readFile(natsCreds.text, natsCreds.source);
  const natsTls = tlsFiles(value('natsTlsCa'), value('natsTlsCert'), value('natsTlsKey'));
  const natsOptions: NatsOptions = {
    servers: natsServers,
    name: 'kvgate',
    ...(value('natsToken') ? { token: value('natsToken')!.text } : {}),
    ...(natsUser && natsPass ? { user: natsUser.text, pass: natsPass.text } : {}),
    ...(natsCreds ? { credsFile: natsCreds.text } : {}),
    ...(natsTls
      ? {
          tls: {
            ...(natsTls.ca ? { caFile: natsTls.ca } : {}),
            ...(natsTls.cert ? { certFile: natsTls.cert } : {}),
            ...(natsTls.key ? { keyFile: natsTls.key } : {}),
          },
        }
      : {}),
  };

  const etcdUser = value('etcdUser');
  const etcdPass = value('etcdPass');
  if ((etcdUser === undefined) !== (etcdPass === undefined))
    throw new CliUsageError('--etcd-user and --etcd-pass go together');
  const etcdTls = tlsFiles(value('etcdTlsCa'), value('etcdTlsCert'), value('etcdTlsKey'));
  if (etcdTls && etcdTls.ca === undefined) throw new CliUsageError('etcd TLS needs --etcd-tls-ca');
  const etcdOptions: EtcdStoreOptions = {
    hosts: etcdHosts,
    ...(etcdUser && etcdPass ? { auth: { username: etcdUser.text, password: etcdPass.text } } : {}),
    ...(etcdTls?.ca
      ? {
          credentials: {
            rootCertificate: readFile(etcdTls.ca, '--etcd-tls-ca'),
            ...(etcdTls.key ? { privateKey: readFile(etcdTls.key, '--etcd-tls-key') } : {}),
            ...(etcdTls.cert ? { certChain: readFile(etcdTls.cert, '--etcd-tls-cert') } : {}),
          },
        }
      : {}),
  };
  return {
    ...settings,
    distributed: {
      nats: natsOptions,
      etcd: etcdOptions,
      ...(leaseTtlSeconds !== undefined ? { leaseTtlSeconds } : {}),
    },
  };
}

type Found = { text: string; source: string } | undefined;

function tlsFiles(
  ca: Found,
  cert: Found,
  key: Found,
): { ca?: string; cert?: string; key?: string } | undefined {
  if (!ca && !cert && !key) return undefined;
  if ((cert === undefined) !== (key === undefined))
    throw new CliUsageError(`${(cert ?? key)!.source}: a TLS client certificate and key go together`);
  for (const f of [ca, cert, key]) if (f) readFile(f.text, f.source);
  return {
    ...(ca ? { ca: ca.text } : {}),
    ...(cert ? { cert: cert.text } : {}),
    ...(key ? { key: key.text } : {}),
  };
}
