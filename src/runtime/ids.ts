/** Random ids: u64 instance ids for local runtimes, unique tokens for inboxes. */
import { randomBytes } from 'node:crypto';

export function randomU64(): bigint {
  return randomBytes(8).readBigUInt64BE(0);
}
