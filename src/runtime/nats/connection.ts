/**
 * NATS connection for the planes: auth (token, user/password, creds file) and TLS passed through,
 * reconnects forever (a NATS restart must not take the process down; nats.js re-subscribes),
 * waits for a first connection instead of failing when NATS is not up yet.
 */
import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { log } from '../../util/log.ts';

export interface NatsOptions {
  /** Default: NATS_SERVER or nats://127.0.0.1:4222. */
  readonly servers?: string | readonly string[];
  readonly name?: string;
  readonly token?: string;
  readonly user?: string;
  readonly pass?: string;
  /** Path of a .creds file (JWT + nkey seed). */
  readonly credsFile?: string;
  /** Passed through to nats.js (caFile, certFile, keyFile, rejectUnauthorized, handshakeFirst...). */
  readonly tls?: NodeConnectionOptions['tls'];
  /** While the first connection is pending, a warning is logged this often (default 5 s). */
  readonly firstConnectNoticeMs?: number;
  /** Wait between reconnect attempts (default 250 ms, with jitter). */
  readonly reconnectTimeWaitMs?: number;
  /** Client ping period (default 10 s); a dead server is noticed after 2 missed pings. */
  readonly pingIntervalMs?: number;
}

const FIRST_CONNECT_NOTICE_MS = 5_000;

export function defaultNatsServers(): string[] {
  return (process.env.NATS_SERVER ?? 'nats://127.0.0.1:4222').split(',').map((s) => s.trim());
}

export async function connectNats(options: NatsOptions = {}): Promise<NatsConnection> {
  const servers = options.servers ?? defaultNatsServers();
  // Built first: reading a creds file may throw, and then no notice timer must be left running.
  const connectOptions = {
    servers: typeof servers === 'string' ? servers : [...servers],
    name: options.name ?? 'kvgate',
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: options.reconnectTimeWaitMs ?? 250,
    reconnectJitter: 100,
    waitOnFirstConnect: true,
    pingInterval: options.pingIntervalMs ?? 10_000,
    maxPingOut: 2,
    ...(options.token ? { token: options.token } : {}),
    ...(options.user ? { user: options.user, pass: options.pass } : {}),
    ...(options.credsFile ? { authenticator: credsAuthenticator(readFileSync(options.credsFile)) } : {}),
    ...(options.tls ? { tls: options.tls } : {}),
  };
  // The first connection is awaited for as long as it takes (NATS may start after us): say so, or a
  // process whose NATS is unreachable would wait without a word.
  const waiting = setInterval(
    () => log.warn({ servers }, 'runtime: waiting for NATS (not reachable yet); retrying'),
    options.firstConnectNoticeMs ?? FIRST_CONNECT_NOTICE_MS,
  );
  waiting.unref();
  const nc = await connect(connectOptions).finally(() => clearInterval(waiting));
  void logStatus(nc);
  return nc;
}

async function logStatus(nc: NatsConnection): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'disconnect') log.warn({ server: s.server }, 'runtime: NATS disconnected');
    else if (s.type === 'reconnect') log.info({ server: s.server }, 'runtime: NATS reconnected');
    else if (s.type === 'error') log.warn({ err: String(s.error) }, 'runtime: NATS error');
  }
}
