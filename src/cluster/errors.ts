/**
 * Errors of the router's view of the cluster (fastify-style `code` plus the HTTP status a
 * frontend should answer with). "No workers" is the routing layer's NoWorkersError.
 */
import { WORKER_BAD_REQUEST, workerErrorCode } from '../protocol/wire.ts';

export type ClusterErrorCode =
  /** The worker went away mid-stream and migration was off or exhausted. */
  | 'CLUSTER_WORKER_LOST'
  /** The worker refused or failed the request (its code in `workerCode`). */
  | 'CLUSTER_WORKER_ERROR'
  /** The worker answered something that does not decode. */
  | 'CLUSTER_BAD_RESPONSE';

export class ClusterError extends Error {
  readonly code: ClusterErrorCode;
  readonly statusCode: number;
  constructor(code: ClusterErrorCode, message: string, statusCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClusterError';
    this.code = code;
    this.statusCode = statusCode;
  }
}

export class WorkerLostError extends ClusterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLUSTER_WORKER_LOST', message, 503, options);
    this.name = 'WorkerLostError';
  }
}

/** 400 for a request the worker refused as invalid (bad payload, rank out of range), else 500. */
export class WorkerRequestError extends ClusterError {
  /** The worker's error code (`ENGINE_RANK_OUT_OF_RANGE`, `WORKER_BAD_REQUEST`, ...), if any. */
  readonly workerCode: string | undefined;
  constructor(message: string, options?: { cause?: unknown }) {
    const workerCode = workerErrorCode(message);
    const invalid =
      workerCode === WORKER_BAD_REQUEST ||
      workerCode === 'ENGINE_INVALID_REQUEST' ||
      workerCode === 'ENGINE_RANK_OUT_OF_RANGE' ||
      workerCode === 'ENGINE_REQUEST_TOO_LARGE' ||
      workerCode === 'ENGINE_DUPLICATE_REQUEST' ||
      workerCode === 'ENGINE_MODE_MISMATCH';
    super('CLUSTER_WORKER_ERROR', message, invalid ? 400 : 500, options);
    this.name = 'WorkerRequestError';
    this.workerCode = workerCode;
  }
}

export class BadResponseError extends ClusterError {
  constructor(message: string) {
    super('CLUSTER_BAD_RESPONSE', message, 502);
    this.name = 'BadResponseError';
  }
}
