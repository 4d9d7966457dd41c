/**
 * Every piece a real process: nats-server + etcd, `kvgate mock-engine --api sglang --dp-size 4`,
 * `kvgate worker --engine sglang --engine-url ...` and `kvgate frontend`. 100 chat completions
 * succeed, and for each the rank the router reports (nvext.dp_rank) is the data_parallel_rank the
 * SGLang-API engine received (rank 0 included).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvgateCluster } from '../helpers/kvgate-cluster.ts';
import { freePorts } from './helpers.ts';

const DP = 4;

let cluster: KvgateCluster;
let engineUrl: string;
let url: string;

describe('kvgate worker --engine sglang, as processes over NATS + etcd', () => {
  beforeAll(async () => {
    cluster = await KvgateCluster.start('adapters');
    const zmq = await freePorts(DP * 2);
    const engine = cluster.spawn([
      'mock-engine',
      ...['--api', 'sglang', '--port', '0', '--dp-size', String(DP), '--block-size', '16'],
      ...['--zmq-port', String(zmq), '--replay-port', String(zmq + DP)],
    ]);
    engineUrl = (await engine.waitFor(/"url":"(http:\/\/[^"]+)"/, 30_000))[1];
    const worker = cluster.startWorker(
      ['--engine', 'sglang', '--engine-url', engineUrl, '--model', 'fake-model', '--health-interval', '300'],
      30_000,
    );
    ({ url } = await cluster.startFrontend([], 30_000));
    await worker;
  }, 60_000);

  afterAll(async () => {
    await cluster?.dispose();
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
