/**
 * OpenAI response shapes (chat.completion, chat.completion.chunk, text_completion), built exactly
 * as OpenAI's API returns them, plus the `nvext` routing echo.
 */
import type { Usage } from '../protocol/generate.ts';
import type { FinishReasonOut } from './generation.ts';
import { type NvextResponse, nvextJson } from './nvext.ts';

export type ResponseKind = 'chat' | 'text';

export interface UsageOut {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export function usageOut(usage: Usage): UsageOut {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens },
  };
}

export interface ResponseHeader {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

export interface ChoiceResult {
  readonly index: number;
  readonly text: string;
  readonly finishReason: FinishReasonOut;
}

/** The body of a non-streaming response. */
export function completeResponse(
  kind: ResponseKind,
  header: ResponseHeader,
  choices: readonly ChoiceResult[],
  usage: Usage,
  nvext: NvextResponse | undefined,
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: header.id,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: header.created,
    model: header.model,
    choices: choices.map((c) =>
      kind === 'chat'
        ? {
            index: c.index,
            message: { role: 'assistant', content: c.text, refusal: null },
            logprobs: null,
            finish_reason: c.finishReason,
          }
        : { text: c.text, index: c.index, logprobs: null, finish_reason: c.finishReason },
    ),
    usage: usageOut(usage),
    system_fingerprint: null,
  };
  if (nvext) body.nvext = nvext;
  return body;
}

/**
 * `completeResponse` as JSON text, written in one pass (the same text as JSON of that object, u64
 * ids in `nvext` written in full).
 */
export function completeResponseJson(
  kind: ResponseKind,
  header: ResponseHeader,
  choices: readonly ChoiceResult[],
  usage: Usage,
  nvext: NvextResponse | undefined,
): string {
  let list = '';
  for (const c of choices) {
    if (list !== '') list += ',';
    list +=
      kind === 'chat'
        ? `{"index":${c.index},"message":{"role":"assistant","content":${JSON.stringify(c.text)},"refusal":null},"logprobs":null,"finish_reason":"${c.finishReason}"}`
        : `{"text":${JSON.stringify(c.text)},"index":${c.index},"logprobs":null,"finish_reason":"${c.finishReason}"}`;
  }
  const prompt = usage.promptTokens;
  const completion = usage.completionTokens;
  const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
  const echo = nvext === undefined ? '' : `,"nvext":${nvextJson(nvext)}`;
  return `{"id":${JSON.stringify(header.id)},"object":"${object}","created":${header.created},"model":${JSON.stringify(header.model)},"choices":[${list}],"usage":{"prompt_tokens":${count(prompt)},"completion_tokens":${count(completion)},"total_tokens":${count(prompt + completion)},"prompt_tokens_details":{"cached_tokens":${count(usage.cachedTokens)}}},"system_fingerprint":null${echo}}`;
}

/** A number as JSON.stringify writes it (non-finite values become null). */
function count(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

export interface ChunkChoice {
  readonly index: number;
  /** Chat: the first chunk of a choice carries the assistant role. */
  readonly role?: boolean;
  readonly text?: string;
  readonly finishReason?: FinishReasonOut;
}

/** One streamed chunk. `usage` is null on content chunks when the client asked for usage. */
export function chunkResponse(
  kind: ResponseKind,
  header: ResponseHeader,
  choices: readonly ChunkChoice[],
  options: { usage?: UsageOut | null } = {},
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: header.id,
    object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: header.created,
    model: header.model,
    system_fingerprint: null,
    choices: choices.map((c) => {
      if (kind === 'text')
        return { text: c.text ?? '', index: c.index, logprobs: null, finish_reason: c.finishReason ?? null };
      const delta: Record<string, string> = {};
      if (c.role) delta.role = 'assistant';
      if (c.text !== undefined) delta.content = c.text;
      return { index: c.index, delta, logprobs: null, finish_reason: c.finishReason ?? null };
    }),
  };
  if (options.usage !== undefined) body.usage = options.usage;
  return body;
}

/** The body answering a query_instance_id request that was not streamed. */
export function routingResponse(
  kind: ResponseKind,
  header: ResponseHeader,
  nvext: NvextResponse,
): Record<string, unknown> {
  return {
    id: header.id,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: header.created,
    model: header.model,
    choices: [],
    nvext,
  };
}
