/** Coded errors for KV events and the indexers (fastify-style codes, never thrown on hot paths). */

export type KvErrorCode =
  | 'KV_MALFORMED_JSON'
  | 'KV_INVALID_EVENT'
  | 'KV_PARENT_NOT_FOUND'
  | 'KV_BLOCK_NOT_FOUND'
  | 'KV_INVALID_BLOCK_SEQUENCE'
  | 'KV_RANK_OUT_OF_RANGE'
  | 'KV_UNKNOWN_WORKER';

export class KvEventError extends Error {
  readonly code: KvErrorCode;
  constructor(code: KvErrorCode, message: string) {
    super(message);
    this.name = 'KvEventError';
    this.code = code;
  }
}
