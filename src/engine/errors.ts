/** Coded errors of the mock engine (fastify-style codes, so adapters can map them to HTTP statuses). */

export type EngineErrorCode =
  | 'ENGINE_INVALID_REQUEST'
  | 'ENGINE_INVALID_OPTIONS'
  | 'ENGINE_RANK_OUT_OF_RANGE'
  | 'ENGINE_DUPLICATE_REQUEST'
  | 'ENGINE_REQUEST_TOO_LARGE'
  | 'ENGINE_MODE_MISMATCH'
  | 'ENGINE_BOOTSTRAP_UNKNOWN_WORKER'
  | 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND'
  | 'ENGINE_BOOTSTRAP_WRONG_RANK'
  | 'ENGINE_BOOTSTRAP_PROMPT_MISMATCH'
  | 'ENGINE_BOOTSTRAP_ROOM_CLAIMED'
  | 'ENGINE_BOOTSTRAP_EXPIRED'
  | 'ENGINE_CANCELLED'
  | 'ENGINE_SINK_FAILED'
  | 'ENGINE_CLOSED';

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  constructor(code: EngineErrorCode, message: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
  }
}
