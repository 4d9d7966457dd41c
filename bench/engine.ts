/**
 * Mock engine throughput on a virtual clock: 1,000 requests of 2,048 prompt tokens and 128 output
 * tokens on one engine of 8 data-parallel ranks (Dynamo mocker defaults otherwise), all arriving at
 * t = 0. Reports simulated output tokens per wall-clock second and wall µs per simulated token.
 *
 * Measured path: the callback API (`submit` + RequestSink), the clock run synchronously to idle.
 * Baseline, same run, same workload: the async-iterable API (`generate` + for await per request),
 * with the event loop turned after every clock event so consumers read as a live server would.
 * baseline_ratio = baseline µs per token / measured µs per token.
 *
 * Usage: npm run bench:engine [-- --requests N --runs N]
 */
import { availableParallelism, loadavg } from 'node:os';
import { DataParallelEngine } from '../src/engine/data-parallel-engine.ts';
import type { RequestResult, RequestSink } from '../src/engine/sequence.ts';
import type { GenerateChunk, GenerateRequest } from '../src/protocol/generate.ts';
import { VirtualClock } from '../src/util/virtual-clock.ts';

const args = process.argv.slice(2);
function flag(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

const REQUESTS = flag('requests', 1000);
const RUNS = flag('runs', 5);
const PROMPT = 2048;
const OUTPUT = 128;
const RANKS = 8;

/** Prompts as Uint32Array, as the trace replay passes them (the engine hashes them without a copy). */
function workload(count: number, salt: number): GenerateRequest[] {
  const requests: GenerateRequest[] = [];
  let x = 0x9e3779b9 ^ salt;
  for (let r = 0; r < count; r++) {
    const prompt = new Uint32Array(PROMPT);
    for (let i = 0; i < PROMPT; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      prompt[i] = (x >>> 0) % 128_000;
    }
    requests.push({
      requestId: `req-${salt}-${r}`,
      tokenIds: prompt as unknown as readonly number[],
      sampling: { maxTokens: OUTPUT, ignoreEos: true },
    });
  }
  return requests;
}

function newEngine(clock: VirtualClock): DataParallelEngine {
  return new DataParallelEngine({ clock, dataParallelSize: RANKS, seed: 1 });
}

interface RunResult {
  wallMs: number;
  /** Process CPU time (user + system, all threads) over the run. */
  cpuMs: number;
  tokens: number;
  simulatedMs: number;
  events: number;
}

function runCallbacks(requests: GenerateRequest[]): RunResult {
  const clock = new VirtualClock();
  const engine = newEngine(clock);
  let events = 0;
  engine.onKvEvent(() => {
    events++;
  });
  let tokens = 0;
  let finished = 0;
  const sink: RequestSink = {
    onToken() {
      tokens++;
    },
    onFinish(result: RequestResult) {
      if (result.reason !== 'length') throw new Error(`request ended with ${result.reason}`);
      finished++;
    },
  };
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (const request of requests) engine.submit(request, sink);
  clock.runUntilIdle();
  const wallMs = performance.now() - start;
  const cpuUsed = process.cpuUsage(cpu);
  if (finished !== requests.length) throw new Error(`only ${finished} of ${requests.length} finished`);
  engine.close();
  return { wallMs, cpuMs: (cpuUsed.user + cpuUsed.system) / 1000, tokens, simulatedMs: clock.now(), events };
}

async function runAsyncIterables(requests: GenerateRequest[]): Promise<RunResult> {
  const clock = new VirtualClock();
  const engine = newEngine(clock);
  let events = 0;
  engine.onKvEvent(() => {
    events++;
  });
  let tokens = 0;
  const consume = async (stream: AsyncIterable<GenerateChunk>): Promise<void> => {
    for await (const chunk of stream) {
      tokens += chunk.tokenIds.length;
      if (chunk.finishReason !== undefined && chunk.finishReason !== 'length')
        throw new Error(`request ended with ${chunk.finishReason}`);
    }
  };
  const cpu = process.cpuUsage();
  const start = performance.now();
  const consumers = requests.map((request) => consume(engine.generate(request)));
  for (let due = clock.nextDue(); due !== undefined; due = clock.nextDue()) {
    clock.runUntil(due);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await Promise.all(consumers);
  const wallMs = performance.now() - start;
  const cpuUsed = process.cpuUsage(cpu);
  engine.close();
  return { wallMs, cpuMs: (cpuUsed.user + cpuUsed.system) / 1000, tokens, simulatedMs: clock.now(), events };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const expectedTokens = REQUESTS * OUTPUT;
  console.log(
    `engine bench: ${REQUESTS} requests x (${PROMPT} prompt + ${OUTPUT} output) tokens, ${RANKS} ranks, virtual clock, ${RUNS} runs each (median)`,
  );
  // Warm-up (JIT, WASM hash kernel): one full untimed run of each API on its own prompts.
  runCallbacks(workload(REQUESTS, 1001));
  await runAsyncIterables(workload(REQUESTS, 1002));

  const callback: RunResult[] = [];
  const iterable: RunResult[] = [];
  // Fresh prompts for every run (no run benefits from another's cache), made before any timing.
  const workloads = Array.from({ length: 2 * RUNS }, (_, i) => workload(REQUESTS, i));
  for (let run = 0; run < RUNS; run++) {
    callback.push(runCallbacks(workloads[2 * run]));
    iterable.push(await runAsyncIterables(workloads[2 * run + 1]));
  }
  for (const r of [...callback, ...iterable])
    if (r.tokens !== expectedTokens) throw new Error(`expected ${expectedTokens} tokens, got ${r.tokens}`);

  const wallCallback = median(callback.map((r) => r.wallMs));
  const cpuCallback = median(callback.map((r) => r.cpuMs));
  const bestCallback = Math.min(...callback.map((r) => r.wallMs));
  const wallIterable = median(iterable.map((r) => r.wallMs));
  const usPerToken = (wallCallback * 1000) / expectedTokens;
  const usPerTokenBaseline = (wallIterable * 1000) / expectedTokens;
  const simTokensPerS = expectedTokens / (wallCallback / 1000);
  const simulatedS = callback[0].simulatedMs / 1000;

  console.log(`simulated time: ${simulatedS.toFixed(2)} s of engine time; ${callback[0].events} KV events`);
  console.log(
    `callback API (measured):       ${wallCallback.toFixed(1)} ms wall, ${usPerToken.toFixed(3)} us/token, ${(simTokensPerS / 1e6).toFixed(2)} M sim tokens/s, ${(simulatedS / (wallCallback / 1000)).toFixed(0)}x real time`,
  );
  console.log(
    `  runs (wall ms): ${callback.map((r) => r.wallMs.toFixed(0)).join(', ')}; best ${((bestCallback * 1000) / expectedTokens).toFixed(3)} us/token; CPU ${((cpuCallback * 1000) / expectedTokens).toFixed(3)} us/token (median; all threads, GC included)`,
  );
  console.log(
    `  machine load average: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} on ${availableParallelism()} cores`,
  );
  console.log(
    `async iterables (baseline):    ${wallIterable.toFixed(1)} ms wall, ${usPerTokenBaseline.toFixed(3)} us/token`,
  );
  console.log(`baseline / measured: ${(usPerTokenBaseline / usPerToken).toFixed(2)}x; target <= 2 us/token`);
  console.log(
    JSON.stringify({
      sim_tokens_per_s: Math.round(simTokensPerS),
      us_per_token: Number(usPerToken.toFixed(4)),
      baseline_ratio: Number((usPerTokenBaseline / usPerToken).toFixed(3)),
      baseline: 'same workload through generate() async iterables, event loop turned per clock event',
      baseline_us_per_token: Number(usPerTokenBaseline.toFixed(4)),
      cpu_us_per_token: Number(((cpuCallback * 1000) / expectedTokens).toFixed(4)),
      best_us_per_token: Number(((bestCallback * 1000) / expectedTokens).toFixed(4)),
      requests: REQUESTS,
      ranks: RANKS,
      simulated_s: Number(simulatedS.toFixed(3)),
    }),
  );
}

await main();
