import { type Logger, pino } from 'pino';

export type { Logger };

/** The process logger. Level from KVGATE_LOG_LEVEL (default info; tests default to silent). */
export const log: Logger = pino({
  name: 'kvgate',
  level: process.env.KVGATE_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info'),
});
