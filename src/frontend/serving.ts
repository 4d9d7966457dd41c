/**
 * Serves a validated, tokenized generation request: runs its choices against the model backend
 * and answers as one JSON body or as an SSE stream ending in `data: [DONE]`, or (for
 * `query_instance_id`) answers with the routing decision without generating.
 *
 * Failure rules: an error before the first token is a normal HTTP error (status from the
 * `ApiError`/`BackendError`); an error after the stream has started is sent as a final
 * `data: {"error": {...}}` event followed by `data: [DONE]`; a client that disconnects cancels the
 * backend's signal at once.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { SamplingOptions, Usage } from '../protocol/generate.ts';
import { stringifyLossless } from '../runtime/codec.ts';
import type { Tokenizer } from '../tokens/tokenizer.ts';
import { type Cancellation, CancelSource } from '../util/cancel.ts';
import { randomHexId } from '../util/random-id.ts';
import type { BackendRequest, ModelBackend } from './backend.ts';
import { ApiError, toApiError } from './errors.ts';
import {
  ChoiceCancel,
  type ChoiceDelta,
  type ChoiceOutcome,
  type ChoiceRun,
  collectChoice,
  mergeChoices,
  runChoice,
} from './generation.ts';
import type { Endpoint, FrontendMetrics, RequestTimer } from './metrics.ts';
import { type NvextResponse, nvextFromDecision, type ParsedNvext, withNvext } from './nvext.ts';
import {
  type ChoiceResult,
  chunkResponse,
  completeResponseJson,
  type ResponseHeader,
  type ResponseKind,
  routingResponse,
  usageOut,
} from './responses.ts';
import { SseWriter } from './sse.ts';

export interface GenerationPlan {
  readonly kind: ResponseKind;
  readonly endpoint: Endpoint;
  readonly model: string;
  readonly backend: ModelBackend;
  readonly tokenizer: Tokenizer;
  /** One prompt for chat; one or more for completions. */
  readonly prompts: readonly (readonly number[])[];
  /** Choices per prompt. */
  readonly n: number;
  /** Sampling for each prompt (max tokens may differ by prompt length). */
  readonly sampling: readonly SamplingOptions[];
  readonly stopStrings: readonly string[];
  readonly nvext: ParsedNvext;
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

/** Cancellation reasons (made once: `abort()` without a reason builds a DOMException with a stack each time). */
export const CLIENT_GONE = new Error('the client disconnected');
export const REQUEST_ENDED = new Error('the request has ended');

export interface ServeContext {
  readonly metrics: FrontendMetrics;
  readonly log: FastifyBaseLogger;
}

/** Everything one request's serving path needs. */
interface Scope {
  readonly plan: GenerationPlan;
  readonly header: ResponseHeader;
  readonly reply: FastifyReply;
  readonly signal: Cancellation;
  readonly timer: RequestTimer;
  readonly log: FastifyBaseLogger;
  /** Every choice ended on its backend's final chunk: nothing is left running to abort. */
  settled: boolean;
}

export async function serveGeneration(
  plan: GenerationPlan,
  reply: FastifyReply,
  context: ServeContext,
): Promise<void> {
  const header: ResponseHeader = {
    id: `${plan.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomHexId()}`,
    created: Math.floor(Date.now() / 1000),
    model: plan.model,
  };
  // Not an AbortController: that costs several microseconds per request (an EventTarget, and an
  // Event on abort); the backends take any Cancellation.
  const controller = new CancelSource();
  const onClose = abortUnlessFinished.bind(controller, reply.raw);
  reply.raw.on('close', onClose);
  const timer = context.metrics.startRequest(plan.model, plan.endpoint, plan.stream);
  const scope: Scope = {
    plan,
    header,
    reply,
    signal: controller.signal,
    timer,
    log: context.log,
    settled: false,
  };
  try {
    if (plan.nvext.queryOnly) await serveQuery(scope);
    else if (plan.stream) await serveStream(scope);
    else await serveUnary(scope);
  } catch (error) {
    timer.finish('error', toApiError(error).status);
    throw error;
  } finally {
    // Each path finishes the timer itself; what is left unfinished here was cut short by the client.
    timer.finish('cancelled', 499);
    reply.raw.off('close', onClose);
    // The client is gone and nothing was sent: tell fastify not to wait for a response.
    if (controller.signal.aborted && !reply.sent) reply.hijack();
    // Whatever happened, nothing keeps running for this request (skipped when every backend stream
    // has already ended by itself: nothing is left to tell).
    if (!scope.settled) controller.abort(REQUEST_ENDED);
  }
}

/** Converts, counts and (for server errors) logs a failure; the caller sends the result. */
function failure(scope: Scope, error: unknown): ApiError {
  const apiError = toApiError(error);
  if (apiError.status >= 500)
    scope.log.error({ err: error, requestId: scope.header.id }, 'generation failed');
  scope.timer.finish('error', apiError.status);
  return apiError;
}

function backendRequests(plan: GenerationPlan, header: ResponseHeader): BackendRequest[] {
  const { routing, routerOverrides, agentHints } = plan.nvext;
  const requests: BackendRequest[] = [];
  for (let promptIndex = 0; promptIndex < plan.prompts.length; promptIndex++) {
    const sampling = plan.sampling[promptIndex];
    for (let i = 0; i < plan.n; i++) {
      const index = promptIndex * plan.n + i;
      const request: { -readonly [K in keyof BackendRequest]: BackendRequest[K] } = {
        requestId: `${header.id}-${index}`,
        model: plan.model,
        tokenIds: plan.prompts[promptIndex],
        sampling:
          sampling.seed === undefined || index === 0
            ? sampling
            : { ...sampling, seed: sampling.seed + index },
        routing,
      };
      if (routerOverrides) request.routerOverrides = routerOverrides;
      if (agentHints) request.agentHints = agentHints;
      requests.push(request);
    }
  }
  return requests;
}

function startChoices({ plan, header, signal, timer }: Scope): AsyncGenerator<ChoiceDelta> {
  const streams = backendRequests(plan, header).map((request, index) =>
    runChoice(choiceRun(plan, timer, request, index, signal)),
  );
  // One choice (the usual case) is its own stream: no merging layer for every delta to pass through.
  return streams.length === 1 ? streams[0] : mergeChoices(streams);
}

/** Sums usage the OpenAI way: each prompt's tokens once, every choice's completion tokens. */
class UsageTotal {
  private prompt = 0;
  private completion = 0;
  private cached = 0;

  constructor(private readonly n: number) {}

  add(index: number, usage: Usage): void {
    if (index % this.n === 0) {
      this.prompt += usage.promptTokens;
      this.cached += usage.cachedTokens;
    }
    this.completion += usage.completionTokens;
  }

  get value(): Usage {
    return { promptTokens: this.prompt, completionTokens: this.completion, cachedTokens: this.cached };
  }
}

/** The response closed: unless it was sent in full, the client is gone (bound to the request's CancelSource). */
function abortUnlessFinished(this: CancelSource, response: ServerResponse): void {
  if (!response.writableFinished) this.abort(CLIENT_GONE);
}

function choiceRun(
  plan: GenerationPlan,
  timer: RequestTimer,
  request: BackendRequest,
  index: number,
  signal: Cancellation,
): ChoiceRun {
  const { backend, tokenizer, stopStrings } = plan;
  return { index, backend, request, tokenizer, stopStrings, signal, timer };
}

function collectOne(scope: Scope, request: BackendRequest, index: number, signal: Cancellation) {
  return collectChoice(choiceRun(scope.plan, scope.timer, request, index, signal));
}

async function serveUnary(scope: Scope): Promise<void> {
  const { plan, header, reply, signal, timer } = scope;
  const requests = backendRequests(plan, header);
  let outcomes: (ChoiceOutcome | undefined)[];
  try {
    // One choice (the usual case) runs on the request's own signal, which serveGeneration cancels
    // once the request is over; several get one signal each, ended with their choice. An outcome
    // is undefined when the request was cut short.
    outcomes =
      requests.length === 1
        ? [await collectOne(scope, requests[0], 0, signal)]
        : await Promise.all(
            requests.map((request, index) => {
              const choice = new ChoiceCancel(signal);
              return collectOne(scope, request, index, choice).finally(() => choice.end());
            }),
          );
  } catch (error) {
    if (signal.aborted) return;
    const apiError = failure(scope, error);
    reply.code(apiError.status).send(apiError.body());
    return;
  }
  if (signal.aborted) return;
  const usage = new UsageTotal(plan.n);
  const results: ChoiceResult[] = [];
  let nvext: NvextResponse | undefined;
  let settled = true;
  for (const outcome of outcomes) {
    if (outcome === undefined) return;
    usage.add(outcome.index, outcome.usage);
    results.push(outcome);
    nvext ??= outcome.nvext;
    settled &&= outcome.backendDone;
  }
  scope.settled = settled;
  const total = usage.value;
  timer.finish('success', 200, total);
  // send() writes the response at once: nothing to wait for (the reply is a thenable, and awaiting
  // it costs ticks).
  reply
    .code(200)
    .header('content-type', 'application/json; charset=utf-8')
    .send(completeResponseJson(plan.kind, header, results, total, nvext));
}

async function serveStream(scope: Scope): Promise<void> {
  const { plan, header, reply, signal, timer } = scope;
  const deltas = startChoices(scope);
  // Wait for the first delta before sending headers, so errors raised while routing (a pinned
  // rank out of range, no workers) still get their own HTTP status.
  let first: IteratorResult<ChoiceDelta>;
  try {
    first = await deltas.next();
  } catch (error) {
    if (signal.aborted) return;
    const apiError = failure(scope, error);
    reply.code(apiError.status).send(apiError.body());
    return;
  }
  if (signal.aborted) return;
  reply.hijack();
  const sse = new SseWriter(reply.raw);
  sse.open();
  const usage = new UsageTotal(plan.n);
  const started = new Set<number>();
  const usageField = plan.includeUsage ? { usage: null } : {};
  const write = async (delta: ChoiceDelta): Promise<void> => {
    const role = plan.kind === 'chat' && !started.has(delta.index);
    started.add(delta.index);
    if (role || delta.text !== '' || delta.nvext) {
      const body = chunkResponse(
        plan.kind,
        header,
        [{ index: delta.index, role, text: delta.text }],
        usageField,
      );
      await sse.data(withNvext(JSON.stringify(body), delta.nvext));
    }
    if (delta.finishReason) {
      if (delta.usage) usage.add(delta.index, delta.usage);
      const body = chunkResponse(
        plan.kind,
        header,
        [{ index: delta.index, finishReason: delta.finishReason }],
        usageField,
      );
      await sse.data(JSON.stringify(body));
    }
  };
  try {
    if (!first.done) await write(first.value);
    for await (const delta of deltas) {
      if (sse.isClosed) break;
      await write(delta);
    }
    if (signal.aborted || sse.isClosed) return;
    if (plan.includeUsage) {
      await sse.data(JSON.stringify(chunkResponse(plan.kind, header, [], { usage: usageOut(usage.value) })));
    }
    timer.finish('success', 200, usage.value);
    await sse.done();
  } catch (error) {
    if (signal.aborted || sse.isClosed) return;
    const apiError = failure(scope, error);
    await sse.data(JSON.stringify(apiError.body()));
    await sse.done();
  } finally {
    sse.end();
  }
}

async function serveQuery(scope: Scope): Promise<void> {
  const { plan, header, reply, signal, timer } = scope;
  const { backend } = plan;
  if (!backend.route) {
    throw new ApiError(`Model '${plan.model}' cannot answer query_instance_id: its backend has no router.`, {
      status: 400,
      code: 'unsupported',
      param: 'nvext.annotations',
    });
  }
  const [request] = backendRequests(plan, header);
  const started = performance.now();
  let nvext: NvextResponse;
  try {
    const decision = await backend.route(request, signal);
    timer.routing((performance.now() - started) / 1000);
    nvext = nvextFromDecision(decision, request.tokenIds);
  } catch (error) {
    if (signal.aborted) return;
    const apiError = failure(scope, error);
    reply.code(apiError.status).send(apiError.body());
    return;
  }
  timer.finish('success', 200);
  if (!plan.stream) {
    reply
      .code(200)
      .header('content-type', 'application/json; charset=utf-8')
      .send(stringifyLossless(routingResponse(plan.kind, header, nvext)));
    return;
  }
  reply.hijack();
  const sse = new SseWriter(reply.raw);
  sse.open();
  // Dynamo's shape: each value is a JSON string on a comment line under a named event.
  await sse.annotation('worker_instance_id', JSON.stringify(String(nvext.worker_id)));
  await sse.annotation('dp_rank', JSON.stringify(String(nvext.dp_rank)));
  if (nvext.prefill_worker_id !== undefined) {
    await sse.annotation('prefill_worker_instance_id', JSON.stringify(String(nvext.prefill_worker_id)));
    await sse.annotation('prefill_dp_rank', JSON.stringify(String(nvext.prefill_dp_rank)));
  }
  await sse.annotation('overlap_blocks', JSON.stringify(String(nvext.overlap_blocks)));
  await sse.annotation('token_data', JSON.stringify(JSON.stringify(request.tokenIds)));
  await sse.done();
}
