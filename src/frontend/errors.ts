/**
 * Every error the frontend returns has OpenAI's shape:
 * `{"error": {"message": string, "type": string, "param": string | null, "code": string | null}}`.
 */

/** OpenAI's error `type` values that the frontend uses. */
export type OpenAiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'service_unavailable'
  | 'server_error';

export interface OpenAiErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    readonly code: string | null;
  };
}

export interface ApiErrorOptions {
  readonly status?: number;
  readonly type?: OpenAiErrorType;
  readonly code?: string | null;
  readonly param?: string | null;
}

/** An error with the HTTP status and OpenAI error fields the client should see. */
export class ApiError extends Error {
  override readonly name: string = 'ApiError';
  readonly status: number;
  readonly type: OpenAiErrorType;
  readonly code: string | null;
  readonly param: string | null;

  constructor(message: string, options: ApiErrorOptions = {}) {
    super(message);
    this.status = options.status ?? 500;
    this.type = options.type ?? (this.status >= 500 ? 'server_error' : 'invalid_request_error');
    this.code = options.code ?? null;
    this.param = options.param ?? null;
  }

  body(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function invalidRequest(
  message: string,
  param: string | null = null,
  code: string | null = null,
): ApiError {
  return new ApiError(message, { status: 400, type: 'invalid_request_error', param, code });
}

interface FrameworkError {
  statusCode?: unknown;
  code?: unknown;
  message?: unknown;
}

/**
 * Maps anything thrown while serving a request to an ApiError. Framework 4xx errors (bad JSON,
 * body too large, wrong media type) keep their status and message; anything else is a 500 whose
 * message does not leak internals.
 */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const framework = (typeof error === 'object' && error !== null ? error : {}) as FrameworkError;
  const status = typeof framework.statusCode === 'number' ? framework.statusCode : 500;
  const code = typeof framework.code === 'string' ? framework.code : null;
  if (status === 413 || code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new ApiError('Request body is too large.', {
      status: 413,
      type: 'invalid_request_error',
      code: 'request_too_large',
    });
  }
  if (status >= 400 && status < 500) {
    const message = typeof framework.message === 'string' ? framework.message : 'Bad request.';
    return new ApiError(message, {
      status,
      type: 'invalid_request_error',
      code: code?.toLowerCase() ?? null,
    });
  }
  return new ApiError('The server had an error while processing your request.', {
    status: 500,
    type: 'server_error',
  });
}
