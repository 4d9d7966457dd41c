/**
 * Usage errors of every command, spawned: a bad combination, missing runtime settings or engine
 * options the engine refuses print `error: ...` (no stack) and exit with code 2.
 */
import { describe, expect, it } from 'vitest';
import { runKvgate } from './cli-process.ts';

const UNREACHABLE_RUNTIME = ['--nats', 'nats://127.0.0.1:1', '--etcd', '127.0.0.1:1'];

describe.concurrent('usage errors exit with code 2 and a one-line message', () => {
  it.each([
    {
      what: 'worker with engine options the engine refuses (checked before connecting)',
      args: ['worker', '--model', 'm', '--block-size', '70000', ...UNREACHABLE_RUNTIME],
      message: 'engine option blockSize',
    },
    {
      what: 'frontend with NATS but no etcd',
      args: ['frontend', '--nats', 'nats://127.0.0.1:1'],
      message: 'a distributed runtime needs both NATS and etcd',
    },
    {
      what: 'router without an endpoint',
      args: ['router', '--block-size', '16', ...UNREACHABLE_RUNTIME],
      message: 'give the workers’ endpoint to route',
    },
    {
      what: 'router with a bad runtime setting',
      args: ['router', '--endpoint', 'ns.backend.generate', '--block-size', '16', '--lease-ttl', '0'],
      message: '--lease-ttl: expected a whole number of seconds',
    },
    {
      what: 'mock-engine with an SGLang-only flag on the vLLM API',
      args: ['mock-engine', '--api', 'vllm', '--disaggregation-mode', 'prefill'],
      message: '--disaggregation-mode is for the SGLang API',
    },
    {
      what: 'serve with engine options the engine refuses',
      args: ['serve', '--port', '0', '--block-size', '70000', '--max-num-batched-tokens', '70000'],
      message: 'engine option blockSize',
    },
  ])('$what', async ({ args, message }) => {
    const result = await runKvgate(args);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(`error: ${message}`);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
