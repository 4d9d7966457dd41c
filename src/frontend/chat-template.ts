/**
 * Chat templates turn a list of messages into the exact token ids the engine sees.
 *
 * The default is ChatML (the format of Qwen, Hermes and OpenAI's own chat models). Token layout,
 * where `T(x)` is `tokenizer.encode(x)` and `<|im_start|>` / `<|im_end|>` are single special tokens:
 *
 * ```
 *   for each message:  <|im_start|> T(role + "\n" + content) <|im_end|> T("\n")
 *   then, when addGenerationPrompt:  <|im_start|> T("assistant\n")
 * ```
 *
 * This equals rendering the template to text and tokenizing it with special tokens recognised
 * (tokenizers never merge across a special token), except that special-token strings typed inside
 * message content stay plain text, so content cannot forge turn boundaries.
 *
 * Roles: `system`, `user`, `assistant`, `tool` are written as is; `developer` (OpenAI's newer name
 * for system) is written as `system`. An assistant message's tool calls follow its content, one
 * per line, as `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>` (Qwen 2.5's convention).
 * Generation ends at `<|im_end|>` (the template's stop token) or the tokenizer's end-of-text.
 */
import { DEFAULT_ENCODE_CACHE_TOKENS, EncodeCache } from '../tokens/encode-cache.ts';
import { type Tokenizer, TokenizerError } from '../tokens/tokenizer.ts';

export type ChatRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

export interface TemplateToolCall {
  readonly name: string;
  /** JSON text of the arguments, as OpenAI sends it. */
  readonly arguments: string;
}

export interface TemplateMessage {
  readonly role: ChatRole;
  readonly content: string;
  readonly toolCalls?: readonly TemplateToolCall[];
}

export interface ChatMlTemplateOptions {
  /**
   * Token ids of recent turns to keep (each turn is encoded alone, so a turn sent again is looked
   * up); 0 = none. Default DEFAULT_ENCODE_CACHE_TOKENS.
   */
  readonly cacheTokens?: number;
}

export interface ChatTemplateOptions {
  /** Open an assistant turn at the end so the model answers. Default true. */
  readonly addGenerationPrompt?: boolean;
}

export interface ChatTemplate {
  readonly name: string;
  /** Token ids that end an assistant turn (add them to the request's stop tokens). */
  readonly stopTokenIds: readonly number[];
  apply(messages: readonly TemplateMessage[], options?: ChatTemplateOptions): number[];
  /** The same conversation as text, special tokens written out (for debugging and docs). */
  render(messages: readonly TemplateMessage[], options?: ChatTemplateOptions): string;
}

export const IM_START = '<|im_start|>';
export const IM_END = '<|im_end|>';

export class ChatMlTemplate implements ChatTemplate {
  readonly name = 'chatml';
  readonly stopTokenIds: readonly number[];
  private readonly imStart: number;
  private readonly imEnd: number;
  private readonly newline: readonly number[];
  private readonly assistantHeader: readonly number[];
  /** Turns seen recently (system prompts and earlier turns come back with every request). */
  private readonly turns: EncodeCache | undefined;

  constructor(
    private readonly tokenizer: Tokenizer,
    options: ChatMlTemplateOptions = {},
  ) {
    const start = tokenizer.specialTokenId(IM_START);
    const end = tokenizer.specialTokenId(IM_END);
    if (start === undefined || end === undefined) {
      throw new TokenizerError(`tokenizer ${tokenizer.name} has no ${IM_START} / ${IM_END} special tokens`);
    }
    this.imStart = start;
    this.imEnd = end;
    this.stopTokenIds = [end];
    this.newline = tokenizer.encode('\n');
    this.assistantHeader = tokenizer.encode('assistant\n');
    const cacheTokens = options.cacheTokens ?? DEFAULT_ENCODE_CACHE_TOKENS;
    this.turns = cacheTokens > 0 ? new EncodeCache(tokenizer, cacheTokens) : undefined;
  }

  apply(messages: readonly TemplateMessage[], options: ChatTemplateOptions = {}): number[] {
    const ids: number[] = [];
    for (const message of messages) {
      ids.push(this.imStart);
      const text = turnText(message);
      for (const id of this.turns?.encode(text) ?? this.tokenizer.encode(text)) ids.push(id);
      ids.push(this.imEnd);
      for (const id of this.newline) ids.push(id);
    }
    if (options.addGenerationPrompt ?? true) {
      ids.push(this.imStart);
      for (const id of this.assistantHeader) ids.push(id);
    }
    return ids;
  }

  render(messages: readonly TemplateMessage[], options: ChatTemplateOptions = {}): string {
    let text = '';
    for (const message of messages) text += `${IM_START}${turnText(message)}${IM_END}\n`;
    if (options.addGenerationPrompt ?? true) text += `${IM_START}assistant\n`;
    return text;
  }
}

function turnText(message: TemplateMessage): string {
  const role = message.role === 'developer' ? 'system' : message.role;
  let text = `${role}\n${message.content}`;
  for (const call of message.toolCalls ?? []) {
    const body = JSON.stringify({ name: call.name, arguments: parseArguments(call.arguments) });
    if (!text.endsWith('\n')) text += '\n';
    text += `<tool_call>\n${body}\n</tool_call>`;
  }
  return text;
}

function parseArguments(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    return json;
  }
}
