/**
 * Dynamo's `/busy_threshold` endpoint. `GET /busy_threshold` lists the thresholds of every model
 * whose backend supports them; `POST /busy_threshold {"model": ...}` returns one model's, and with
 * any of `active_decode_blocks_threshold` (fraction of KV blocks, 0..1),
 * `active_prefill_tokens_threshold` (tokens) or `active_prefill_tokens_threshold_frac` (fraction of
 * max_num_batched_tokens) it sets them first (null turns a check off).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { BusyThresholds, ModelBackend, ModelRegistry } from './backend.ts';
import { ApiError } from './errors.ts';
import { parseBody } from './protocol.ts';

const updateSchema = z.object({
  model: z.string().min(1),
  active_decode_blocks_threshold: z.number().min(0).max(1).nullable().optional(),
  active_prefill_tokens_threshold: z.number().int().min(0).nullable().optional(),
  active_prefill_tokens_threshold_frac: z.number().min(0).nullable().optional(),
});

function wire(model: string, t: BusyThresholds) {
  return {
    model,
    active_decode_blocks_threshold: t.activeDecodeBlocksThreshold,
    active_prefill_tokens_threshold: t.activePrefillTokensThreshold,
    active_prefill_tokens_threshold_frac: t.activePrefillTokensThresholdFrac,
  };
}

export function registerBusyThreshold(app: FastifyInstance, registry: ModelRegistry): void {
  app.get('/busy_threshold', async () => ({
    thresholds: registry
      .list()
      .map((m) => registry.get(m.id))
      .filter((b): b is ModelBackend => b?.busyThresholds !== undefined)
      .map((b) => wire(b.model, b.busyThresholds!.get())),
  }));

  app.post('/busy_threshold', async (request) => {
    const body = parseBody(updateSchema, request.body);
    const backend = registry.get(body.model);
    if (!backend) {
      throw new ApiError(`The model '${body.model}' does not exist.`, {
        status: 404,
        param: 'model',
        code: 'model_not_found',
      });
    }
    const control = backend.busyThresholds;
    if (!control) {
      throw new ApiError(`Model '${body.model}' has no busy thresholds.`, {
        status: 400,
        code: 'unsupported',
      });
    }
    const update: { -readonly [K in keyof BusyThresholds]?: BusyThresholds[K] } = {};
    if (body.active_decode_blocks_threshold !== undefined)
      update.activeDecodeBlocksThreshold = body.active_decode_blocks_threshold;
    if (body.active_prefill_tokens_threshold !== undefined)
      update.activePrefillTokensThreshold = body.active_prefill_tokens_threshold;
    if (body.active_prefill_tokens_threshold_frac !== undefined) {
      update.activePrefillTokensThresholdFrac = body.active_prefill_tokens_threshold_frac;
    }
    return wire(backend.model, Object.keys(update).length > 0 ? control.set(update) : control.get());
  });
}
