/**
 * Coded routing errors (fastify-style `code`, plus the HTTP status a frontend should answer with).
 * Thrown at the router's API edges on bad input; never thrown from inside a scoring loop.
 */

export type RoutingErrorCode =
  | 'ROUTER_NO_WORKERS'
  | 'ROUTER_INVALID_TOKENS'
  | 'ROUTER_UNKNOWN_WORKER'
  | 'ROUTER_RANK_OUT_OF_RANGE'
  | 'ROUTER_INVALID_OVERRIDE'
  | 'ROUTER_INVALID_REQUEST_ID'
  | 'ROUTER_DUPLICATE_REQUEST'
  | 'ROUTER_INVALID_WORKER'
  | 'ROUTER_INVALID_CONFIG'
  | 'ROUTER_UNKNOWN_POLICY';

export class RoutingError extends Error {
  readonly code: RoutingErrorCode;
  readonly statusCode: number;
  constructor(code: RoutingErrorCode, message: string, statusCode = 400) {
    super(message);
    this.name = 'RoutingError';
    this.code = code;
    this.statusCode = statusCode;
  }
}

/** No live (worker, rank) can take the request. */
export class NoWorkersError extends RoutingError {
  constructor(message = 'no workers are registered with the router') {
    super('ROUTER_NO_WORKERS', message, 503);
    this.name = 'NoWorkersError';
  }
}

/** Token ids must be a non-empty list of integers in [0, 2^32). */
export class InvalidTokensError extends RoutingError {
  constructor(message: string) {
    super('ROUTER_INVALID_TOKENS', message);
    this.name = 'InvalidTokensError';
  }
}

/** A pinned or named worker is not registered. */
export class UnknownWorkerError extends RoutingError {
  readonly workerId: bigint;
  constructor(workerId: bigint) {
    super('ROUTER_UNKNOWN_WORKER', `worker ${workerId} is not registered`, 404);
    this.name = 'UnknownWorkerError';
    this.workerId = workerId;
  }
}

/** A dp_rank that is not an integer in [0, data_parallel_size). */
export class RankOutOfRangeError extends RoutingError {
  constructor(message: string) {
    super('ROUTER_RANK_OUT_OF_RANGE', message);
    this.name = 'RankOutOfRangeError';
  }
}

/** A per-request override (overlap weight, temperature) outside its valid range. */
export class InvalidOverrideError extends RoutingError {
  constructor(message: string) {
    super('ROUTER_INVALID_OVERRIDE', message);
    this.name = 'InvalidOverrideError';
  }
}

export class InvalidRequestIdError extends RoutingError {
  constructor(message: string) {
    super('ROUTER_INVALID_REQUEST_ID', message);
    this.name = 'InvalidRequestIdError';
  }
}

/** route() was called twice with the same request id while the first is still tracked. */
export class DuplicateRequestError extends RoutingError {
  constructor(requestId: string) {
    super('ROUTER_DUPLICATE_REQUEST', `request ${JSON.stringify(requestId)} is already being tracked`, 409);
    this.name = 'DuplicateRequestError';
  }
}

/** A worker registration with bad fields (data_parallel_size, block size, budgets). */
export class InvalidWorkerError extends RoutingError {
  constructor(message: string) {
    super('ROUTER_INVALID_WORKER', message);
    this.name = 'InvalidWorkerError';
  }
}

export class InvalidRouterConfigError extends RoutingError {
  constructor(message: string) {
    super('ROUTER_INVALID_CONFIG', message);
    this.name = 'InvalidRouterConfigError';
  }
}

export class UnknownPolicyError extends RoutingError {
  constructor(name: string, known: readonly string[]) {
    super(
      'ROUTER_UNKNOWN_POLICY',
      `unknown routing policy ${JSON.stringify(name)} (known: ${known.join(', ')})`,
    );
    this.name = 'UnknownPolicyError';
  }
}
