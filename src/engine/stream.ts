/**
 * The consumer-facing surface of a request: a RequestSink that buffers output as GenerateChunks
 * and hands them out as an AsyncIterable. Tokens that arrive while the consumer is not reading are
 * merged into one chunk; the first chunk carries the rank, the last the finish reason and usage.
 * Leaving the loop early (break / return) cancels the request.
 */
import type { BootstrapInfo, FinishReason, GenerateChunk, Usage } from '../protocol/generate.ts';
import type { EngineError } from './errors.ts';
import type { RequestResult, RequestSink } from './sequence.ts';

interface MutableChunk {
  tokenIds: number[];
  finishReason?: FinishReason;
  usage?: Usage;
  dpRank?: number;
  bootstrap?: BootstrapInfo;
  error?: string;
}

export class ChunkStream implements RequestSink, AsyncIterable<GenerateChunk> {
  private readonly queue: MutableChunk[] = [];
  /** The queued chunk that tokens may still be appended to. */
  private open: MutableChunk | null = null;
  private rankToSend = -1;
  private finished = false;
  private failure: EngineError | null = null;
  private wake: (() => void) | null = null;
  private readonly cancel: () => void;

  constructor(cancel: () => void) {
    this.cancel = cancel;
  }

  onStart(dpRank: number, bootstrap: BootstrapInfo | undefined): void {
    if (bootstrap !== undefined) this.push({ tokenIds: [], dpRank, bootstrap });
    else this.rankToSend = dpRank;
  }

  onToken(token: number): void {
    if (this.open !== null) {
      this.open.tokenIds.push(token);
      return;
    }
    const chunk: MutableChunk = { tokenIds: [token] };
    if (this.rankToSend >= 0) {
      chunk.dpRank = this.rankToSend;
      this.rankToSend = -1;
    }
    this.push(chunk);
    this.open = chunk;
  }

  onFinish(result: RequestResult): void {
    if (result.reason === 'error' && result.error !== undefined) {
      this.failure = result.error;
    } else {
      const last = this.open ?? { tokenIds: [] };
      last.finishReason = result.reason;
      last.usage = result.usage;
      if (this.rankToSend >= 0 && result.dpRank >= 0) last.dpRank = result.dpRank;
      if (this.open === null) this.push(last);
    }
    this.open = null;
    this.finished = true;
    this.notify();
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerateChunk> {
    return {
      next: () => this.next(),
      return: () => {
        if (!this.finished) this.cancel();
        this.queue.length = 0;
        this.open = null;
        return Promise.resolve({ done: true, value: undefined });
      },
    };
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
