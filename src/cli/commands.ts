import type { Command } from 'commander';
import { registerBenchCommand } from './bench-command.ts';
import { registerFrontendCommand } from './frontend-command.ts';
import { registerMockEngineCommand } from './mock-engine-command.ts';
import { registerRouterCommand } from './router-command.ts';
import { registerServeCommand } from './serve-command.ts';
import { registerWorkerCommand } from './worker-command.ts';

/**
 * Every subcommand registers itself here, one module per command (serve, frontend, worker, router,
 * bench, mock-engine), so main.ts stays a thin entry point.
 */
export function registerCommands(program: Command): void {
  registerBenchCommand(program);
  registerServeCommand(program);
  registerFrontendCommand(program);
  registerWorkerCommand(program);
  registerRouterCommand(program);
  registerMockEngineCommand(program);
}
