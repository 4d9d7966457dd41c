/**
 * The KV-event batches SGLang and vLLM publish over ZMQ (reference dynamo-router §7), decoded from
 * msgpack and converted to kvgate's KvEventData.
 *
 * Both engines define the batch with msgspec structs; the layout depends on the struct options:
 * - `array_like=True` (SGLang, vLLM up to 0.11): batch `[ts, events, data_parallel_rank?]`, each event
 *   a tagged array `["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id,
 *   medium?...]`, `["BlockRemoved", block_hashes, medium?]`, `["AllBlocksCleared"]`.
 * - map structs (newer vLLM): batch `{ts, events, data_parallel_rank?}`, each event a map with its
 *   tag under `type`: `{type: "BlockStored", block_hashes, parent_block_hash, token_ids, block_size, ...}`.
 * Block hashes are msgpack integers (i64 or u64; taken bitwise as u64) or, in vLLM's bytes mode,
 * byte strings (the first 8 bytes, big-endian).
 */
import { decode } from '@msgpack/msgpack';
import type { KvEventData, StoredBlock } from '../../kv/events.ts';
import type { BlockHasher } from '../../tokens/block-hash.ts';
import { u64FromHalves } from '../../tokens/u64.ts';

export type RawKvEvent =
  | {
      readonly type: 'BlockStored';
      readonly blockHashes: readonly bigint[];
      readonly parentBlockHash: bigint | null;
      readonly tokenIds: readonly number[];
      readonly blockSize: number;
      readonly loraId: number | null;
    }
  | { readonly type: 'BlockRemoved'; readonly blockHashes: readonly bigint[] }
  | { readonly type: 'AllBlocksCleared' };

export interface RawEventBatch {
  readonly ts: number;
  readonly events: readonly RawKvEvent[];
  /** Absent when the publisher does not annotate batches (then the socket's rank applies). */
  readonly dpRank?: number;
}

/** A payload that is not a valid EventBatch. */
export class KvBatchFormatError extends Error {
  readonly code = 'KV_BATCH_MALFORMED';
  override readonly name = 'KvBatchFormatError';
}

function fail(message: string): never {
  throw new KvBatchFormatError(message);
}

const MAX_TOKEN = 0xffff_ffff;

/** Decodes one msgpack EventBatch payload; throws KvBatchFormatError for anything malformed. */
export function decodeEventBatch(payload: Uint8Array): RawEventBatch {
  let value: unknown;
  try {
    value = decode(payload, { useBigInt64: true });
  } catch (error) {
    fail(`not msgpack: ${error instanceof Error ? error.message : String(error)}`);
  }
  let ts: unknown;
  let events: unknown;
  let rank: unknown;
  if (Array.isArray(value)) {
    if (value.length < 2 || value.length > 3) fail(`batch array has ${value.length} fields`);
    [ts, events, rank] = value;
  } else if (value instanceof Map || (typeof value === 'object' && value !== null)) {
    const get = fieldReader(value);
    ts = get('ts');
    events = get('events');
    rank = get('data_parallel_rank') ?? get('dp_rank') ?? get('attn_dp_rank');
  } else fail('batch is neither an array nor a map');
  const tsNumber = typeof ts === 'bigint' ? Number(ts) : ts;
  if (typeof tsNumber !== 'number' || !Number.isFinite(tsNumber)) fail('batch ts is not a number');
  if (!Array.isArray(events)) fail('batch events is not an array');
  const out: RawEventBatch = { ts: tsNumber, events: events.map(decodeEvent) };
  if (rank === undefined || rank === null) return out;
  const dpRank = typeof rank === 'bigint' ? Number(rank) : rank;
  if (typeof dpRank !== 'number' || !Number.isInteger(dpRank) || dpRank < 0 || dpRank > 0xffff_ffff)
    fail(`batch data_parallel_rank ${String(rank)} is not a rank`);
  return { ...out, dpRank };
}

function fieldReader(value: object): (key: string) => unknown {
  if (value instanceof Map) return (key) => value.get(key);
  const record = value as Record<string, unknown>;
  return (key) => (Object.hasOwn(record, key) ? record[key] : undefined);
}

function decodeEvent(value: unknown, index: number): RawKvEvent {
  let tag: unknown;
  let get: (field: string, position: number) => unknown;
  if (Array.isArray(value)) {
    tag = value[0];
    get = (_field, position) => value[position];
  } else if (typeof value === 'object' && value !== null) {
    const read = fieldReader(value);
    tag = read('type');
    get = (field) => read(field);
  } else fail(`event ${index} is neither an array nor a map`);
  switch (tag) {
    case 'BlockStored': {
      const blockHashes = hashList(get('block_hashes', 1), index);
      const parent = get('parent_block_hash', 2);
      const tokenIds = get('token_ids', 3);
      const blockSize = toNumber(get('block_size', 4));
      const lora = get('lora_id', 5);
      if (!Array.isArray(tokenIds)) fail(`event ${index}: token_ids is not an array`);
      for (const token of tokenIds)
        if (typeof token !== 'number' || !Number.isInteger(token) || token < 0 || token > MAX_TOKEN)
          fail(`event ${index}: token id ${String(token)} is not a u32`);
      if (blockSize === undefined || !Number.isInteger(blockSize) || blockSize < 1)
        fail(`event ${index}: block_size is not a positive integer`);
      const loraId = lora === undefined || lora === null ? null : toNumber(lora);
      if (loraId === undefined) fail(`event ${index}: lora_id is not an integer`);
      return {
        type: 'BlockStored',
        blockHashes,
        parentBlockHash: parent === undefined || parent === null ? null : hashValue(parent, index),
        tokenIds: tokenIds as number[],
        blockSize,
        loraId,
      };
    }
    case 'BlockRemoved':
      return { type: 'BlockRemoved', blockHashes: hashList(get('block_hashes', 1), index) };
    case 'AllBlocksCleared':
      return { type: 'AllBlocksCleared' };
    default:
      fail(`event ${index}: unknown tag ${JSON.stringify(String(tag))}`);
  }
}

function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) ? value : undefined;
  if (
    typeof value === 'bigint' &&
    value >= BigInt(Number.MIN_SAFE_INTEGER) &&
    value <= BigInt(Number.MAX_SAFE_INTEGER)
  )
    return Number(value);
  return undefined;
}

function hashList(value: unknown, index: number): bigint[] {
  if (!Array.isArray(value)) fail(`event ${index}: block_hashes is not an array`);
  return value.map((h) => hashValue(h, index));
}

/** An engine hash as u64: integers bitwise (i64 → u64), byte strings by their first 8 bytes. */
function hashValue(value: unknown, index: number): bigint {
  if (typeof value === 'bigint') {
    if (value < -(1n << 63n) || value >= 1n << 64n) fail(`event ${index}: hash ${value} is not 64-bit`);
    return BigInt.asUintN(64, value);
  }
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt.asUintN(64, BigInt(value));
  if (value instanceof Uint8Array && value.length >= 8) {
    const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
    return view.getBigUint64(0, false);
  }
  fail(`event ${index}: block hash is not an integer or 8+ bytes`);
}

/** Why a BlockStored event converted to fewer blocks than it names. */
export interface ConversionNote {
  readonly truncatedBlocks: number;
  readonly reason: 'block_size' | 'short_tokens' | null;
}

/**
 * Converts one raw event. BlockStored: `block_hash` is the engine's hash, `tokens_hash` our hash of
 * the block's tokens at `blockSize`; conversion stops at the first block whose size is not the
 * block size (Dynamo's rule), and an event whose blocks have another size converts to nothing.
 * Returns null when nothing is left to apply.
 */
export function convertRawEvent(
  event: RawKvEvent,
  hasher: BlockHasher,
  note?: { truncatedBlocks: number; reason: ConversionNote['reason'] },
): KvEventData | null {
  switch (event.type) {
    case 'AllBlocksCleared':
      return { kind: 'cleared' };
    case 'BlockRemoved':
      return event.blockHashes.length === 0 ? null : { kind: 'removed', blockHashes: event.blockHashes };
    case 'BlockStored': {
      const blockSize = hasher.blockSize;
      let count = event.blockHashes.length;
      if (event.blockSize !== blockSize) {
        if (note) {
          note.truncatedBlocks += count;
          note.reason = 'block_size';
        }
        return null;
      }
      const full = Math.floor(event.tokenIds.length / blockSize);
      if (full < count) {
        if (note) {
          note.truncatedBlocks += count - full;
          note.reason = 'short_tokens';
        }
        count = full;
      }
      if (count === 0) return null;
      const local = hasher.localHashes(
        count * blockSize === event.tokenIds.length
          ? event.tokenIds
          : event.tokenIds.slice(0, count * blockSize),
      );
      const blocks: StoredBlock[] = new Array(count);
      for (let i = 0; i < count; i++)
        blocks[i] = {
          blockHash: event.blockHashes[i],
          tokensHash: u64FromHalves(local[2 * i], local[2 * i + 1]),
        };
      return { kind: 'stored', parentHash: event.parentBlockHash, blocks };
    }
  }
}
