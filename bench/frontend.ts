/**
 * Frontend overhead, two figures:
 *
 * 1. HTTP throughput: autocannon against a spawned `kvgate serve` (2 workers x 4 ranks, speed-up 0
 *    = no engine delay, short chat prompts, 16 output tokens, so what is measured is the frontend,
 *    tokenizer, router, request plane and mock engine bookkeeping) and, in the same run and
 *    interleaved, against a bare fastify server that answers the same completion body from a
 *    constant (the baseline: HTTP + JSON parsing only). Prints both req/s and the ratio.
 * 2. Preprocessing of an 8k-token chat prompt in-process: chat template + tokenization + block
 *    hashing + KV routing decision (route + free on a warm index), p50 / p99.
 *
 * Last stdout line: {"serve_rps", "bare_rps", "ratio", "prep_8k_p50_ms", ...}.
 * A third server, the HTTP frontend alone over a backend that answers at once, splits the cost
 * between the frontend and what is behind it (router, runtime, worker, engine).
 *
 * Internal: `--bare-server` / `--frontend-only-server` run those servers (they print their URL).
 *
 * `--baseline <dir>` (another checkout of kvgate with its node_modules, e.g. `git worktree add`
 * of an older commit) also runs that checkout's `kvgate serve`, interleaved with this one's, for a
 * before/after comparison in one run (`baseline_*` fields).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import { MapModelRegistry, type ModelBackend } from '../src/frontend/backend.ts';
import { ChatMlTemplate } from '../src/frontend/chat-template.ts';
import { createFrontendServer, listenFrontend } from '../src/frontend/server.ts';
import type { RouterEvent } from '../src/kv/events.ts';
import { parseRouterConfig } from '../src/routing/config.ts';
import { createPolicy } from '../src/routing/policies/index.ts';
import { seededRandom } from '../src/routing/random.ts';
import { BlockHasher } from '../src/tokens/block-hash.ts';
import { DEFAULT_ENCODE_CACHE_TOKENS } from '../src/tokens/encode-cache.ts';
import { loadO200kTokenizer, type Tokenizer } from '../src/tokens/tokenizer.ts';
import { unpackU64s } from '../src/tokens/u64.ts';

const ROOT = join(import.meta.dirname, '..');
const MODEL = 'kvgate-mock';
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BLOCK_SIZE = 64;
const BASELINE_DIR = (() => {
  const at = process.argv.indexOf('--baseline');
  return at >= 0 ? process.argv[at + 1] : undefined;
})();

const REQUEST_BODY = JSON.stringify({
  model: MODEL,
  messages: [{ role: 'user', content: 'Hello! What is the capital of France?' }],
  max_tokens: 16,
});

async function bareServer(): Promise<void> {
  const body = process.env.BARE_BODY ?? '{}';
  const app = Fastify({ logger: false });
  app.post('/v1/chat/completions', async (_request, reply) =>
    reply.header('content-type', 'application/json; charset=utf-8').send(body),
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`bare listening on http://127.0.0.1:${port}\n`);
}

/**
 * The HTTP frontend alone over a backend that answers at once, in chunks as the mock engine sends
 * them (one token each, or with output kind 'final' the first token and then the rest): what the
 * frontend costs without router, runtime, worker and engine.
 */
async function frontendOnlyServer(): Promise<void> {
  const backend: ModelBackend = {
    model: MODEL,
    async *generate(request) {
      const n = request.sampling.maxTokens;
      const tokenAt = (i: number) => 1000 + ((i * 7919) % 1000);
      const usage = { promptTokens: request.tokenIds.length, completionTokens: n, cachedTokens: 0 };
      if (request.sampling.outputKind === 'final' && n > 1) {
        yield { tokenIds: [tokenAt(0)], workerId: 1n, dpRank: 0 };
        yield {
          tokenIds: Array.from({ length: n - 1 }, (_, i) => tokenAt(i + 1)),
          finishReason: 'length',
          usage,
        };
        return;
      }
      for (let i = 0; i < n; i++) {
        const tokenIds = [tokenAt(i)];
        if (i === n - 1) {
          yield i === 0
            ? { tokenIds, workerId: 1n, dpRank: 0, finishReason: 'length', usage }
            : { tokenIds, finishReason: 'length', usage };
        } else yield i === 0 ? { tokenIds, workerId: 1n, dpRank: 0 } : { tokenIds };
      }
    },
    health: () => ({ ready: true, instances: [{ workerId: 1n, role: 'aggregated', dataParallelSize: 1 }] }),
  };
  const app = createFrontendServer({
    registry: new MapModelRegistry([backend]),
    tokenizer: await loadO200kTokenizer(),
  });
  const { url } = await listenFrontend(app, { host: '127.0.0.1', port: 0 });
  process.stdout.write(`frontend-only listening on ${url}\n`);
}

interface Child {
  readonly url: string;
  readonly pid: number;
  stop(): void;
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc; NaN elsewhere). */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
  } catch {
    return Number.NaN;
  }
}

function spawnServer(
  args: string[],
  env: Record<string, string>,
  pattern: RegExp,
  cwd: string = ROOT,
): Promise<Child> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, KVGATE_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      const match = pattern.exec(out);
      if (match) resolve({ url: match[1], pid: child.pid ?? -1, stop: () => child.kill('SIGKILL') });
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code}) before listening`)));
    process.once('exit', () => child.kill('SIGKILL'));
  });
}

interface LoadResult {
  readonly rps: number;
  readonly errors: number;
  readonly p99: number;
  /** Server CPU time per answered request. */
  readonly cpuMsPerRequest: number;
}

async function load(server: Child, seconds: number): Promise<LoadResult> {
  const cpuBefore = cpuMs(server.pid);
  const result = await autocannon({
    url: `${server.url}/v1/chat/completions`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: REQUEST_BODY,
    connections: CONNECTIONS,
    duration: seconds,
  });
  return {
    rps: result.requests.average,
    errors: result.errors + result.timeouts + result.non2xx,
    p99: result.latency.p99,
    cpuMsPerRequest: (cpuMs(server.pid) - cpuBefore) / Math.max(1, result.requests.total),
  };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface PrepTimes {
  readonly p50: number;
  readonly p99: number;
  /** Process CPU time per prompt (less sensitive to other load on the machine than wall time). */
  readonly cpuP50: number;
  readonly tokenizeP50: number;
  readonly tokens: number;
}

/** Prompt texts for the preprocessing runs: a ~6k-token system prompt and ~2k-token questions. */
interface PromptTexts {
  readonly system: string;
  readonly questions: readonly string[];
}

const SYSTEM_TOKENS = 6_000;
const QUESTION_TOKENS = 2_180;
const QUESTIONS = 400;
const WARMUP = 40;

/** Real text: slices of this repository's own sources and README (a code assistant's prompt). */
function corpusTexts(tokenizer: Tokenizer): PromptTexts {
  const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .sort()
    .map((f) => join(ROOT, 'src', f));
  const corpus = [join(ROOT, 'README.md'), ...files].map((f) => readFileSync(f, 'utf8')).join('\n');
  const ids = tokenizer.encode(corpus);
  const random = seededRandom(4_096);
  const slice = (from: number, count: number) => tokenizer.decode(ids.slice(from, from + count));
  return {
    system: slice(0, SYSTEM_TOKENS),
    questions: Array.from({ length: QUESTIONS }, () =>
      slice(
        SYSTEM_TOKENS + Math.floor(random() * (ids.length - SYSTEM_TOKENS - QUESTION_TOKENS)),
        QUESTION_TOKENS,
      ),
    ),
  };
}

/** Worst case for the tokenizer's piece cache: pseudo-random words, new in every question. */
function randomWordTexts(tokenizer: Tokenizer): PromptTexts {
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const words = (seed: number, count: number) => {
    const random = seededRandom(seed);
    return Array.from({ length: count }, () =>
      Array.from(
        { length: 2 + Math.floor(random() * 8) },
        () => letters[Math.floor(random() ** 1.5 * 26)],
      ).join(''),
    ).join(' ');
  };
  // Tokens per word, from a sample drawn from another seed (so the prompts' words stay uncached).
  const sample = words(1, 2_000);
  const perWord = tokenizer.encode(sample).length / 2_000;
  return {
    system: words(2, Math.round(SYSTEM_TOKENS / perWord)),
    questions: Array.from({ length: QUESTIONS }, (_, q) =>
      words(100 + q, Math.round(QUESTION_TOKENS / perWord)),
    ),
  };
}

/**
 * Chat template + tokenize + hash + route (and free) of ~8k-token chat prompts: a system prompt
 * the index holds on one rank, and a different question each time. `cacheTokens` 0 (the headline
 * figure) tokenizes every turn each time; otherwise the template's turn cache holds the system
 * prompt after the first request, as the product's does.
 */
function preprocessing(tokenizer: Tokenizer, texts: PromptTexts, cacheTokens = 0): PrepTimes {
  const template = new ChatMlTemplate(tokenizer, { cacheTokens });
  const router = createPolicy('kv', { config: parseRouterConfig({ blockSize: BLOCK_SIZE }) });
  for (const workerId of [1n, 2n])
    router.addWorker(workerId, { dataParallelSize: 4, blockSize: BLOCK_SIZE, totalKvBlocks: 16_384 });
  const systemTokens = template.apply([{ role: 'system', content: texts.system }], {
    addGenerationPrompt: false,
  });
  const hasher = new BlockHasher({ blockSize: BLOCK_SIZE });
  const local = hasher.localHashes(systemTokens);
  const seq = unpackU64s(hasher.sequenceHashes(local));
  const localHashes = unpackU64s(local);
  const stored: RouterEvent = {
    workerId: 1n,
    event: {
      eventId: 0n,
      dpRank: 1,
      data: {
        kind: 'stored',
        parentHash: null,
        blocks: seq.map((blockHash, i) => ({ blockHash, tokensHash: localHashes[i] })),
      },
    },
  };
  const error = router.applyEvent(stored);
  if (error) throw error;
  const run = (q: number, timings?: { total: number[]; tokenize: number[]; cpu: number[] }) => {
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    const tokens = template.apply([
      { role: 'system', content: texts.system },
      { role: 'user', content: texts.questions[q] },
    ]);
    const tokenized = performance.now();
    const decision = router.route(`req-${q}`, tokens);
    router.free(`req-${q}`);
    const end = performance.now();
    if (decision.workerId !== 1n || decision.dpRank !== 1) throw new Error('the cached prefix was not found');
    const cpu = process.cpuUsage(cpuStart);
    timings?.cpu.push((cpu.user + cpu.system) / 1000);
    timings?.total.push(end - start);
    timings?.tokenize.push(tokenized - start);
    return tokens.length;
  };
  let tokens = 0;
  for (let i = 0; i < WARMUP; i++) tokens = run(i);
  const timings = { total: [] as number[], tokenize: [] as number[], cpu: [] as number[] };
  for (let i = WARMUP; i < QUESTIONS; i++) run(i, timings);
  timings.total.sort((a, b) => a - b);
  timings.tokenize.sort((a, b) => a - b);
  timings.cpu.sort((a, b) => a - b);
  return {
    cpuP50: percentile(timings.cpu, 50),
    p50: percentile(timings.total, 50),
    p99: percentile(timings.total, 99),
    tokenizeP50: percentile(timings.tokenize, 50),
    tokens,
  };
}

function describePrep(label: string, t: PrepTimes): string {
  return `8k-token chat preprocessing, ${label} (${t.tokens} tokens; template + tokenize + hash + route): p50 ${t.p50.toFixed(2)} ms, p99 ${t.p99.toFixed(2)} ms (tokenize alone p50 ${t.tokenizeP50.toFixed(2)} ms; CPU time p50 ${t.cpuP50.toFixed(2)} ms)`;
}

async function main(): Promise<void> {
  const tokenizer = await loadO200kTokenizer();
  const prepRandom = preprocessing(tokenizer, randomWordTexts(tokenizer));
  console.log(describePrep('pseudo-random words (uncached pieces)', prepRandom));
  const corpus = corpusTexts(tokenizer);
  const prep = preprocessing(tokenizer, corpus);
  console.log(describePrep("this repository's sources", prep));
  const prepCached = preprocessing(tokenizer, corpus, DEFAULT_ENCODE_CACHE_TOKENS);
  console.log(describePrep("this repository's sources, system prompt from the turn cache", prepCached));

  const serveArgs = ['bin/kvgate.js', 'serve', '--port', '0', '--speedup-ratio', '0', '--model', MODEL];
  const serve = await spawnServer(serveArgs, {}, /kvgate listening on (http:\/\/\S+)/);
  const baseline =
    BASELINE_DIR === undefined
      ? undefined
      : await spawnServer(serveArgs, {}, /kvgate listening on (http:\/\/\S+)/, BASELINE_DIR);
  const sample = await fetch(`${serve.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: REQUEST_BODY,
  });
  if (!sample.ok) throw new Error(`kvgate serve answered ${sample.status}: ${await sample.text()}`);
  // The bare and frontend-only servers run from a bundle built like the product's (no tsx at run
  // time), so that the three servers' figures compare like with like.
  const benchBundle = join(ROOT, 'build', 'bench', 'frontend.js');
  // Imported here, not at the top: the bundled servers themselves never load esbuild.
  const { buildBundle } = await import('../scripts/build.ts');
  await buildBundle(join(ROOT, 'bench', 'frontend.ts'), benchBundle);
  const bare = await spawnServer(
    [benchBundle, '--bare-server'],
    { BARE_BODY: await sample.text() },
    /bare listening on (http:\/\/\S+)/,
  );
  const frontendOnly = await spawnServer(
    [benchBundle, '--frontend-only-server'],
    {},
    /frontend-only listening on (http:\/\/\S+)/,
  );
  try {
    console.log(
      `warm-up (2 s each), then ${ROUNDS} interleaved rounds of ${SECONDS} s, ${CONNECTIONS} connections`,
    );
    await load(serve, 2);
    await load(bare, 2);
    await load(frontendOnly, 2);
    if (baseline) await load(baseline, 2);
    const baselineRuns: LoadResult[] = [];
    const serveRuns: LoadResult[] = [];
    const bareRuns: LoadResult[] = [];
    const frontendRuns: LoadResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const s = await load(serve, SECONDS);
      const b = await load(bare, SECONDS);
      const f = await load(frontendOnly, SECONDS);
      const old = baseline ? await load(baseline, SECONDS) : undefined;
      if (s.errors > 0 || b.errors > 0 || f.errors > 0 || (old?.errors ?? 0) > 0)
        throw new Error(
          `errors under load: serve ${s.errors}, bare ${b.errors}, frontend only ${f.errors}, baseline ${old?.errors ?? 0}`,
        );
      if (old) {
        baselineRuns.push(old);
        console.log(
          `round ${round + 1}: baseline serve (${BASELINE_DIR}) ${old.rps.toFixed(0)} req/s (p99 ${old.p99} ms, ${old.cpuMsPerRequest.toFixed(3)} CPU ms/req)`,
        );
      }
      serveRuns.push(s);
      bareRuns.push(b);
      frontendRuns.push(f);
      console.log(
        `round ${round + 1}: kvgate serve ${s.rps.toFixed(0)} req/s (p99 ${s.p99} ms, ${s.cpuMsPerRequest.toFixed(3)} CPU ms/req), bare fastify ${b.rps.toFixed(0)} req/s (p99 ${b.p99} ms, ${b.cpuMsPerRequest.toFixed(3)} CPU ms/req), frontend only ${f.rps.toFixed(0)} req/s (${f.cpuMsPerRequest.toFixed(3)} CPU ms/req)`,
      );
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const serveRps = mean(serveRuns.map((r) => r.rps));
    const bareRps = mean(bareRuns.map((r) => r.rps));
    const ratio = serveRps / bareRps;
    const serveCpu = mean(serveRuns.map((r) => r.cpuMsPerRequest));
    const bareCpu = mean(bareRuns.map((r) => r.cpuMsPerRequest));
    const frontendRps = mean(frontendRuns.map((r) => r.rps));
    const frontendCpu = mean(frontendRuns.map((r) => r.cpuMsPerRequest));
    console.log(
      `frontend alone over an instant backend: ${frontendRps.toFixed(0)} req/s, ${frontendCpu.toFixed(3)} CPU ms/req; so router + runtime + worker + engine ≈ ${(serveCpu - frontendCpu).toFixed(3)} CPU ms/req`,
    );
    console.log(
      `server CPU per request: kvgate serve ${serveCpu.toFixed(3)} ms, bare fastify ${bareCpu.toFixed(3)} ms (ratio ${(bareCpu / serveCpu).toFixed(3)}; less sensitive to other load on the machine)`,
    );
    console.log(
      `kvgate serve ${serveRps.toFixed(0)} req/s vs bare fastify ${bareRps.toFixed(0)} req/s: ratio ${ratio.toFixed(3)} (target >= 0.5)`,
    );
    console.log(
      `8k preprocessing p50 ${prep.p50.toFixed(2)} ms on source text, ${prepRandom.p50.toFixed(2)} ms on random words (target <= 5 ms)`,
    );
    console.log(
      JSON.stringify({
        serve_rps: Math.round(serveRps),
        bare_rps: Math.round(bareRps),
        ratio: Number(ratio.toFixed(3)),
        prep_8k_p50_ms: Number(prep.p50.toFixed(3)),
        serve_cpu_ms_per_req: Number(serveCpu.toFixed(4)),
        bare_cpu_ms_per_req: Number(bareCpu.toFixed(4)),
        cpu_ratio: Number((bareCpu / serveCpu).toFixed(3)),
        frontend_only_rps: Math.round(frontendRps),
        frontend_only_cpu_ms_per_req: Number(frontendCpu.toFixed(4)),
        ...(baselineRuns.length > 0
          ? {
              baseline_serve_rps: Math.round(mean(baselineRuns.map((r) => r.rps))),
              baseline_serve_cpu_ms_per_req: Number(
                mean(baselineRuns.map((r) => r.cpuMsPerRequest)).toFixed(4),
              ),
            }
          : {}),
        prep_8k_p99_ms: Number(prep.p99.toFixed(3)),
        prep_8k_cpu_p50_ms: Number(prep.cpuP50.toFixed(3)),
        prep_8k_tokens: prep.tokens,
        prep_8k_random_words_p50_ms: Number(prepRandom.p50.toFixed(3)),
        prep_8k_random_words_p99_ms: Number(prepRandom.p99.toFixed(3)),
        prep_8k_turn_cache_p50_ms: Number(prepCached.p50.toFixed(3)),
        connections: CONNECTIONS,
        seconds: SECONDS,
        rounds: ROUNDS,
        cpus: availableParallelism(),
        loadavg_1m: Number(loadavg()[0].toFixed(2)),
      }),
    );
  } finally {
    serve.stop();
    baseline?.stop();
    bare.stop();
    frontendOnly.stop();
  }
}

if (process.argv.includes('--bare-server')) {
  await bareServer();
} else if (process.argv.includes('--frontend-only-server')) {
  await frontendOnlyServer();
} else {
  await main();
}
