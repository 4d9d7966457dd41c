/**
 * The distributed runtime's three planes (DESIGN §1, §7), each an interface with a `local`
 * (in-process) and a `nats` + `etcd` implementation that pass one conformance suite.
 *
 * - Discovery: instances and model cards registered under a lease; watchers see added/removed.
 * - Request plane: call one endpoint of one instance, stream responses back in order, cancel.
 * - Event plane: subject pub/sub with NATS wildcards, plus an optional durable stream.
 */
import type { Cancellation } from '../util/cancel.ts';
import { RuntimeError } from './errors.ts';
import type { ModelCard } from './model-card.ts';
import type { PushHandle, PushSink } from './push.ts';
import type { MalformedCounter } from './stats.ts';

/** u64 instance id: the etcd lease id in distributed mode, a random u64 locally. */
export type InstanceId = bigint;

/** namespace / component / endpoint, written `ns.comp.ep` (e.g. `kvgate.backend.generate`). */
export interface EndpointId {
  readonly namespace: string;
  readonly component: string;
  readonly endpoint: string;
}

/** A namespace, optionally narrowed to a component and then to an endpoint. */
export interface EndpointPrefix {
  readonly namespace: string;
  readonly component?: string;
  readonly endpoint?: string;
}

const NAME = /^[A-Za-z0-9_-]+$/;

export function isValidName(name: string): boolean {
  return NAME.test(name);
}

function checkName(kind: string, name: string): void {
  if (!NAME.test(name))
    throw new RuntimeError('RUNTIME_INVALID', `invalid ${kind} name ${JSON.stringify(name)}`);
}

export function endpointId(namespace: string, component: string, endpoint: string): EndpointId {
  checkName('namespace', namespace);
  checkName('component', component);
  checkName('endpoint', endpoint);
  return { namespace, component, endpoint };
}

/** Parses `ns.comp.ep` (an optional `dyn://` scheme is accepted). */
export function parseEndpointId(text: string): EndpointId {
  const parts = text.replace(/^dyn:\/\//, '').split('.');
  if (parts.length !== 3)
    throw new RuntimeError('RUNTIME_INVALID', `endpoint must be ns.comp.ep, got ${JSON.stringify(text)}`);
  return endpointId(parts[0], parts[1], parts[2]);
}

export function formatEndpointId(id: EndpointId): string {
  return `${id.namespace}.${id.component}.${id.endpoint}`;
}

export function validatePrefix(prefix: EndpointPrefix): void {
  checkName('namespace', prefix.namespace);
  if (prefix.component !== undefined) checkName('component', prefix.component);
  if (prefix.endpoint !== undefined) {
    if (prefix.component === undefined)
      throw new RuntimeError('RUNTIME_INVALID', 'an endpoint prefix needs a component');
    checkName('endpoint', prefix.endpoint);
  }
}

export function prefixMatches(prefix: EndpointPrefix, id: EndpointId): boolean {
  return (
    prefix.namespace === id.namespace &&
    (prefix.component === undefined || prefix.component === id.component) &&
    (prefix.endpoint === undefined || prefix.endpoint === id.endpoint)
  );
}

/** How to reach an instance's endpoint on the request plane. */
export type InstanceTransport =
  | { readonly kind: 'local' }
  | { readonly kind: 'nats'; readonly subject: string };

export interface Instance {
  readonly endpoint: EndpointId;
  readonly instanceId: InstanceId;
  readonly transport: InstanceTransport;
}

// ---------------------------------------------------------------------------------------------
// Discovery

export interface RegisterOptions {
  readonly endpoint: EndpointId;
  /** Defaults to the runtime's lease id (etcd) or its random u64 (local). */
  readonly instanceId?: InstanceId;
  /** Defaults to the transport of this runtime's request plane. */
  readonly transport?: InstanceTransport;
}

export interface Registration {
  readonly instance: Instance;
  readonly card: ModelCard | undefined;
  /** Removes the instance (and its card) now, without waiting for the lease to expire. */
  deregister(): Promise<void>;
}

/**
 * `added` is an upsert: it repeats for a known instance when its model card changes.
 * `removed` carries the last card seen for the instance.
 */
export interface DiscoveryEvent {
  readonly type: 'added' | 'removed';
  readonly instance: Instance;
  readonly card: ModelCard | undefined;
}

export interface DiscoveryWatch {
  close(): void;
}

export interface DiscoveredInstance {
  readonly instance: Instance;
  readonly card: ModelCard | undefined;
}

export interface Discovery {
  /** The id of this runtime's lease (the default instance id). Resolves once the lease exists. */
  primaryInstanceId(): Promise<InstanceId>;
  /** Registers under this runtime's lease (kept alive); retries with back-off until it succeeds. */
  register(options: RegisterOptions, card?: ModelCard): Promise<Registration>;
  /**
   * Calls `listener` with an `added` event for every current instance under `prefix`, then with
   * changes. Resolves once the current state was delivered.
   */
  watch(prefix: EndpointPrefix, listener: (event: DiscoveryEvent) => void): Promise<DiscoveryWatch>;
  list(prefix: EndpointPrefix): Promise<DiscoveredInstance[]>;
  /** Revokes the lease (everything registered disappears) and stops watching. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Request plane

export interface HandlerContext {
  /**
   * Aborts when the caller cancels, goes away, or the server stops. A real AbortSignal: handlers
   * hand it to fetch and engine adapters (the in-process plane makes it only when a handler reads it).
   */
  readonly signal: AbortSignal;
}

export type RequestHandler = (payload: Uint8Array, ctx: HandlerContext) => AsyncIterable<Uint8Array>;

/**
 * In process, a handler may take the value a caller's payload encodes instead of its bytes (see
 * `RequestPlane.callPushValue`), checking it as it would check decoded bytes. It returns undefined
 * for a value it does not take: the plane then encodes the value and calls the RequestHandler.
 */
export type ValueHandler = (value: unknown, ctx: HandlerContext) => AsyncIterable<Uint8Array> | undefined;

export interface ServeOptions {
  /** Takes in-process callers' values (planes that carry bytes ignore it). */
  readonly valueHandler?: ValueHandler;
}

export interface CallOptions {
  /** Cancels the call (an AbortSignal, or a cheaper CancelSource in process). */
  readonly signal?: Cancellation;
  /** Deadline for the whole call; the remote handler is cancelled when it passes. */
  readonly timeoutMs?: number;
}

export interface StopOptions {
  /**
   * Running calls get this long to finish (default 0). Meanwhile new calls fail at once with
   * RUNTIME_SERVER_CANCELLED ("draining"); afterwards they see RUNTIME_NO_RESPONDERS.
   */
  readonly graceMs?: number;
}

export interface ServeHandle {
  /**
   * Stops serving. Calls still running after the grace period are aborted (handler signal) and
   * their callers fail with RUNTIME_SERVER_CANCELLED.
   */
  stop(options?: StopOptions): Promise<void>;
}

export interface RequestPlane {
  /** How instances served by this plane are reached (stored in discovery). */
  transportFor(endpoint: EndpointId, instanceId: InstanceId): InstanceTransport;
  serve(
    endpoint: EndpointId,
    instanceId: InstanceId,
    handler: RequestHandler,
    options?: ServeOptions,
  ): Promise<ServeHandle>;
  /**
   * Streams the handler's responses in order. Throws RuntimeError: RemoteError when the handler
   * throws, RUNTIME_NO_RESPONDERS, RUNTIME_STREAM_LOST, RUNTIME_SERVER_CANCELLED, RUNTIME_CANCELLED,
   * RUNTIME_TIMEOUT. Breaking out of the loop cancels the handler.
   */
  call(
    endpoint: EndpointId,
    instanceId: InstanceId,
    payload: Uint8Array,
    options?: CallOptions,
  ): AsyncIterable<Uint8Array>;
  /**
   * Optional push form of `call` (same frames, same errors, through `sink.fail`): the in-process
   * plane hands frames over by plain calls. `cancel()` is `break`. Use `pushCall` to get the push
   * form from any plane.
   */
  callPush?(
    endpoint: EndpointId,
    instanceId: InstanceId,
    payload: Uint8Array,
    sink: PushSink<Uint8Array>,
    options?: CallOptions,
  ): PushHandle;
  /**
   * Optional: `callPush` with the payload as the value `encode` turns into bytes. The in-process
   * plane hands the value to a handler served with a `valueHandler` (which must not modify it: it
   * checks and copies what it keeps, as `generateRequestFromValue` does) and encodes it only for one
   * without. Use `pushCallValue` to call any plane this way.
   */
  callPushValue?<V>(
    endpoint: EndpointId,
    instanceId: InstanceId,
    value: V,
    encode: (value: V) => Uint8Array,
    sink: PushSink<Uint8Array>,
    options?: CallOptions,
  ): PushHandle;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Event plane

export interface EventMessage {
  readonly subject: string;
  readonly payload: Uint8Array;
}

export interface Subscription {
  unsubscribe(): void;
}

export interface DurableStreamConfig {
  readonly name: string;
  /** Subjects captured by the stream (wildcards allowed). */
  readonly subjects: readonly string[];
  /** Messages older than this are dropped (Dynamo keeps KV events 1 h). */
  readonly maxAgeMs?: number;
}

export interface DurableMessage extends EventMessage {
  /** Stream sequence, from 1. */
  readonly seq: number;
  /** Deliveries of this message in this subscription (1, more after a nak or an ack-wait timeout). */
  readonly deliveries: number;
  ack(): void;
  /** Asks for redelivery now. */
  nak(): void;
}

export interface DurableConsumerOptions {
  /** Unacked messages are redelivered after this long (default 60 s). */
  readonly ackWaitMs?: number;
}

export interface EventPlane {
  /** Fire and forget. */
  publish(subject: string, payload: Uint8Array): void;
  /** `*` matches one token, `>` the rest (NATS syntax). */
  subscribe(subject: string, listener: (message: EventMessage) => void): Subscription;
  /** Resolves when everything published so far reached the server (local: immediately). */
  flush(): Promise<void>;
  /** Creates the stream if missing. */
  ensureStream(config: DurableStreamConfig): Promise<void>;
  /** Publishes into a stream and waits for it to be stored; returns the stream sequence. */
  publishDurable(subject: string, payload: Uint8Array): Promise<number>;
  /**
   * Delivers, in order, the stream's messages after this named consumer's ack floor (the consumer
   * is created if missing), then new ones. At-least-once: a message acked out of order above the
   * floor by an earlier subscription may be delivered again.
   */
  subscribeDurable(
    stream: string,
    consumer: string,
    listener: (message: DurableMessage) => void,
    options?: DurableConsumerOptions,
  ): Promise<Subscription>;
  deleteConsumer(stream: string, consumer: string): Promise<void>;
  close(): Promise<void>;
}

/** Counts of input that was dropped because it did not decode, per plane. */
export interface MalformedCounts {
  discovery: number;
  request: number;
  event: number;
}

/** One process's view of the runtime: its discovery (with its lease) and its planes. */
export interface Runtime {
  readonly discovery: Discovery;
  readonly requests: RequestPlane;
  readonly events: EventPlane;
  /** Dropped malformed input, counted per plane (shared by the three planes). */
  readonly malformed: MalformedCounter;
  /** Deregisters (revokes the lease), stops serving, closes connections. */
  close(): Promise<void>;
}
