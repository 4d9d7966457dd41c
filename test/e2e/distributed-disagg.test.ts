/**
 * Disaggregation through the distributed commands, every piece a real process: nats-server, etcd,
 * a `kvgate worker --role prefill` (4 ranks), a `kvgate worker --role decode` (2 ranks) and
 * `kvgate frontend`, which finds the prefill pool and routes every request prefill → decode.
 * Each answer names both sides; the prefill rank is a valid rank of the prefill worker and the
 * decode pulled the KV over the request plane from exactly that worker and rank.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvgateCluster } from '../helpers/kvgate-cluster.ts';

const MODEL = 'disagg-model';

let cluster: KvgateCluster;
let url: string;
let prefillId: bigint;
let decodeId: bigint;

const startWorker = async (role: string, dpSize: number): Promise<bigint> =>
  (
    await cluster.startWorker([
      '--model',
      MODEL,
      '--role',
      role,
      '--dp-size',
      String(dpSize),
      '--speedup-ratio',
      '10',
    ])
  ).id;

beforeAll(async () => {
  cluster = await KvgateCluster.start('e2edisagg');
  [prefillId, decodeId] = await Promise.all([startWorker('prefill', 4), startWorker('decode', 2)]);
  ({ url } = await cluster.startFrontend(['--enforce-disagg']));
}, 90_000);

afterAll(async () => {
  await cluster?.dispose();
});

describe('kvgate frontend over a prefill worker and a decode worker', () => {
  it('runs every request prefill → decode and reports both (worker, rank) pairs', async () => {
    const prefillRanks = new Set<number>();
    const deadline = Date.now() + 30_000;
    let done = 0;
    for (let i = 0; done < 24; i++) {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: MODEL,
          messages: [
            { role: 'user', content: `Question ${i}: ${'tell me more about topic '.repeat(20)}${i * 7919}` },
          ],
          max_tokens: 6,
        }),
      });
      const text = await response.text();
      // Until the frontend has discovered both pools, enforced disaggregation answers 503.
      if (response.status === 503 && done === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      expect(response.status, text).toBe(200);
      const body = JSON.parse(text) as {
        usage: { completion_tokens: number };
        nvext: Record<string, number>;
      };
      expect(body.usage.completion_tokens).toBe(6);
      expect(BigInt(/"prefill_worker_id":(\d+)/.exec(text)![1])).toBe(prefillId);
      expect(BigInt(/"decode_worker_id":(\d+)/.exec(text)![1])).toBe(decodeId);
      const prefillRank = body.nvext.prefill_dp_rank;
      expect(Number.isInteger(prefillRank) && prefillRank >= 0 && prefillRank < 4).toBe(true);
      expect([0, 1]).toContain(body.nvext.decode_dp_rank);
      prefillRanks.add(prefillRank);
      done++;
    }
    expect(prefillRanks.size).toBeGreaterThanOrEqual(2);
  });
});
