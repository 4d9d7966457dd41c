/**
 * Disaggregation across processes over real NATS and etcd: prefill workers run as `kvgate worker
 * --role prefill` processes and are killed with SIGKILL mid-request (aggregated fallback, or a
 * clear error when disaggregation is enforced; never a hang), and `kvgate router` in its own
 * process answers best_worker_id for a client in this one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DisaggregatedModelRouter } from '../../src/cluster/disagg/disaggregated-model-router.ts';
import {
  type DisaggregatedRouterHandle,
  startDisaggregatedRouter,
  waitForPools,
} from '../../src/cluster/disagg/embedded.ts';
import { DisaggError } from '../../src/cluster/disagg/errors.ts';
import type { WorkerSelection } from '../../src/cluster/disagg/selection.ts';
import type { WorkerId } from '../../src/kv/events.ts';
import { PREFILL_COMPONENT } from '../../src/protocol/wire.ts';
import { RemoteRouterClient } from '../../src/router-service/client.ts';
import { connectDistributedRuntime, type DistributedRuntime } from '../../src/runtime/distributed.ts';
import { MockEngineAdapter } from '../../src/worker/engine-adapter.ts';
import { Worker } from '../../src/worker/worker.ts';
import { type EtcdServer, type NatsServer, startEtcd, startNatsServer } from '../support/servers.ts';
import { BLOCK_SIZE, collect, MODEL, prompt, request, tokensOf } from './helpers.ts';

let nats: NatsServer;
let etcd: EtcdServer;
const runtimes: DistributedRuntime[] = [];
const children = new Set<ChildProcess>();
const workers: Worker[] = [];

function kvgate(args: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KVGATE_LOG_LEVEL: 'warn' },
  });
  child.stdout?.resume();
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (code !== null && code !== 0) process.stderr.write(`kvgate ${args[0]} exited ${code}: ${stderr}\n`);
    void signal;
  });
  children.add(child);
  return child;
}

const runtimeFlags = (namespace: string) => [
  '--nats',
  nats.url,
  '--etcd',
  etcd.endpoint,
  '--namespace',
  namespace,
];

async function runtime(): Promise<DistributedRuntime> {
  const rt = await connectDistributedRuntime({ nats: { servers: nats.url }, etcd: { hosts: etcd.endpoint } });
  runtimes.push(rt);
  return rt;
}

/** An in-process worker whose engine pulls prefilled KV over the request plane and can prefill too. */
async function localWorker(
  rt: DistributedRuntime,
  namespace: string,
  mode: 'aggregated' | 'prefill' | 'decode',
): Promise<Worker> {
  const worker = await Worker.start({
    runtime: rt,
    namespace,
    modelName: MODEL,
    engine: (ctx) =>
      new MockEngineAdapter({
        mode,
        blockSize: BLOCK_SIZE,
        dataParallelSize: mode === 'prefill' ? 4 : 2,
        speedupRatio: 0,
        workerId: ctx.workerId,
        ...(mode === 'prefill' ? {} : { transfer: ctx.transfer }),
      }),
    drainTimeoutMs: 0,
  });
  workers.push(worker);
  await worker.registered;
  return worker;
}

beforeAll(async () => {
  [nats, etcd] = await Promise.all([startNatsServer(), startEtcd()]);
}, 30_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.shutdown({ drainTimeoutMs: 0 })));
  await Promise.all(runtimes.map((rt) => rt.close().catch(() => undefined)));
  await Promise.all([nats?.dispose(), etcd?.dispose()]);
});

describe('a prefill worker process killed with SIGKILL mid-request', () => {
  const ns = 'disaggkill';
  let handle: DisaggregatedRouterHandle;
  let prefillIds: WorkerId[];
  let decodeWorker: Worker;
  const BOOTSTRAP_PORT = 9100;
  const prefillProcesses: ChildProcess[] = [];
  /** The process of a prefill worker, told apart by the bootstrap port in its card. */
  const processOf = (id: WorkerId): ChildProcess => {
    const card = handle.watcher
      .routerFor(MODEL, PREFILL_COMPONENT)!
      .instances()
      .find((i) => i.workerId === id)!.card;
    return prefillProcesses[card.bootstrap!.port - BOOTSTRAP_PORT];
  };

  beforeAll(async () => {
    for (let i = 0; i < 2; i++)
      prefillProcesses[i] = kvgate([
        'worker',
        '--model',
        MODEL,
        '--role',
        'prefill',
        '--dp-size',
        '2',
        '--block-size',
        String(BLOCK_SIZE),
        // About a second of simulated prefill for a 3000-token prompt.
        '--speedup-ratio',
        '0.05',
        '--seed',
        String(i),
        '--bootstrap-port',
        String(BOOTSTRAP_PORT + i),
        '--lease-ttl',
        '3',
        ...runtimeFlags(ns),
      ]);
    const rt = await runtime();
    decodeWorker = await localWorker(rt, ns, 'aggregated');
    handle = await startDisaggregatedRouter({
      runtime: rt,
      namespace: ns,
      model: MODEL,
      routerConfig: { blockSize: BLOCK_SIZE },
      expect: { prefill: 2, decode: 1 },
    });
    prefillIds = handle.watcher
      .routerFor(MODEL, PREFILL_COMPONENT)!
      .instances()
      .map((i) => i.workerId);
  }, 40_000);

  afterAll(async () => {
    await handle?.close();
  });

  async function killDuring(router: DisaggregatedModelRouter, id: string, victim: WorkerId) {
    const handoffs = router.stats().handoffs;
    const started = Date.now();
    const running = collect(
      router.generate(request(id, prompt(77, 3000), { prefillRouting: { workerId: victim } })),
    );
    running.catch(() => undefined);
    const deadline = Date.now() + 10_000;
    while (router.stats().handoffs <= handoffs) {
      if (Date.now() > deadline) throw new Error('no prefill handoff');
      await new Promise((r) => setTimeout(r, 5));
    }
    processOf(victim).kill('SIGKILL');
    return { running, started };
  }

  it('first, a disaggregated request crosses processes: the decode pulls from the chosen prefill rank', async () => {
    const chunks = await collect(handle.router.generate(request('xproc', prompt(5, 200))));
    expect(tokensOf(chunks)).toHaveLength(3);
    expect(chunks[0].disaggregated).toBe(true);
    expect(prefillIds).toContain(chunks[0].prefillWorkerId);
    const placement = (decodeWorker.engine as MockEngineAdapter).engine.placement('xproc')!;
    expect(placement.prefillWorkerId).toBe(chunks[0].prefillWorkerId);
    expect(placement.prefillDpRank).toBe(chunks[0].prefillDpRank);
  }, 20_000);

  it('falls back to an aggregated run', async () => {
    const { running, started } = await killDuring(handle.router, 'killed-agg', prefillIds[0]);
    const chunks = await running;
    expect(tokensOf(chunks)).toHaveLength(3);
    expect(chunks[0].disaggregated).toBe(false);
    expect(handle.router.stats().aggregated.prefill_failed).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 20_000);

  it('fails with a clear error when disaggregation is enforced', async () => {
    const enforced = new DisaggregatedModelRouter({
      runtime: runtimes[0],
      decode: handle.router.decode,
      prefill: () => handle.router.prefill,
      enforceDisagg: true,
    });
    const { running, started } = await killDuring(enforced, 'killed-enforced', prefillIds[1]);
    await expect(running).rejects.toBeInstanceOf(DisaggError);
    await expect(running).rejects.toMatchObject({ code: 'DISAGG_PREFILL_FAILED' });
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 20_000);
});

describe('kvgate router in its own process', () => {
  const ns = 'disaggrouter';

  it('answers best_worker_id over NATS for a client here, and drives a disaggregated request', async () => {
    const rt = await runtime();
    const prefill = await localWorker(rt, ns, 'prefill');
    const decode = await localWorker(rt, ns, 'decode');
    const router = kvgate([
      'router',
      '--endpoint',
      `${ns}.prefill.generate`,
      '--block-size',
      String(BLOCK_SIZE),
      '--no-track-active-blocks',
      ...runtimeFlags(ns),
    ]);
    const client = new RemoteRouterClient({ runtime: rt, namespace: ns, waitForRouterMs: 30_000 });
    const remoteAnswers = new Map<string, WorkerSelection>();
    try {
      const ranks = new Set<number>();
      for (let i = 0; i < 12; i++) {
        const answer = await client.bestWorker(prompt(40 + i, 64 + i * 9));
        expect(answer.workerId).toBe(prefill.instanceId);
        expect(Number.isInteger(answer.dpRank)).toBe(true);
        expect(answer.dpRank).toBeGreaterThanOrEqual(0);
        expect(answer.dpRank).toBeLessThan(4);
        ranks.add(answer.dpRank!);
      }
      expect(ranks.size).toBeGreaterThanOrEqual(1);

      // A frontend here uses the remote router instead of an embedded prefill router.
      const handle = await startDisaggregatedRouter({
        runtime: rt,
        namespace: ns,
        model: MODEL,
        routerConfig: { blockSize: BLOCK_SIZE },
        expect: { prefill: 1, decode: 1 },
        prefillSelector: {
          select: async (tokens, routing, signal) => {
            const answer = await client.select(tokens, routing, signal);
            remoteAnswers.set(tokens.join(','), answer);
            return answer;
          },
        },
      });
      try {
        await waitForPools(handle.watcher, MODEL, { prefill: 1, decode: 1 });
        for (let i = 0; i < 8; i++) {
          const id = `remote-${i}`;
          const tokens = prompt(90 + i, 100);
          const chunks = await collect(handle.router.generate(request(id, tokens)));
          const expected = remoteAnswers.get(tokens.join(','))!;
          expect(expected.dpRank).toBeDefined();
          expect(chunks[0].prefillWorkerId).toBe(prefill.instanceId);
          expect(chunks[0].prefillDpRank).toBe(expected.dpRank);
          const ran = (prefill.engine as MockEngineAdapter).engine.placement(id)!;
          const pulled = (decode.engine as MockEngineAdapter).engine.placement(id)!;
          expect(ran.dpRank).toBe(expected.dpRank);
          expect(pulled.prefillDpRank).toBe(expected.dpRank);
        }
      } finally {
        await handle.close();
      }
    } finally {
      await client.close();
      router.kill('SIGTERM');
    }
  }, 40_000);
});
