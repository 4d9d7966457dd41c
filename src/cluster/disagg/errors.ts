/**
 * Errors of disaggregated serving (fastify-style `code`, plus the HTTP status a frontend should
 * answer with). Every message names the prefill worker and rank involved, so a lost or wrong rank
 * is visible in the client's error, not only in the logs.
 */
export type DisaggErrorCode =
  /** Disaggregation is enforced (or a prefill worker was pinned) and no prefill worker serves the model. */
  | 'DISAGG_NO_PREFILL_WORKER'
  /** The prefill failed and neither an aggregated fallback nor another prefill worker could take over. */
  | 'DISAGG_PREFILL_FAILED'
  /** The prefill ran somewhere else than the router chose (a dropped or rewritten rank). */
  | 'DISAGG_RANK_MISMATCH'
  /** A pinned prefill rank outside the prefill worker's [0, data_parallel_size). */
  | 'DISAGG_RANK_OUT_OF_RANGE'
  /** A pinned worker that cannot play the role asked of it (e.g. a decode worker as prefill). */
  | 'DISAGG_WRONG_ROLE';

export class DisaggError extends Error {
  readonly code: DisaggErrorCode;
  readonly statusCode: number;
  constructor(code: DisaggErrorCode, message: string, statusCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DisaggError';
    this.code = code;
    this.statusCode = statusCode;
  }
}
