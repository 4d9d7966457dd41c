/**
 * Preprocessing: a validated OpenAI body becomes a generation plan in token ids, tokenized exactly
 * as the engine sees it (chat bodies through the model's chat template), with max tokens, stop
 * conditions and seeds resolved and the nvext routing hints parsed.
 */
import type { OutputKind, SamplingOptions } from '../protocol/generate.ts';
import type { Tokenizer } from '../tokens/tokenizer.ts';
import type { ModelBackend } from './backend.ts';
import { ChatMlTemplate, type ChatTemplate, type TemplateMessage } from './chat-template.ts';
import { ApiError, invalidRequest } from './errors.ts';
import { parseNvext, type RequestHeaders } from './nvext.ts';
import type { ChatCompletionBody, ChatMessageBody, CompletionBody } from './protocol.ts';
import type { GenerationPlan } from './serving.ts';

export interface PreprocessOptions {
  /** Chat max tokens when the request sets none (further capped by the context length). */
  readonly defaultMaxTokens: number;
}

/** Most generations one request may start (prompts × n). */
export const MAX_CHOICES = 256;

/** OpenAI's documented default for /v1/completions. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

const templates = new WeakMap<Tokenizer, ChatTemplate>();

export function chatTemplateFor(backend: ModelBackend, tokenizer: Tokenizer): ChatTemplate {
  if (backend.chatTemplate) return backend.chatTemplate;
  let template = templates.get(tokenizer);
  if (!template) {
    template = new ChatMlTemplate(tokenizer);
    templates.set(tokenizer, template);
  }
  return template;
}

export function chatPlan(
  body: ChatCompletionBody,
  backend: ModelBackend,
  tokenizer: Tokenizer,
  options: PreprocessOptions,
  headers?: RequestHeaders,
): GenerationPlan {
  const template = chatTemplateFor(backend, tokenizer);
  const prompt = template.apply(body.messages.map(templateMessage), {
    addGenerationPrompt: body.add_generation_prompt ?? true,
  });
  const requested = body.max_completion_tokens ?? body.max_tokens ?? undefined;
  const param = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = resolveMaxTokens(prompt.length, requested, options.defaultMaxTokens, backend, param);
  const stops = stopStrings(body.stop);
  const stream = body.stream ?? false;
  return {
    kind: 'chat',
    endpoint: 'chat_completions',
    model: backend.model,
    backend,
    tokenizer,
    prompts: [prompt],
    n: body.n ?? 1,
    sampling: [sampling(body, maxTokens, tokenizer, template.stopTokenIds, outputKind(stream, stops))],
    stopStrings: stops,
    nvext: parseNvext(body.nvext, body.data_parallel_rank, headers),
    stream,
    includeUsage: body.stream_options?.include_usage ?? false,
  };
}

export function completionPlan(
  body: CompletionBody,
  backend: ModelBackend,
  tokenizer: Tokenizer,
  headers?: RequestHeaders,
): GenerationPlan {
  if (body.best_of != null && body.best_of !== (body.n ?? 1)) {
    throw invalidRequest('best_of other than n is not supported.', 'best_of', 'unsupported');
  }
  const prompts = promptTokens(body.prompt, tokenizer);
  if (prompts.length * (body.n ?? 1) > MAX_CHOICES) {
    throw invalidRequest(
      `At most ${MAX_CHOICES} choices per request (prompts × n).`,
      'n',
      'too_many_choices',
    );
  }
  const requested = body.max_tokens ?? undefined;
  const stops = stopStrings(body.stop);
  const stream = body.stream ?? false;
  const output = outputKind(stream, stops);
  return {
    kind: 'text',
    endpoint: 'completions',
    model: backend.model,
    backend,
    tokenizer,
    prompts,
    n: body.n ?? 1,
    sampling: prompts.map((p) =>
      sampling(
        body,
        resolveMaxTokens(p.length, requested, COMPLETIONS_DEFAULT_MAX_TOKENS, backend, 'max_tokens'),
        tokenizer,
        [],
        output,
      ),
    ),
    stopStrings: stops,
    nvext: parseNvext(body.nvext, body.data_parallel_rank, headers),
    stream,
    includeUsage: body.stream_options?.include_usage ?? false,
  };
}

function templateMessage(message: ChatMessageBody): TemplateMessage {
  const content =
    typeof message.content === 'string'
      ? message.content
      : Array.isArray(message.content)
        ? message.content.map((part) => part.text).join('\n')
        : '';
  const toolCalls = message.tool_calls?.map((call) => ({
    name: call.function.name,
    arguments: call.function.arguments,
  }));
  return toolCalls && toolCalls.length > 0
    ? { role: message.role, content, toolCalls }
    : { role: message.role, content };
}

/** Text prompts are tokenized as the engine would (with the model's BOS); token prompts are taken as they are. */
function promptTokens(prompt: CompletionBody['prompt'], tokenizer: Tokenizer): number[][] {
  const bos = tokenizer.bosTokenId;
  const encode = (text: string) =>
    bos === undefined ? tokenizer.encode(text) : [bos, ...tokenizer.encode(text)];
  if (typeof prompt === 'string') return [encode(prompt)];
  if (prompt.length > 0 && typeof prompt[0] === 'string') return (prompt as string[]).map(encode);
  if (prompt.length > 0 && typeof prompt[0] === 'number') return [checkIds(prompt as number[], tokenizer)];
  return (prompt as number[][]).map((ids) => checkIds(ids, tokenizer));
}

function checkIds(ids: number[], tokenizer: Tokenizer): number[] {
  for (const id of ids) {
    if (id >= tokenizer.vocabSize) {
      throw invalidRequest(
        `Token id ${id} is outside the vocabulary (size ${tokenizer.vocabSize}).`,
        'prompt',
        'invalid_value',
      );
    }
  }
  return ids;
}

function resolveMaxTokens(
  promptLength: number,
  requested: number | undefined,
  fallback: number,
  backend: ModelBackend,
  param: string,
): number {
  if (promptLength === 0) throw invalidRequest('The prompt is empty.', 'prompt', 'invalid_value');
  const context = backend.contextLength;
  if (context === undefined) return requested ?? fallback;
  const room = context - promptLength;
  if (requested === undefined ? room < 1 : requested > room) {
    throw new ApiError(
      `This model's maximum context length is ${context} tokens. However, you requested ${promptLength + (requested ?? 1)} tokens (${promptLength} in the prompt, ${requested ?? 1} in the completion).`,
      { status: 400, type: 'invalid_request_error', param, code: 'context_length_exceeded' },
    );
  }
  return requested ?? Math.min(fallback, room);
}

interface SamplingBody {
  readonly seed?: number | null;
  readonly temperature?: number | null;
  readonly ignore_eos?: boolean | null;
  readonly stop_token_ids?: readonly number[] | null;
}

/**
 * A response that is not streamed reads the text once, at the end: the engine may hold the tokens
 * after the first until then (two chunks per request through the planes instead of one per token).
 * Stop strings are matched as the text grows, so with them every token still comes at once.
 */
function outputKind(stream: boolean, stopStrings: readonly string[]): OutputKind | undefined {
  return !stream && stopStrings.length === 0 ? 'final' : undefined;
}

function sampling(
  body: SamplingBody,
  maxTokens: number,
  tokenizer: Tokenizer,
  turnStops: readonly number[],
  output: OutputKind | undefined,
): SamplingOptions {
  const ignoreEos = body.ignore_eos ?? false;
  // The request's stop ids, then end-of-text and the template's turn end, each once (in that order).
  const requested = body.stop_token_ids ?? [];
  const stops = requested.length === 0 ? [] : [...new Set(requested)];
  if (!ignoreEos) {
    const eos = tokenizer.eosTokenId;
    if (eos !== undefined && !stops.includes(eos)) stops.push(eos);
    for (const id of turnStops) if (!stops.includes(id)) stops.push(id);
  }
  const out: { -readonly [K in keyof SamplingOptions]: SamplingOptions[K] } = { maxTokens };
  if (ignoreEos) out.ignoreEos = true;
  if (stops.length > 0) out.stopTokenIds = stops;
  if (body.temperature != null) out.temperature = body.temperature;
  if (body.seed != null) out.seed = body.seed;
  if (output !== undefined) out.outputKind = output;
  return out;
}

function stopStrings(stop: string | string[] | null | undefined): string[] {
  if (stop == null) return [];
  return (typeof stop === 'string' ? [stop] : stop).filter((s) => s.length > 0);
}
