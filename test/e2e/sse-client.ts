/**
 * A minimal streaming chat client for the e2e tests: reads the SSE answer as it arrives, keeps the
 * routing echo with its exact u64 worker id, the usage, the finish reason and any error event.
 */

export interface StreamResult {
  status: number;
  /** `data:` payloads (parsed JSON objects), in order, without the final [DONE]. */
  readonly events: Record<string, unknown>[];
  /** Chunks that carried text. */
  contentChunks: number;
  text: string;
  workerId?: bigint;
  dpRank?: number;
  finishReason?: string;
  completionTokens?: number;
  error?: { message: string; type: string; code: string | null };
  done: boolean;
}

/** Starts a streamed chat; `progress` sees the result grow; resolves when the stream ends. */
export async function streamChat(
  baseUrl: string,
  body: Record<string, unknown>,
  progress: (result: StreamResult) => void = () => {},
  options: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<StreamResult> {
  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    ...(options.signal ? { signal: options.signal } : {}),
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  const result: StreamResult = {
    status: response.status,
    events: [],
    contentChunks: 0,
    text: '',
    done: false,
  };
  if (!response.ok || response.body === null) {
    result.error = ((await response.json()) as { error: StreamResult['error'] }).error;
    return result;
  }
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf('\n\n');
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') {
          result.done = true;
          continue;
        }
        onData(result, data);
      }
    }
    progress(result);
  }
  return result;
}

function onData(result: StreamResult, data: string): void {
  const parsed = JSON.parse(data) as {
    choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
    usage?: { completion_tokens: number } | null;
    nvext?: { dp_rank?: number };
    error?: StreamResult['error'];
  };
  result.events.push(parsed);
  if (parsed.error) result.error = parsed.error;
  const worker = /"worker_id":(\d+)/.exec(data);
  if (worker && result.workerId === undefined) {
    result.workerId = BigInt(worker[1]);
    result.dpRank = parsed.nvext?.dp_rank;
  }
  for (const choice of parsed.choices ?? []) {
    const content = choice.delta?.content ?? '';
    if (content !== '') {
      result.contentChunks++;
      result.text += content;
    }
    if (choice.finish_reason) result.finishReason = choice.finish_reason;
  }
  if (parsed.usage) result.completionTokens = parsed.usage.completion_tokens;
}
