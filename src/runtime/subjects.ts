/**
 * Subjects in NATS syntax: dot-separated tokens; in a subscription `*` matches exactly one token and
 * a final `>` matches one or more. The local event plane matches with the same rules.
 */
import { RuntimeError } from './errors.ts';
import { type EndpointId, type InstanceId, validatePrefix } from './types.ts';

const TOKEN = /^[^\s.*>]+$/;

export function assertPublishSubject(subject: string): void {
  const tokens = subject.split('.');
  if (!tokens.every((t) => TOKEN.test(t)))
    throw new RuntimeError('RUNTIME_INVALID', `invalid publish subject ${JSON.stringify(subject)}`);
}

export function assertSubscribeSubject(subject: string): void {
  const tokens = subject.split('.');
  const ok = tokens.every((t, i) => TOKEN.test(t) || t === '*' || (t === '>' && i === tokens.length - 1));
  if (!ok) throw new RuntimeError('RUNTIME_INVALID', `invalid subscribe subject ${JSON.stringify(subject)}`);
}

/** Matches a split pattern against a split subject. */
export function subjectMatches(pattern: readonly string[], subject: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === '>') return subject.length > i;
    if (i >= subject.length) return false;
    if (p !== '*' && p !== subject[i]) return false;
  }
  return pattern.length === subject.length;
}

export function isWildcard(subject: string): boolean {
  return subject.split('.').some((t) => t === '*' || t === '>');
}

/** Dynamo's KV event subject: `namespace.{ns}.component.{comp}.kv-events`. */
export function kvEventsSubject(namespace: string, component: string): string {
  validatePrefix({ namespace, component });
  return `namespace.${namespace}.component.${component}.kv-events`;
}

/** Dynamo's JetStream stream name for a subject: dots and underscores become dashes. */
export function streamNameForSubject(subject: string): string {
  return subject.replace(/[._]/g, '-');
}

/** The NATS request-plane subject of one endpoint of one instance. */
export function requestSubject(endpoint: EndpointId, instanceId: InstanceId): string {
  return `kvgate-rq.${endpoint.namespace}.${endpoint.component}.${endpoint.endpoint}.${instanceId.toString(16)}`;
}
