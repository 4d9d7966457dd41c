/**
 * The model deployment card a worker registers next to its instance (DESIGN §7). Written to the
 * wire in Dynamo's snake_case; validated with zod when read back (a bad card is dropped by the
 * discovery implementation, never trusted).
 */
import { z } from 'zod';
import type { WorkerRole } from '../protocol/generate.ts';
import { decodeJson, encodeJson } from './codec.ts';
import { errorMessage } from './errors.ts';

export interface BootstrapEndpoint {
  readonly host: string;
  readonly port: number;
}

export interface ModelCard {
  readonly modelName: string;
  readonly role: WorkerRole;
  readonly kvBlockSize: number;
  readonly totalKvBlocks: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly dataParallelSize: number;
  /** Where decode workers pull prefilled KV from (prefill role). */
  readonly bootstrap?: BootstrapEndpoint;
  /** Free-form runtime configuration (JSON values). */
  readonly runtimeConfig?: Readonly<Record<string, unknown>>;
}

const positiveInt = z.number().int().positive();

export const modelCardWireSchema = z.object({
  model_name: z.string().min(1),
  role: z.enum(['aggregated', 'prefill', 'decode']),
  kv_block_size: positiveInt,
  total_kv_blocks: z.number().int().nonnegative(),
  max_num_seqs: positiveInt,
  max_num_batched_tokens: positiveInt,
  data_parallel_size: positiveInt,
  bootstrap: z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }).nullish(),
  runtime_config: z.record(z.string(), z.unknown()).nullish(),
});

export type ModelCardWire = z.infer<typeof modelCardWireSchema>;

export function modelCardToWire(card: ModelCard): ModelCardWire {
  return {
    model_name: card.modelName,
    role: card.role,
    kv_block_size: card.kvBlockSize,
    total_kv_blocks: card.totalKvBlocks,
    max_num_seqs: card.maxNumSeqs,
    max_num_batched_tokens: card.maxNumBatchedTokens,
    data_parallel_size: card.dataParallelSize,
    ...(card.bootstrap ? { bootstrap: { host: card.bootstrap.host, port: card.bootstrap.port } } : {}),
    ...(card.runtimeConfig ? { runtime_config: { ...card.runtimeConfig } } : {}),
  };
}

/** Validates decoded JSON; returns an error string instead of throwing. */
export function modelCardFromWire(value: unknown): { card: ModelCard } | { error: string } {
  const parsed = modelCardWireSchema.safeParse(value);
  if (!parsed.success) return { error: z.prettifyError(parsed.error) };
  const w = parsed.data;
  const card: ModelCard = {
    modelName: w.model_name,
    role: w.role,
    kvBlockSize: w.kv_block_size,
    totalKvBlocks: w.total_kv_blocks,
    maxNumSeqs: w.max_num_seqs,
    maxNumBatchedTokens: w.max_num_batched_tokens,
    dataParallelSize: w.data_parallel_size,
    ...(w.bootstrap ? { bootstrap: { host: w.bootstrap.host, port: w.bootstrap.port } } : {}),
    ...(w.runtime_config ? { runtimeConfig: w.runtime_config } : {}),
  };
  return { card };
}

/** Checks a card before it is registered (the same rules as reading it back). */
export function assertValidModelCard(card: ModelCard): void {
  const result = modelCardFromWire(modelCardToWire(card));
  if ('error' in result) throw new TypeError(`invalid model card: ${result.error}`);
}

export function encodeModelCard(card: ModelCard): Uint8Array {
  return encodeJson(modelCardToWire(card));
}

export function decodeModelCard(bytes: Uint8Array): { card: ModelCard } | { error: string } {
  let value: unknown;
  try {
    value = decodeJson(bytes);
  } catch (error) {
    return { error: errorMessage(error) };
  }
  return modelCardFromWire(value);
}
