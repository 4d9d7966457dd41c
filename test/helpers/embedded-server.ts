/**
 * `kvgate serve`'s pieces in this process for HTTP tests: mock-engine workers with small ranks
 * (2 ranks of 1,024 blocks of 16 tokens, 16 sequences, 2,048 batched tokens unless overridden),
 * the o200k tokenizer and any free port.
 */
import {
  type EmbeddedEngineOptions,
  type EmbeddedServer,
  type EmbeddedServerOptions,
  startEmbeddedServer,
} from '../../src/cli/embedded-server.ts';
import { loadO200kTokenizer } from '../../src/tokens/tokenizer.ts';

const SMALL_ENGINE: EmbeddedEngineOptions = {
  dataParallelSize: 2,
  blockSize: 16,
  numGpuBlocks: 1024,
  maxNumSeqs: 16,
  maxNumBatchedTokens: 2048,
  speedupRatio: 1,
};

type TestServerOptions = Omit<EmbeddedServerOptions, 'engine' | 'tokenizer' | 'port'> & {
  readonly engine?: Partial<EmbeddedEngineOptions>;
};

export async function startTestServer(options: TestServerOptions): Promise<EmbeddedServer> {
  return startEmbeddedServer({
    ...options,
    engine: { ...SMALL_ENGINE, ...options.engine },
    tokenizer: await loadO200kTokenizer(),
    port: 0,
  });
}
