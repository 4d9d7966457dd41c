/**
 * A worker in its own process for crash tests: connects the distributed runtime, registers
 * `{ns}.backend.generate` with a short lease, serves an endless slow token stream, and prints
 * `ready <instance id hex>` on stdout. The test then SIGKILLs it.
 * usage: node --import tsx test/support/child-worker.ts <nats url> <etcd endpoint> <namespace>
 */
import { encodeJson } from '../../src/runtime/codec.ts';
import { connectDistributedRuntime } from '../../src/runtime/distributed.ts';
import { endpointId } from '../../src/runtime/types.ts';

const [natsUrl, etcdEndpoint, namespace] = process.argv.slice(2);
const runtime = await connectDistributedRuntime({
  nats: { servers: natsUrl },
  etcd: { hosts: etcdEndpoint },
  leaseTtlSeconds: 2,
  heartbeatMs: 150,
});
const ep = endpointId(namespace, 'backend', 'generate');
const id = await runtime.discovery.primaryInstanceId();
await runtime.requests.serve(ep, id, async function* (_payload, { signal }) {
  for (let i = 0; !signal.aborted; i++) {
    await new Promise((r) => setTimeout(r, 10));
    yield encodeJson({ index: i });
  }
});
await runtime.discovery.register({ endpoint: ep });
process.stdout.write(`ready ${id.toString(16)}\n`);
