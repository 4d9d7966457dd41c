/**
 * Random 128-bit ids as 32 lowercase hex digits (the shape of a UUID without its dashes, as in
 * OpenAI's `chatcmpl-...` ids). Drawn from a pool of cryptographic random bytes refilled every
 * 256 ids: about a quarter of the cost of `randomUUID().replaceAll('-', '')`.
 */
import { randomFillSync } from 'node:crypto';

const ID_BYTES = 16;
const IDS_PER_FILL = 256;
const pool = Buffer.alloc(ID_BYTES * IDS_PER_FILL);
let next = IDS_PER_FILL;

export function randomHexId(): string {
  if (next === IDS_PER_FILL) {
    randomFillSync(pool);
    next = 0;
  }
  const start = next++ * ID_BYTES;
  return pool.toString('hex', start, start + ID_BYTES);
}
