import { Command } from 'commander';
import { registerCommands } from './commands.ts';

const program = new Command();
program
  .name('kvgate')
  .description(
    'KV-cache-aware, data-parallel-rank-aware router and OpenAI-compatible gateway for LLM inference',
  )
  .version('0.1.0')
  .showHelpAfterError();

registerCommands(program);

await program.parseAsync(process.argv);
