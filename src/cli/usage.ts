/**
 * Usage errors of every kvgate command: a bad flag, a bad `KVGATE_*` value or a bad combination
 * prints `error: ...` (no stack) and exits with code 2; `--help` and `--version` exit 0. Any other
 * failure to start prints `error: ...` and exits 1 (startOrExit).
 */
import type { Command, CommanderError } from 'commander';
import { EngineError } from '../engine/errors.ts';
import { errorMessage } from '../runtime/errors.ts';

const USAGE_EXIT_CODE = 2;

/** A usage error found after commander parsed the flags (combinations, files, runtime settings). */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
}

/** A CliUsageError, or engine options the engine refused (they come straight from the flags). */
function isUsageError(error: unknown): error is Error {
  return (
    error instanceof CliUsageError ||
    (error instanceof EngineError && error.code === 'ENGINE_INVALID_OPTIONS')
  );
}

/** Commander's own usage errors (bad flag, bad environment value, unknown option) exit 2, not 1. */
export function exitTwoOnUsageError(cmd: Command): Command {
  return cmd.exitOverride((error: CommanderError) => {
    process.exit(error.exitCode === 0 ? 0 : USAGE_EXIT_CODE);
  });
}

/** Runs a command action; a usage error (isUsageError) prints `error: ...` and exits 2. */
export function usageGuard<A extends unknown[]>(
  action: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      if (!isUsageError(error)) throw error;
      process.stderr.write(`error: ${error.message}\n`);
      process.exit(USAGE_EXIT_CODE);
    }
  };
}

/**
 * Runs a start-up step; a failure that is not a usage error (those go on to usageGuard) prints
 * `error: <prefix><message>` and exits with code 1. `onFailure` runs first (log it, release what
 * was opened); a failure of its own is ignored.
 */
export async function startOrExit<T>(
  start: () => Promise<T>,
  prefix = '',
  onFailure?: (error: unknown) => unknown,
): Promise<T> {
  try {
    return await start();
  } catch (error) {
    if (isUsageError(error)) throw error;
    try {
      await onFailure?.(error);
    } catch {
      // The process exits below with the original error; a failed clean-up adds nothing.
    }
    process.stderr.write(`error: ${prefix}${errorMessage(error)}\n`);
    process.exit(1);
  }
}
