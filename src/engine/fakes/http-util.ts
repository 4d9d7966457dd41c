/** Small HTTP helpers of the engine fakes (node:http, JSON bodies, coded statuses). */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const parts: Buffer[] = [];
  for await (const part of req) parts.push(part as Buffer);
  try {
    const value: unknown = JSON.parse(Buffer.concat(parts).toString('utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new HttpError(400, `invalid JSON body: ${(error as Error).message}`);
  }
}

export function tokenList(value: unknown, name: string): number[] {
  if (
    !Array.isArray(value) ||
    value.some((t) => typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 0xffff_ffff)
  )
    throw new HttpError(400, `${name} must be a list of token ids`);
  return value as number[];
}

export function intField(value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw new HttpError(400, 'max tokens must be a positive integer');
  return value;
}

export function headerInt(req: IncomingMessage, name: string): number | null {
  const raw = req.headers[name];
  if (raw === undefined) return null;
  const n = Number(Array.isArray(raw) ? raw[0] : raw);
  if (!Number.isInteger(n) || n < 0) throw new HttpError(400, `header ${name} must be a rank`);
  return n;
}
