/**
 * Disaggregation between engine fakes, standing in for SGLang's bootstrap server and KV transfer
 * (mooncake / nixl): a prefill fake serves `POST /kv_transfer {bootstrap_room, dp_rank}` (claim the
 * room's KV on exactly that rank) and `GET /route` (its dp size) on its bootstrap port; a decode
 * fake pulls from the host/port/room/rank its request named.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BootstrapInfo } from '../../protocol/generate.ts';
import type { DataParallelEngine } from '../data-parallel-engine.ts';
import { EngineError } from '../errors.ts';
import type { KvTransfer, PulledKv } from '../transfer.ts';
import { closeServer, HttpError, json, listen, readJson } from './http-util.ts';

export interface RecordedClaim {
  readonly room: number;
  readonly dpRank: number;
  readonly ok: boolean;
}

interface OpenRoom {
  /** The mock engine draws its own room ids; requests name theirs. */
  readonly engineRoom: number;
  readonly rank: number;
}

/** The prefill side: rooms opened by prefill requests, claimed by decode fakes over HTTP. */
export class FakeBootstrapServer {
  readonly claims: RecordedClaim[] = [];
  private readonly engine: DataParallelEngine;
  private readonly server: Server;
  private readonly rooms = new Map<number, OpenRoom>();
  private readonly waiters = new Map<number, (() => void)[]>();

  private constructor(engine: DataParallelEngine, onError: (res: ServerResponse, error: unknown) => void) {
    this.engine = engine;
    this.server = createServer((req, res) => {
      void this.route(req, res).catch((error: unknown) => onError(res, error));
    });
  }

  static async start(
    engine: DataParallelEngine,
    port: number,
    host: string,
    onError: (res: ServerResponse, error: unknown) => void,
  ): Promise<FakeBootstrapServer> {
    const server = new FakeBootstrapServer(engine, onError);
    await listen(server.server, port, host);
    return server;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** A prefill request's room is open (its KV waits on `rank` under the engine's room id). */
  open(room: number, engineRoom: number, rank: number): void {
    this.rooms.set(room, { engineRoom, rank });
    for (const wake of this.waiters.get(room) ?? []) wake();
    this.waiters.delete(room);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return closeServer(this.server);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/route')
      return json(res, 200, { dp_size: this.engine.options.dataParallelSize });
    if (req.method !== 'POST' || path !== '/kv_transfer') throw new HttpError(404, `no route ${path}`);
    const body = await readJson(req);
    const room = Number(body.bootstrap_room);
    const dpRank = Number(body.dp_rank);
    const entry = this.rooms.get(room) ?? (await this.waitForRoom(room, 5000));
    if (entry === undefined) {
      this.claims.push({ room, dpRank, ok: false });
      return json(res, 404, {
        code: 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
        message: `no bootstrap room ${room}`,
      });
    }
    try {
      const pulled = await this.engine.claimRoom(entry.engineRoom, dpRank);
      this.claims.push({ room, dpRank, ok: true });
      return json(res, 200, { blocks: pulled.blocks.map((b) => b.toString(16)), tokens: pulled.tokens });
    } catch (error) {
      this.claims.push({ room, dpRank, ok: false });
      const code = error instanceof EngineError ? error.code : 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND';
      return json(res, 409, { code, message: (error as Error).message });
    }
  }

  /** A decode may ask before the prefill request reached this server. */
  private waitForRoom(room: number, timeoutMs: number): Promise<OpenRoom | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.rooms.get(room)), timeoutMs);
      const list = this.waiters.get(room) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve(this.rooms.get(room));
      });
      this.waiters.set(room, list);
    });
  }
}

/** The decode side: pulls a room's KV from the prefill fake the bootstrap info names. */
export function httpKvTransfer(): KvTransfer {
  return {
    pull: async (info: BootstrapInfo, signal?: AbortSignal): Promise<PulledKv> => {
      const response = await fetch(`http://${info.host}:${info.port}/kv_transfer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ bootstrap_room: info.room, dp_rank: info.prefillDpRank }),
        ...(signal ? { signal } : {}),
      });
      const answer = (await response.json()) as {
        blocks?: string[];
        tokens?: number[];
        code?: string;
        message?: string;
      };
      if (!response.ok || answer.blocks === undefined || answer.tokens === undefined)
        throw new EngineError(
          (answer.code as EngineError['code'] | undefined) ?? 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
          answer.message ?? `KV transfer answered ${response.status}`,
        );
      return { blocks: answer.blocks.map((b) => BigInt(`0x${b}`)), tokens: answer.tokens };
    },
  };
}

/** Old SGLang decode servers derive the prefill rank from the room (room % prefill dp size). */
export async function prefillRankFromRoom(host: string, port: number, room: number): Promise<number> {
  const response = await fetch(`http://${host}:${port}/route`, { signal: AbortSignal.timeout(5000) });
  const info = (await response.json()) as { dp_size?: number };
  return room % (info.dp_size ?? 1);
}
