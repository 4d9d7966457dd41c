/**
 * `kvgate bench replay|gen`: replay a Mooncake trace through the routing policies and mock engines
 * in virtual time, or generate a synthetic trace.
 */
import { writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import cliProgress from 'cli-progress';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { generateTrace } from '../bench/generate.ts';
import { REPLAY_DEFAULTS, REPLAY_POLICIES, type ReplayProgress, runReplay } from '../bench/replay.ts';
import { headline, writeReport } from '../bench/report.ts';
import { formatTrace, MOONCAKE_BLOCK_SIZE, readTrace, TraceFormatError } from '../bench/trace.ts';
import { addRouterOptions, routerConfigFromOptions } from '../routing/config.ts';
import { fraction, nonNegativeInt, positiveInt, positiveNumber } from './arg-parsers.ts';

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected an integer');
  return n;
}

function policyList(value: string): string[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new InvalidArgumentError('expected at least one policy');
  for (const name of names) {
    if (!(REPLAY_POLICIES as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(`unknown policy "${name}" (known: ${REPLAY_POLICIES.join(', ')})`);
    }
  }
  if (new Set(names).size !== names.length) throw new InvalidArgumentError('a policy is listed twice');
  return names;
}

interface ReplayFlags {
  trace: string;
  workers: number;
  dpSize: number;
  rate: number;
  policy: string[];
  blockSize: number;
  traceBlockSize: number;
  numGpuBlocks: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  speedupRatio: number;
  seed: number;
  limit?: number;
  skipBad?: boolean;
  out?: string;
  progress: boolean;
}

function progressReporter(enabled: boolean): {
  onProgress: (p: ReplayProgress) => void;
  stop: () => void;
} {
  if (!enabled) return { onProgress: () => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: ' {policy} [{bar}] {percentage}% | {value}/{total} requests | {eta_formatted}',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let current = '';
  return {
    onProgress(p) {
      if (p.policy !== current) {
        if (current !== '') bar.stop();
        current = p.policy;
        bar.start(p.total, p.done, { policy: p.policy.padEnd(12) });
      } else {
        bar.update(p.done);
      }
    },
    stop: () => {
      if (current !== '') bar.stop();
    },
  };
}

async function replayAction(flags: ReplayFlags): Promise<void> {
  const parsed = await readTrace(flags.trace, {
    traceBlockSize: flags.traceBlockSize,
    skipBad: flags.skipBad === true,
    limit: flags.limit,
  });
  if (parsed.skipped.length > 0) {
    const first = parsed.skipped[0];
    process.stderr.write(
      `skipped ${parsed.skipped.length} bad line(s) of ${flags.trace}; first: line ${first.line}: ${first.reason}\n`,
    );
  }
  if (parsed.requests.length === 0) throw new Error(`${flags.trace} holds no valid request`);
  const routerFlags = flags as unknown as Record<string, unknown>;
  const router = routerConfigFromOptions(routerFlags);
  if (routerFlags.routerBlockSize !== undefined && router.blockSize !== flags.blockSize)
    throw new RangeError(
      `--router-block-size ${router.blockSize} differs from --block-size ${flags.blockSize}`,
    );
  const progress = progressReporter(flags.progress && process.stderr.isTTY === true);
  let result: Awaited<ReturnType<typeof runReplay>>;
  try {
    result = await runReplay(parsed, {
      source: basename(flags.trace),
      workers: flags.workers,
      dpSize: flags.dpSize,
      rate: flags.rate,
      policies: flags.policy,
      blockSize: flags.blockSize,
      traceBlockSize: flags.traceBlockSize,
      numGpuBlocks: flags.numGpuBlocks,
      maxNumSeqs: flags.maxNumSeqs,
      maxNumBatchedTokens: flags.maxNumBatchedTokens,
      speedupRatio: flags.speedupRatio,
      seed: flags.seed,
      limit: flags.limit ?? null,
      routerConfig: { ...router, blockSize: flags.blockSize },
      onProgress: progress.onProgress,
    });
  } finally {
    progress.stop();
  }
  const { report, timing } = result;
  for (const p of report.policies) {
    const t = timing.find((x) => x.policy === p.policy)!;
    process.stdout.write(
      `${p.policy.padEnd(13)} TTFT p50 ${p.ttftMs.p50.toFixed(1)} p90 ${p.ttftMs.p90.toFixed(1)} p99 ${p.ttftMs.p99.toFixed(1)} ms` +
        ` | ITL p50 ${p.itlMs.p50.toFixed(1)} ms | hit ${(100 * p.hitRate).toFixed(1)}%` +
        ` | ${p.outputTokensPerS.toFixed(0)} tok/s | imbalance ${p.loadImbalance.toFixed(2)}` +
        ` | preempted ${p.preemptions} | ${p.completed}/${p.requests} done | replay ${(t.wallMs / 1000).toFixed(2)} s wall, ${t.speedX.toFixed(0)}x\n`,
    );
  }
  process.stdout.write(`oracle        hit ${(100 * report.oracle.hitRate).toFixed(1)}% (infinite cache)\n`);
  if (flags.out) {
    const paths = await writeReport(flags.out, report);
    process.stdout.write(`wrote ${paths.json} and ${paths.html}\n`);
  }
  process.stdout.write(`${JSON.stringify(headline(report, result.replaySpeedX))}\n`);
}

interface GenFlags {
  out: string;
  seed: number;
  arrivals: number;
  rate: number;
  traceBlockSize: number;
  groups: number;
  prefixBlocks: number;
  suffixBlocks: number;
  conversations: number;
  turns: number;
  turnBlocks: number;
  conversationFraction: number;
  bestOf: number;
  bestOfFraction: number;
  outputLength: number;
}

async function genAction(flags: GenFlags): Promise<void> {
  const { out, ...options } = flags;
  const requests = generateTrace(options);
  await writeFile(out, formatTrace(requests));
  process.stdout.write(`wrote ${requests.length} requests to ${out}\n`);
}

/** Bad input (a malformed trace, a bad setting) ends the command with a one-line error, not a stack. */
function reportingErrors<T>(action: (flags: T) => Promise<void>): (flags: T) => Promise<void> {
  return async (flags) => {
    try {
      await action(flags);
    } catch (err) {
      if (!(err instanceof TraceFormatError || err instanceof RangeError || isFsError(err))) throw err;
      process.stderr.write(`error: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  };
}

function isFsError(err: unknown): boolean {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && 'syscall' in err;
}

export function registerBenchCommand(program: Command): void {
  const bench = program.command('bench').description('Trace replay benchmark and synthetic workloads');
  const d = REPLAY_DEFAULTS;

  const replay = bench
    .command('replay')
    .description('Replay a Mooncake trace in virtual time through routing policies and mock engines')
    .requiredOption('--trace <file>', 'Mooncake JSONL trace')
    .option('--workers <n>', 'workers', positiveInt, d.workers)
    .option('--dp-size <n>', 'data-parallel ranks per worker', positiveInt, d.dpSize)
    .option('--rate <x>', 'arrival-rate multiplier (timestamps are divided by it)', positiveNumber, d.rate)
    .addOption(
      new Option('--policy <list>', `comma-separated policies (${REPLAY_POLICIES.join(',')})`)
        .argParser(policyList)
        .default([...REPLAY_POLICIES], REPLAY_POLICIES.join(',')),
    )
    .option('--block-size <n>', 'KV block size of the engines and the router', positiveInt, d.blockSize)
    .option('--trace-block-size <n>', 'tokens per trace hash id', positiveInt, MOONCAKE_BLOCK_SIZE)
    .option('--num-gpu-blocks <n>', 'KV blocks per rank', positiveInt, d.numGpuBlocks)
    .option('--max-num-seqs <n>', 'running sequences per rank', positiveInt, d.maxNumSeqs)
    .option('--max-num-batched-tokens <n>', 'tokens per scheduler pass', positiveInt, d.maxNumBatchedTokens)
    .option('--speedup-ratio <x>', 'engine speed-up over the timing model', positiveNumber, d.speedupRatio)
    .option('--seed <n>', 'seed of the engines and the random policies', nonNegativeInt, d.seed)
    .option('--limit <n>', 'replay only the first n requests', positiveInt)
    .option('--skip-bad', 'skip and count malformed trace lines instead of failing')
    .option('--out <dir>', 'write report.json and report.html here')
    .option('--no-progress', 'no progress bar');
  addRouterOptions(replay).action(reportingErrors(replayAction));

  bench
    .command('gen')
    .description('Generate a synthetic trace (Mooncake format)')
    .requiredOption('--out <file>', 'output JSONL file')
    .option('--seed <n>', 'seed', integer, 1)
    .option('--arrivals <n>', 'arrivals (a best-of-N burst is one arrival)', positiveInt, 200)
    .option('--rate <x>', 'arrivals per second (Poisson)', positiveNumber, 10)
    .option('--trace-block-size <n>', 'tokens per hash id', positiveInt, MOONCAKE_BLOCK_SIZE)
    .option('--groups <n>', 'shared-prefix groups', positiveInt, 8)
    .option('--prefix-blocks <n>', 'blocks of each group system prompt', nonNegativeInt, 8)
    .option('--suffix-blocks <n>', 'private blocks after the system prompt', positiveInt, 2)
    .option('--conversations <n>', 'concurrent multi-turn conversations (0: none)', nonNegativeInt, 0)
    .option('--turns <n>', 'turns per conversation', positiveInt, 4)
    .option('--turn-blocks <n>', 'blocks each turn adds', positiveInt, 2)
    .option('--conversation-fraction <f>', 'share of arrivals that are conversation turns', fraction, 0.5)
    .option('--best-of <n>', 'prompts per best-of-N burst', positiveInt, 1)
    .option('--best-of-fraction <f>', 'share of arrivals that are best-of-N bursts', fraction, 0)
    .option('--output-length <n>', 'mean output tokens', positiveInt, 64)
    .action(reportingErrors(genAction));
}
