/**
 * Discovery keys, Dynamo's layout: instances at `v1/instances/{ns}/{comp}/{ep}/{instance_id:hex}`,
 * model cards at `v1/mdc/{ns}/{comp}/{ep}/{hex}`.
 */
import { type EndpointId, type InstanceId, isValidName } from './types.ts';

export const DISCOVERY_ROOT = 'v1/';

export type DiscoveryKeyKind = 'instances' | 'mdc';

export interface ParsedDiscoveryKey {
  readonly kind: DiscoveryKeyKind;
  readonly endpoint: EndpointId;
  readonly instanceId: InstanceId;
}

export function instanceKey(endpoint: EndpointId, instanceId: InstanceId): string {
  return discoveryKey('instances', endpoint, instanceId);
}

export function modelCardKey(endpoint: EndpointId, instanceId: InstanceId): string {
  return discoveryKey('mdc', endpoint, instanceId);
}

function discoveryKey(kind: DiscoveryKeyKind, e: EndpointId, instanceId: InstanceId): string {
  return `v1/${kind}/${e.namespace}/${e.component}/${e.endpoint}/${instanceId.toString(16)}`;
}

const HEX = /^[0-9a-fA-F]{1,16}$/;

/** Parses a key under `v1/`; undefined when it is not a well-formed discovery key. */
export function parseDiscoveryKey(key: string): ParsedDiscoveryKey | undefined {
  const parts = key.split('/');
  if (parts.length !== 6 || parts[0] !== 'v1') return undefined;
  const kind = parts[1];
  if (kind !== 'instances' && kind !== 'mdc') return undefined;
  const [, , namespace, component, endpoint, hex] = parts;
  if (!isValidName(namespace) || !isValidName(component) || !isValidName(endpoint) || !HEX.test(hex))
    return undefined;
  return { kind, endpoint: { namespace, component, endpoint }, instanceId: BigInt(`0x${hex}`) };
}
