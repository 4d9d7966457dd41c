/**
 * OpenAI request schemas (zod) for /v1/chat/completions and /v1/completions, with the extensions
 * kvgate accepts: vLLM's `ignore_eos`, `stop_token_ids`, `data_parallel_rank`, and Dynamo's `nvext`.
 * Unknown fields are ignored, as OpenAI-compatible servers do; fields kvgate cannot honour
 * (log probabilities, echo, suffix, best_of other than n, non-text content, tools, JSON response
 * formats) are rejected with a 400 instead of silently dropped. Sampling knobs the engine has no
 * use for (top_p, penalties) are validated and accepted.
 */
import { z } from 'zod';
import { MAX_DP_RANK } from '../kv/events.ts';
import { U64_MAX } from '../tokens/u64.ts';
import { invalidRequest } from './errors.ts';

export const MAX_N = 128;
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_LENGTH = 1024;

/** A u64 id given as a JSON number (bigint when above 2^53) or a decimal string. */
const u64 = z.union([z.bigint(), z.number(), z.string()]).transform((value, ctx): bigint => {
  let id: bigint | undefined;
  if (typeof value === 'bigint') id = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) id = BigInt(value);
  else if (typeof value === 'string' && /^\d{1,20}$/.test(value)) id = BigInt(value);
  if (id === undefined || id < 0n || id > U64_MAX) {
    ctx.addIssue({ code: 'custom', message: 'must be an unsigned 64-bit integer' });
    return z.NEVER;
  }
  return id;
});

const dpRank = z.number().int('must be an integer').min(0).max(MAX_DP_RANK);

const nvextSchema = z.object({
  annotations: z.array(z.string()).max(64).nullish(),
  backend_instance_id: u64.nullish(),
  prefill_worker_id: u64.nullish(),
  decode_worker_id: u64.nullish(),
  dp_rank: dpRank.nullish(),
  prefill_dp_rank: dpRank.nullish(),
  router_config_override: z
    .object({
      overlap_score_weight: z.number().min(0).nullish(),
      router_temperature: z.number().min(0).nullish(),
    })
    .nullish(),
  agent_hints: z
    .object({
      osl: z.number().int().min(0).nullish(),
      latency_sensitivity: z.number().nullish(),
      priority: z.number().int().nullish(),
    })
    .nullish(),
});

export type NvextRequest = z.infer<typeof nvextSchema>;

const stop = z.union([
  z.string().max(MAX_STOP_LENGTH),
  z.array(z.string().max(MAX_STOP_LENGTH)).max(MAX_STOP_STRINGS),
]);

/** Fields shared by both endpoints. */
const samplingFields = {
  model: z.string().min(1),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  n: z.number().int().min(1).max(MAX_N).nullish(),
  seed: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  stop: stop.nullish(),
  stop_token_ids: z.array(z.number().int().min(0)).max(1024).nullish(),
  ignore_eos: z.boolean().nullish(),
  user: z.string().nullish(),
  data_parallel_rank: dpRank.nullish(),
  nvext: nvextSchema.nullish(),
};

const textPart = z.object({ type: z.enum(['text', 'input_text']), text: z.string() });
const contentPart = z
  .object({ type: z.string() })
  .passthrough()
  .superRefine((part, ctx) => {
    if (!textPart.safeParse(part).success) {
      ctx.addIssue({
        code: 'custom',
        message: `content part type '${part.type}' is not supported (text only)`,
      });
    }
  })
  .transform((part) => textPart.parse(part));

const toolCall = z.object({
  id: z.string().nullish(),
  type: z.literal('function').nullish(),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().nullish(),
  tool_calls: z.array(toolCall).nullish(),
  tool_call_id: z.string().nullish(),
});

export const chatCompletionSchema = z.object({
  ...samplingFields,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.literal(false).nullish(),
  top_logprobs: z.literal(0).nullish(),
  add_generation_prompt: z.boolean().nullish(),
  // Tool definitions and structured output would need output parsing kvgate does not do.
  tools: z.array(z.unknown()).max(0, 'tools are not supported').nullish(),
  response_format: z.object({ type: z.literal('text') }).nullish(),
});

export type ChatCompletionBody = z.infer<typeof chatCompletionSchema>;
export type ChatMessageBody = z.infer<typeof message>;

const tokenIds = z.array(z.number().int().min(0)).min(1);

export const completionSchema = z.object({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
  echo: z.literal(false).nullish(),
  logprobs: z.null().optional(),
  suffix: z.null().optional(),
  best_of: z.number().int().min(1).nullish(),
});

export type CompletionBody = z.infer<typeof completionSchema>;

/**
 * A quick check for the plain bodies most requests send: true only when every field is one of a
 * few simple ones holding a value `schema` accepts and parses to itself (no transform, no field it
 * would strip). The body is then used as is; anything else goes through the schema, which also
 * writes the error messages.
 */
type FieldCheck = (value: unknown) => boolean;

const nullish =
  (check: FieldCheck): FieldCheck =>
  (value) =>
    value === undefined || value === null || check(value);
const isBoolean: FieldCheck = (value) => typeof value === 'boolean';
const isString: FieldCheck = (value) => typeof value === 'string';
const intIn =
  (min: number, max: number): FieldCheck =>
  (value) =>
    Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max;
const numberIn =
  (min: number, max: number): FieldCheck =>
  (value) =>
    typeof value === 'number' && value >= min && value <= max; // NaN fails both comparisons

const ROLES: ReadonlySet<unknown> = new Set(message.shape.role.options);

const MESSAGE_FIELDS = new Map<string, FieldCheck>([
  ['role', (value) => ROLES.has(value)],
  ['content', nullish(isString)],
  ['name', nullish(isString)],
]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fieldsPass(value: Record<string, unknown>, fields: ReadonlyMap<string, FieldCheck>): boolean {
  for (const key in value) {
    const check = fields.get(key);
    if (check === undefined || !Object.hasOwn(value, key) || !check(value[key])) return false;
  }
  return true;
}

const SIMPLE_SAMPLING_FIELDS: readonly [string, FieldCheck][] = [
  ['model', (value) => typeof value === 'string' && value.length > 0],
  ['stream', nullish(isBoolean)],
  ['max_tokens', nullish(intIn(1, Number.MAX_SAFE_INTEGER))],
  ['n', nullish(intIn(1, MAX_N))],
  ['seed', nullish(intIn(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER))],
  ['temperature', nullish(numberIn(0, 2))],
  ['top_p', nullish(numberIn(0, 1))],
  ['stop', nullish((value) => typeof value === 'string' && value.length <= MAX_STOP_LENGTH)],
  ['ignore_eos', nullish(isBoolean)],
  ['user', nullish(isString)],
];

const SIMPLE_CHAT_FIELDS = new Map<string, FieldCheck>([
  ...SIMPLE_SAMPLING_FIELDS,
  [
    'messages',
    (value) =>
      Array.isArray(value) &&
      value.length > 0 &&
      value.every((m) => isPlainObject(m) && m.role !== undefined && fieldsPass(m, MESSAGE_FIELDS)),
  ],
  ['max_completion_tokens', nullish(intIn(1, Number.MAX_SAFE_INTEGER))],
]);

const SIMPLE_COMPLETION_FIELDS = new Map<string, FieldCheck>([
  ...SIMPLE_SAMPLING_FIELDS,
  ['prompt', isString],
]);

const SIMPLE_FIELDS = new Map<
  z.ZodType,
  { fields: ReadonlyMap<string, FieldCheck>; required: readonly string[] }
>([
  [chatCompletionSchema, { fields: SIMPLE_CHAT_FIELDS, required: ['model', 'messages'] }],
  [completionSchema, { fields: SIMPLE_COMPLETION_FIELDS, required: ['model', 'prompt'] }],
]);

/** True when `body` is a plain body `schema` would accept and return unchanged (see above). */
export function isSimpleBody(schema: z.ZodType, body: Record<string, unknown>): boolean {
  const simple = SIMPLE_FIELDS.get(schema);
  if (simple === undefined) return false;
  for (const key of simple.required) if (body[key] === undefined) return false;
  return fieldsPass(body, simple.fields);
}

/** Validates `body` against `schema`, throwing a 400 OpenAI error that names the first bad field. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  if (!isPlainObject(body)) {
    throw invalidRequest('The request body must be a JSON object.');
  }
  if (isSimpleBody(schema, body)) return body as z.infer<T>;
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue.path.map(String).join('.');
  const message = issue.code === 'invalid_union' ? 'has an invalid type or value' : issue.message;
  throw invalidRequest(path ? `Invalid field '${path}': ${message}` : message, path || null, 'invalid_value');
}
