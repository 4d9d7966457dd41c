/**
 * The consumer-facing surface of a request: a RequestSink that turns output into GenerateChunks,
 * consumed either as an AsyncIterable or pushed to a PushSink (the in-process fast path).
 * Tokens that arrive while the consumer is not reading are merged into one chunk (pushed: each token
 * goes at once, the last one with the finish reason); the first chunk carries the rank,
 * the last the finish reason and usage. For a request whose sampling asks for `outputKind: 'final'`
 * only the first token goes at once: the others are held and travel with the finish reason (a held
 * chunk goes early once it has FINAL_CHUNK_MAX_TOKENS, so no frame outgrows a transport's limit).
 * Leaving the loop early (break / return) or cancelling the push handle cancels the request.
 */
import type { BootstrapInfo, FinishReason, GenerateChunk, OutputKind, Usage } from '../protocol/generate.ts';
import { PUSH, type PushHandle, type PushSink, type PushSource } from '../runtime/push.ts';
import type { EngineError } from './errors.ts';
import type { RequestResult, RequestSink } from './sequence.ts';

/** Tokens a held chunk (output kind 'final') gathers before it is sent anyway (~50 kB of JSON). */
export const FINAL_CHUNK_MAX_TOKENS = 8192;

interface MutableChunk {
  tokenIds: number[];
  finishReason?: FinishReason;
  usage?: Usage;
  dpRank?: number;
  bootstrap?: BootstrapInfo;
  error?: string;
}

export class ChunkStream implements RequestSink, PushSource<GenerateChunk>, PushHandle {
  private readonly queue: MutableChunk[] = [];
  /** The queued (pulled) or not yet flushed (pushed) chunk that tokens may still be appended to. */
  private open: MutableChunk | null = null;
  /** Pulled: `open` is held back (not queued) until the request finishes. */
  private held = false;
  /** Output kind 'final': tokens after the first are held until the finish. */
  private readonly finalOnly: boolean;
  private tokenSent = false;
  private rankToSend = -1;
  private finished = false;
  private failure: EngineError | null = null;
  private wake: (() => void) | null = null;
  private readonly cancelRequest: () => void;
  /** Push mode: where chunks go (null once the consumer cancelled or the stream ended). */
  private sink: PushSink<GenerateChunk> | null = null;

  constructor(cancel: () => void, outputKind?: OutputKind) {
    this.cancelRequest = cancel;
    this.finalOnly = outputKind === 'final';
  }

  onStart(dpRank: number, bootstrap: BootstrapInfo | undefined): void {
    if (bootstrap !== undefined) this.push({ tokenIds: [], dpRank, bootstrap });
    else this.rankToSend = dpRank;
  }

  onToken(token: number, last = false): void {
    const open = this.open;
    if (open !== null) {
      open.tokenIds.push(token);
      // A held chunk (pushed: any open one) that is full goes now; the next token starts another.
      if (!last && (this.held || this.sink !== null) && open.tokenIds.length >= FINAL_CHUNK_MAX_TOKENS)
        this.sendHeld(open);
      return;
    }
    const chunk: MutableChunk = { tokenIds: [token] };
    if (this.rankToSend >= 0) {
      chunk.dpRank = this.rankToSend;
      this.rankToSend = -1;
    }
    const hold = this.finalOnly && this.tokenSent;
    const sink = this.sink;
    if (sink === null) {
      this.open = chunk;
      if (hold) this.held = true;
      else this.push(chunk);
    } else if (last || hold)
      this.open = chunk; // travels with the finish reason
    else sink.push(chunk);
    this.tokenSent = true;
  }

  private sendHeld(chunk: MutableChunk): void {
    this.open = null;
    this.held = false;
    const sink = this.sink;
    if (sink !== null) sink.push(chunk);
    else this.push(chunk);
  }

  onFinish(result: RequestResult): void {
    const pushed = this.sink;
    if (pushed !== null) {
      this.finishPushed(pushed, result);
      return;
    }
    if (result.reason === 'error' && result.error !== undefined) {
      // Held tokens still reach the consumer, before the failure.
      if (this.held && this.open !== null) this.push(this.open);
      this.failure = result.error;
    } else {
      const last = this.open ?? { tokenIds: [] };
      this.finishChunk(last, result);
      if (this.open === null || this.held) this.push(last);
    }
    this.open = null;
    this.held = false;
    this.finished = true;
    this.notify();
  }

  /** Push mode: tokens not flushed yet travel with the finish reason (or before the error). */
  private finishPushed(sink: PushSink<GenerateChunk>, result: RequestResult): void {
    this.finished = true;
    const failed = result.reason === 'error' && result.error !== undefined;
    if (failed) {
      this.failure = result.error ?? null;
      this.flush();
    } else {
      this.open ??= { tokenIds: [] };
      this.finishChunk(this.open, result);
      this.flush();
    }
    this.open = null;
    if (this.sink !== sink) return; // cancelled by the consumer while receiving the last chunk
    this.sink = null;
    if (failed) sink.fail(result.error);
    else sink.end();
  }

  private finishChunk(last: MutableChunk, result: RequestResult): void {
    last.finishReason = result.reason;
    last.usage = result.usage;
    if (this.rankToSend >= 0 && result.dpRank >= 0) last.dpRank = result.dpRank;
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerateChunk> {
    return {
      next: () => this.next(),
      return: () => {
        if (!this.finished) this.cancelRequest();
        this.queue.length = 0;
        this.open = null;
        this.held = false;
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }

  /** Pushes every chunk to `sink` from now on (chunks made before are delivered at once). */
  [PUSH](sink: PushSink<GenerateChunk>): PushHandle {
    if (!this.finished) this.sink = sink;
    // A held chunk (not queued) stays open: pushed, it is the chunk not flushed yet.
    this.held = false;
    if (this.queue.length > 0) {
      const queued = this.queue.splice(0);
      if (this.open !== null && queued.includes(this.open)) this.open = null;
      for (const chunk of queued) {
        sink.push(chunk);
        if (!this.finished && this.sink !== sink) return this; // cancelled meanwhile
      }
    }
    if (this.finished) {
      if (this.failure !== null) sink.fail(this.failure);
      else sink.end();
    }
    return this;
  }

  /** Push mode: the consumer stops; the request is cancelled and nothing more is pushed. */
  cancel(): void {
    if (this.sink === null) return;
    this.sink = null;
    this.open = null;
    if (!this.finished) this.cancelRequest();
  }

  private flush(): void {
    const chunk = this.open;
    const sink = this.sink;
    if (chunk === null || sink === null) return;
    this.open = null;
    sink.push(chunk);
  }

  private async next(): Promise<IteratorResult<GenerateChunk>> {
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk !== undefined) {
        if (chunk === this.open) this.open = null;
        return { done: false, value: chunk };
      }
      if (this.failure !== null) {
        const failure = this.failure;
        this.failure = null;
        throw failure;
      }
      if (this.finished) return { done: true, value: undefined };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private push(chunk: MutableChunk): void {
    const sink = this.sink;
    if (sink !== null) {
      sink.push(chunk);
      return;
    }
    this.queue.push(chunk);
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    if (wake !== null) {
      this.wake = null;
      wake();
    }
  }
}
