/** Coded errors of the distributed runtime (discovery, request plane, event plane). */

export type RuntimeErrorCode =
  /** The handler on the remote instance threw; the message is the handler's. */
  | 'RUNTIME_REMOTE'
  /** Nobody serves that endpoint instance. */
  | 'RUNTIME_NO_RESPONDERS'
  /** The serving side went away mid-stream (no heartbeat, connection lost, lease gone). */
  | 'RUNTIME_STREAM_LOST'
  /** The serving side stopped the stream (shutdown, stop()). */
  | 'RUNTIME_SERVER_CANCELLED'
  /** The caller's own signal aborted the call. */
  | 'RUNTIME_CANCELLED'
  /** The call's timeoutMs passed. */
  | 'RUNTIME_TIMEOUT'
  /** A frame, key or message did not decode. */
  | 'RUNTIME_MALFORMED'
  /** The plane was closed. */
  | 'RUNTIME_CLOSED'
  /** Bad argument (endpoint name, subject, duplicate serve). */
  | 'RUNTIME_INVALID';

export class RuntimeError extends Error {
  readonly code: RuntimeErrorCode;
  constructor(code: RuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RuntimeError';
    this.code = code;
  }
}

/** The remote handler failed; `message` is what it threw. */
export class RemoteError extends RuntimeError {
  constructor(message: string) {
    super('RUNTIME_REMOTE', message);
    this.name = 'RemoteError';
  }
}

export function isRuntimeError(error: unknown, code?: RuntimeErrorCode): error is RuntimeError {
  return error instanceof RuntimeError && (code === undefined || error.code === code);
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
