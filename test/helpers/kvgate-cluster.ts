/**
 * kvgate commands run as processes over a real nats-server and etcd: the servers, the runtime
 * flags that point at them, and workers and frontends started with those flags. dispose() kills
 * every process it started and stops the servers.
 */
import { KvgateProcess } from '../e2e/cli-process.ts';
import {
  type EtcdServer,
  freePort,
  type NatsServer,
  startEtcd,
  startNatsServer,
} from '../support/servers.ts';

export class KvgateCluster {
  private readonly procs: KvgateProcess[] = [];

  private constructor(
    readonly nats: NatsServer,
    readonly etcd: EtcdServer,
    readonly namespace: string,
  ) {}

  static async start(namespace: string): Promise<KvgateCluster> {
    const [nats, etcd] = await Promise.all([startNatsServer(), startEtcd()]);
    return new KvgateCluster(nats, etcd, namespace);
  }

  /** `--nats`, `--etcd` and `--namespace` of this deployment. */
  get runtimeFlags(): string[] {
    return ['--nats', this.nats.url, '--etcd', this.etcd.endpoint, '--namespace', this.namespace];
  }

  /** Any kvgate command (no flags added); killed by dispose(). */
  spawn(args: readonly string[], env?: Readonly<Record<string, string>>): KvgateProcess {
    const proc = new KvgateProcess(args, env);
    this.procs.push(proc);
    return proc;
  }

  /** `kvgate worker ARGS` on this deployment; resolves once it registered, with its instance id. */
  async startWorker(
    args: readonly string[],
    timeoutMs = 45_000,
  ): Promise<{ proc: KvgateProcess; id: bigint }> {
    // Its info log line carries the instance id.
    const proc = this.spawn(['worker', ...args, ...this.runtimeFlags], { KVGATE_LOG_LEVEL: 'info' });
    const match = await proc.waitFor(/"instanceId":"([0-9a-f]+)"[^\n]*"msg":"worker: registered"/, timeoutMs);
    return { proc, id: BigInt(`0x${match[1]}`) };
  }

  /** `kvgate frontend ARGS` on this deployment and a free loopback port; resolves with its URL. */
  async startFrontend(
    args: readonly string[] = [],
    timeoutMs = 45_000,
  ): Promise<{ proc: KvgateProcess; url: string }> {
    const port = String(await freePort());
    const proc = this.spawn([
      'frontend',
      '--host',
      '127.0.0.1',
      '--port',
      port,
      ...args,
      ...this.runtimeFlags,
    ]);
    return { proc, url: await proc.url(timeoutMs) };
  }

  async dispose(): Promise<void> {
    for (const proc of this.procs) proc.kill('SIGKILL');
    await Promise.all([this.nats.dispose(), this.etcd.dispose()]);
  }
}
