/**
 * `kvgate mock-engine`: the mock engine behind SGLang's or vLLM's HTTP API and ZMQ KV-event
 * publisher, so `kvgate worker --engine sglang|vllm` can be tried and tested without GPUs. Prints
 * one JSON line with its endpoints once it listens; `GET /debug/requests` lists the rank fields,
 * bootstrap room and prefill rank each request carried.
 */
import { type Command, Option } from 'commander';
import { type DisaggregationMode, FakeEngineServer } from '../engine/fakes/fake-engine-server.ts';
import { onShutdownSignal } from '../util/shutdown.ts';
import { nonNegativeNumber, port, positiveInt } from './arg-parsers.ts';
import { CliUsageError, exitTwoOnUsageError, startOrExit, usageGuard } from './usage.ts';

interface MockEngineFlags {
  api: 'sglang' | 'vllm';
  host: string;
  port: number;
  zmqPort?: number;
  replayPort?: number;
  dpSize: number;
  disaggregationMode: DisaggregationMode;
  bootstrapPort: number;
  model: string;
  blockSize: number;
  numGpuBlocks: number;
  speedupRatio: number;
}

export function registerMockEngineCommand(program: Command): void {
  const cmd = program
    .command('mock-engine')
    .description(
      'the mock engine behind SGLang’s or vLLM’s HTTP API and ZMQ KV events (for trying the engine adapters)',
    )
    .addOption(
      new Option('--api <api>', 'which engine to imitate').choices(['sglang', 'vllm']).makeOptionMandatory(),
    )
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'HTTP port (0 = any)', port, 30000)
    .option('--zmq-port <port>', 'KV-event PUB port of rank 0 (rank r: + r); omit for no KV events', port)
    .option('--replay-port <port>', 'KV-event replay ROUTER port of rank 0 (rank r: + r)', port)
    .option('--dp-size <n>', 'data-parallel ranks', positiveInt, 1)
    .addOption(
      new Option('--disaggregation-mode <mode>', 'SGLang API: null, prefill or decode')
        .choices(['null', 'prefill', 'decode'])
        .default('null'),
    )
    .option('--bootstrap-port <port>', 'prefill mode: bootstrap server port', port, 8998)
    .option('--model <name>', 'served model name', 'fake-model')
    .option('--block-size <tokens>', 'page size / KV block size', positiveInt, 16)
    .option('--num-gpu-blocks <n>', 'KV blocks per rank', positiveInt, 4096)
    .option('--speedup-ratio <x>', 'simulated time runs x times faster; 0 = no delay', nonNegativeNumber, 0);
  exitTwoOnUsageError(cmd);
  cmd.action(
    usageGuard(async (flags: MockEngineFlags) => {
      if (flags.api === 'vllm' && flags.disaggregationMode !== 'null')
        throw new CliUsageError('--disaggregation-mode is for the SGLang API');
      const server = await startOrExit(() =>
        FakeEngineServer.start({
          api: flags.api,
          host: flags.host,
          port: flags.port,
          ...(flags.zmqPort !== undefined ? { zmqPort: flags.zmqPort } : {}),
          ...(flags.replayPort !== undefined ? { replayPort: flags.replayPort } : {}),
          dataParallelSize: flags.dpSize,
          disaggregationMode: flags.disaggregationMode,
          bootstrapPort: flags.bootstrapPort,
          modelName: flags.model,
          engine: {
            blockSize: flags.blockSize,
            numGpuBlocks: flags.numGpuBlocks,
            speedupRatio: flags.speedupRatio,
          },
        }),
      );
      process.stdout.write(
        `${JSON.stringify({
          ready: true,
          api: flags.api,
          url: server.url,
          dpSize: flags.dpSize,
          disaggregationMode: flags.disaggregationMode,
          ...(server.bootstrapPort !== null ? { bootstrapPort: server.bootstrapPort } : {}),
          ...(flags.zmqPort !== undefined ? { kvEvents: `tcp://${flags.host}:${flags.zmqPort}` } : {}),
          ...(flags.replayPort !== undefined ? { kvReplay: `tcp://${flags.host}:${flags.replayPort}` } : {}),
        })}\n`,
      );
      onShutdownSignal(() => server.close());
    }),
  );
}
