/**
 * Per-request loggers made on first use. Fastify gives every request a child of the server's
 * logger carrying its request id; a pino child costs about 0.4 us and an object graph per request,
 * while a generation request logs nothing unless it fails (or prompts are logged). A
 * `DeferredChildLogger` holds the parent and the bindings and makes the pino child the first time
 * a log method, `child` or a level change needs it, so logged lines still carry the request id.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, LogFn } from 'pino';

const LOG_METHODS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export class DeferredChildLogger implements FastifyBaseLogger {
  declare fatal: LogFn;
  declare error: LogFn;
  declare warn: LogFn;
  declare info: LogFn;
  declare debug: LogFn;
  declare trace: LogFn;
  declare silent: LogFn;
  private made: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  /** The real child logger, made on the first call. */
  get logger(): FastifyBaseLogger {
    this.made ??= this.parent.child(this.bindings, this.options);
    return this.made;
  }

  get level(): string {
    return this.made?.level ?? this.options.level ?? this.parent.level;
  }

  set level(level: string) {
    this.logger.level = level;
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.logger.child(bindings, options);
  }
}

for (const method of LOG_METHODS) {
  DeferredChildLogger.prototype[method] = function (this: DeferredChildLogger, ...args: unknown[]) {
    Reflect.apply(this.logger[method], this.logger, args);
  } as LogFn;
}

/** A fastify `childLoggerFactory` making deferred children. */
export function deferredChildLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildLoggerOptions,
): FastifyBaseLogger {
  return new DeferredChildLogger(logger, bindings, options);
}
