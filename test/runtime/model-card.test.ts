import { describe, expect, it } from 'vitest';
import { encodeJson } from '../../src/runtime/codec.ts';
import {
  assertValidModelCard,
  decodeModelCard,
  encodeModelCard,
  type ModelCard,
} from '../../src/runtime/model-card.ts';

const card: ModelCard = {
  modelName: 'Qwen/Qwen3-0.6B',
  role: 'decode',
  kvBlockSize: 16,
  totalKvBlocks: 1024,
  maxNumSeqs: 64,
  maxNumBatchedTokens: 2048,
  dataParallelSize: 2,
};

describe('model card', () => {
  it('is written in snake_case and read back', () => {
    const bytes = encodeModelCard(card);
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual({
      model_name: 'Qwen/Qwen3-0.6B',
      role: 'decode',
      kv_block_size: 16,
      total_kv_blocks: 1024,
      max_num_seqs: 64,
      max_num_batched_tokens: 2048,
      data_parallel_size: 2,
    });
    expect(decodeModelCard(bytes)).toEqual({ card });
  });

  it('reports what is wrong with a malformed card instead of throwing', () => {
    const bad = [
      new TextEncoder().encode('nope'),
      encodeJson({ model_name: 'm', role: 'decode' }),
      encodeJson({ ...JSON.parse(new TextDecoder().decode(encodeModelCard(card))), data_parallel_size: 0 }),
      encodeJson({
        ...JSON.parse(new TextDecoder().decode(encodeModelCard(card))),
        bootstrap: { host: 'h', port: 70000 },
      }),
    ];
    for (const bytes of bad) expect('error' in decodeModelCard(bytes)).toBe(true);
    expect(() => assertValidModelCard({ ...card, role: 'boss' as ModelCard['role'] })).toThrow(
      /invalid model card/,
    );
  });
});
