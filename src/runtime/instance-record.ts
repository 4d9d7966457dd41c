/**
 * The instance record stored in discovery (Dynamo's shape: namespace, component, endpoint,
 * instance_id, transport), validated with zod when read back.
 */
import { z } from 'zod';
import { decodeJson, encodeJson } from './codec.ts';
import { errorMessage } from './errors.ts';
import { type Instance, isValidName } from './types.ts';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

const name = z.string().refine(isValidName, 'invalid name');

/** A u64 that the lossless codec decoded as a safe number or a bigint. */
export const u64Schema = z
  .union([z.bigint(), z.number().int().nonnegative()])
  .transform((v) => BigInt(v))
  .refine((v) => v >= 0n && v <= U64_MAX, 'not a u64');

const instanceWireSchema = z.object({
  namespace: name,
  component: name,
  endpoint: name,
  instance_id: u64Schema,
  transport: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('local') }),
    z.object({ kind: z.literal('nats'), subject: z.string().min(1) }),
  ]),
});

export function encodeInstance(instance: Instance): Uint8Array {
  return encodeJson({
    namespace: instance.endpoint.namespace,
    component: instance.endpoint.component,
    endpoint: instance.endpoint.endpoint,
    instance_id: instance.instanceId,
    transport: instance.transport,
  });
}

export function decodeInstance(bytes: Uint8Array): { instance: Instance } | { error: string } {
  let value: unknown;
  try {
    value = decodeJson(bytes);
  } catch (error) {
    return { error: errorMessage(error) };
  }
  const parsed = instanceWireSchema.safeParse(value);
  if (!parsed.success) return { error: z.prettifyError(parsed.error) };
  const w = parsed.data;
  return {
    instance: {
      endpoint: { namespace: w.namespace, component: w.component, endpoint: w.endpoint },
      instanceId: w.instance_id,
      transport: w.transport,
    },
  };
}
