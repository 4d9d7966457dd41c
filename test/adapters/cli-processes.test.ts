/**
 * Every piece a real process: nats-server + etcd, `kvgate mock-engine --api sglang --dp-size 4`,
 * `kvgate worker --engine sglang --engine-url ...` and `kvgate frontend`. 100 chat completions
 * succeed, and for each the rank the router reports (nvext.dp_rank) is the data_parallel_rank the
 * SGLang-API engine received (rank 0 included).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvgateProcess } from '../e2e/cli-process.ts';
import {
  type EtcdServer,
  freePort,
  type NatsServer,
  startEtcd,
  startNatsServer,
} from '../support/servers.ts';
import { freePorts } from './helpers.ts';

const NAMESPACE = 'adapters';
const DP = 4;

let nats: NatsServer;
let etcd: EtcdServer;
let engine: KvgateProcess;
let worker: KvgateProcess;
let frontend: KvgateProcess;
let engineUrl: string;
let url: string;

describe('kvgate worker --engine sglang, as processes over NATS + etcd', () => {
  beforeAll(async () => {
    [nats, etcd] = await Promise.all([startNatsServer(), startEtcd()]);
    const rt = ['--nats', nats.url, '--etcd', etcd.endpoint, '--namespace', NAMESPACE];
    const zmq = await freePorts(DP * 2);
    engine = new KvgateProcess([
      'mock-engine',
      '--api',
      'sglang',
      '--port',
      '0',
      '--zmq-port',
      String(zmq),
      '--replay-port',
      String(zmq + DP),
      '--dp-size',
      String(DP),
      '--block-size',
      '16',
    ]);
    engineUrl = (await engine.waitFor(/"url":"(http:\/\/[^"]+)"/, 30_000))[1];
    worker = new KvgateProcess(
      [
        'worker',
        '--engine',
        'sglang',
        '--engine-url',
        engineUrl,
        '--model',
        'fake-model',
        '--health-interval',
        '300',
        ...rt,
      ],
      { KVGATE_LOG_LEVEL: 'info' },
    );
    frontend = new KvgateProcess([
      'frontend',
      '--host',
      '127.0.0.1',
      '--port',
      String(await freePort()),
      ...rt,
    ]);
    await worker.waitFor(/"msg":"worker: registered"/, 30_000);
    url = await frontend.url(30_000);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([frontend?.stop(), worker?.stop()]);
    await engine?.stop();
    await Promise.all([nats?.dispose(), etcd?.dispose()]);
  });

  it('100 chats run on exactly the rank the router chose', async () => {
    const answers: { id: string; rank: number }[] = [];
    const one = async (i: number) => {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'fake-model',
          messages: [
            { role: 'user', content: `question ${i % 7}: ${'context '.repeat(10 + (i % 13))} #${i}` },
          ],
          max_tokens: 4,
        }),
      });
      const body = (await response.json()) as {
        id: string;
        choices: { finish_reason: string }[];
        nvext: { dp_rank: number };
      };
      expect(response.status, JSON.stringify(body)).toBe(200);
      expect(body.choices[0].finish_reason).toBe('length');
      answers.push({ id: body.id, rank: body.nvext.dp_rank });
    };
    for (let start = 0; start < 100; start += 20)
      await Promise.all(Array.from({ length: 20 }, (_, k) => one(start + k)));
    const seen = (await (await fetch(`${engineUrl}/debug/requests`)).json()) as {
      rid: string;
      dataParallelRank: number | null;
      rank: number;
    }[];
    const byRid = new Map(seen.map((r) => [r.rid, r]));
    expect(answers).toHaveLength(100);
    for (const { id, rank } of answers) {
      const record = byRid.get(`${id}-0`);
      expect(record, id).toBeDefined();
      expect(record!.dataParallelRank, id).toBe(rank);
      expect(record!.rank, id).toBe(rank);
    }
    const ranks = new Set(answers.map((a) => a.rank));
    expect(ranks.has(0)).toBe(true);
    expect(ranks.size).toBeGreaterThan(1);
  });
});
