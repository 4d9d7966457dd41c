/**
 * Server-sent events on a raw Node response, with backpressure: a write that fills the socket
 * buffer waits for 'drain' (or for the client to go away) before the next one. Events produced in
 * the same event-loop turn are coalesced into one packet.
 */
import type { ServerResponse } from 'node:http';

export class SseWriter {
  private closed = false;
  private corked = false;
  private readonly uncork = () => {
    this.corked = false;
    this.res.uncork();
  };

  constructor(private readonly res: ServerResponse) {
    res.once('close', () => {
      this.closed = true;
    });
  }

  /** True once the client has gone or the stream has ended. */
  get isClosed(): boolean {
    return this.closed || this.res.destroyed;
  }

  open(headers: Record<string, string> = {}): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...headers,
    });
    this.res.flushHeaders();
  }

  /** `data: <json>\n\n` */
  data(json: string): Promise<void> {
    return this.write(`data: ${json}\n\n`);
  }

  /** A named event whose payload is a comment line, as Dynamo's annotations are: `event: x\n: y\n\n`. */
  annotation(event: string, comment: string): Promise<void> {
    return this.write(`event: ${event}\n: ${comment}\n\n`);
  }

  /** `data: [DONE]\n\n`, then the end of the response. */
  async done(): Promise<void> {
    await this.write('data: [DONE]\n\n');
    this.end();
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end(); // end() flushes corked data too
  }

  private write(text: string): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    // Events written in the same turn of the event loop leave in one packet: the socket is corked
    // on the first write and uncorked once pending I/O has been processed.
    if (!this.corked) {
      this.corked = true;
      this.res.cork();
      setImmediate(this.uncork);
    }
    if (this.res.write(text)) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = () => {
        this.res.off('drain', finish);
        this.res.off('close', finish);
        resolve();
      };
      this.res.on('drain', finish);
      this.res.on('close', finish);
    });
  }
}
