import { describe, expect, it } from 'vitest';
import {
  bestWorkerQueryFromWire,
  bestWorkerQueryToWire,
  routerGenerateRequestFromWire,
} from '../../src/router-service/protocol.ts';

describe('router service requests on the wire', () => {
  it('a best_worker_id query round-trips; a malformed one is refused with the field named', () => {
    const query = {
      tokenIds: [1, 2, 3],
      dpRank: 0,
      workerId: 0xffff_ffff_ffff_fff0n,
      model: 'm',
      overrides: { overlapScoreWeight: 0.5, assumeKvReuse: false },
    };
    expect(bestWorkerQueryFromWire(bestWorkerQueryToWire(query))).toEqual({ ok: true, value: query });
    expect(bestWorkerQueryFromWire({ token_ids: [1] })).toEqual({ ok: true, value: { tokenIds: [1] } });
    const empty = bestWorkerQueryFromWire({ token_ids: [] });
    expect(empty.ok).toBe(false);
    expect(!empty.ok && empty.error).toMatch(/token_ids/);
    const badOverride = bestWorkerQueryFromWire({ token_ids: [1], overrides: { router_temperature: -1 } });
    expect(!badOverride.ok && badOverride.error).toMatch(/router_temperature/);
  });

  it('a routing generate keeps the generate request, its model and routing; either part bad refuses it', () => {
    const base = { request_id: 'r', token_ids: [1, 2], sampling: { max_tokens: 2 } };
    const ok = routerGenerateRequestFromWire({ ...base, model: 'm', routing: { worker_id: 5 } });
    expect(ok).toEqual({
      ok: true,
      value: {
        requestId: 'r',
        tokenIds: [1, 2],
        sampling: { maxTokens: 2 },
        model: 'm',
        routing: { workerId: 5n },
      },
    });
    expect(routerGenerateRequestFromWire({ ...base, sampling: {} }).ok).toBe(false);
    expect(routerGenerateRequestFromWire({ ...base, model: '' }).ok).toBe(false);
  });
});
