import type { z } from 'zod';
import { workerErrorText } from '../../protocol/wire.ts';

/**
 * The `data:` payloads of a server-sent-event stream (what SGLang's /generate and vLLM's OpenAI
 * server stream), one string per event, ending at the body's end. Multi-line data fields are joined
 * with '\n' as the SSE spec says; comments and other fields are skipped.
 */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    let newline = buffer.indexOf('\n');
    while (newline >= 0) {
      let line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (data.length > 0) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      newline = buffer.indexOf('\n');
    }
  }
  buffer += decoder.decode();
  if (buffer.startsWith('data:')) data.push(buffer.slice(buffer.startsWith('data: ') ? 6 : 5));
  if (data.length > 0) yield data.join('\n');
}

/** An engine's error field inside a stream chunk (a string or `{message}`). */
type ChunkWithError = { error?: string | { message: string } | undefined };

/**
 * The JSON chunks of an engine's SSE stream up to `[DONE]`, each validated with `schema`. A chunk
 * that does not parse is ENGINE_BAD_RESPONSE; one carrying an `error` is ENGINE_REFUSED.
 */
export async function* sseChunks<T extends ChunkWithError>(
  body: AsyncIterable<Uint8Array>,
  schema: z.ZodType<T>,
  engine: string,
): AsyncGenerator<T> {
  for await (const data of sseData(body)) {
    if (data === '[DONE]') return;
    let parsed: T;
    try {
      const result = schema.safeParse(JSON.parse(data));
      if (!result.success) throw new Error(result.error.message);
      parsed = result.data;
    } catch (error) {
      throw new Error(workerErrorText('ENGINE_BAD_RESPONSE', `${engine} stream chunk: ${String(error)}`));
    }
    if (parsed.error !== undefined)
      throw new Error(
        workerErrorText(
          'ENGINE_REFUSED',
          typeof parsed.error === 'string' ? parsed.error : parsed.error.message,
        ),
      );
    yield parsed;
  }
}
