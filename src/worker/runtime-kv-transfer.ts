/**
 * The distributed KvTransfer: a decode engine pulls a prefilled room's KV from the prefill worker
 * **and rank** named in the bootstrap info, over the request plane (`{ns}.prefill.kv_transfer` of
 * that instance). The prefill worker answers with the room's blocks and prompt, or with the
 * engine's error code (wrong rank, unknown room), which is raised here as the same EngineError.
 */
import { EngineError, type EngineErrorCode } from '../engine/errors.ts';
import type { KvTransfer, PulledKv } from '../engine/transfer.ts';
import type { BootstrapInfo } from '../protocol/generate.ts';
import { KV_TRANSFER_ENDPOINT, kvTransferAnswerFromWire, PREFILL_COMPONENT } from '../protocol/wire.ts';
import { decodeJson, encodeJson } from '../runtime/codec.ts';
import { errorMessage, isRuntimeError } from '../runtime/errors.ts';
import { endpointId, type Runtime } from '../runtime/types.ts';

const ENGINE_CODES: ReadonlySet<string> = new Set<EngineErrorCode>([
  'ENGINE_BOOTSTRAP_UNKNOWN_WORKER',
  'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
  'ENGINE_BOOTSTRAP_WRONG_RANK',
  'ENGINE_BOOTSTRAP_PROMPT_MISMATCH',
  'ENGINE_BOOTSTRAP_ROOM_CLAIMED',
  'ENGINE_BOOTSTRAP_EXPIRED',
  'ENGINE_CANCELLED',
  'ENGINE_CLOSED',
]);

export class RuntimeKvTransfer implements KvTransfer {
  private readonly endpoint;

  constructor(
    private readonly runtime: Runtime,
    namespace: string,
  ) {
    this.endpoint = endpointId(namespace, PREFILL_COMPONENT, KV_TRANSFER_ENDPOINT);
  }

  async pull(info: BootstrapInfo, signal?: AbortSignal): Promise<PulledKv> {
    const payload = encodeJson({ bootstrap_room: info.room, dp_rank: info.prefillDpRank });
    let answer: Uint8Array | undefined;
    try {
      for await (const frame of this.runtime.requests.call(this.endpoint, info.prefillWorkerId, payload, {
        ...(signal ? { signal } : {}),
      })) {
        answer = frame;
        break;
      }
    } catch (error) {
      if (isRuntimeError(error, 'RUNTIME_NO_RESPONDERS'))
        throw new EngineError(
          'ENGINE_BOOTSTRAP_UNKNOWN_WORKER',
          `no prefill worker ${info.prefillWorkerId} to pull room ${info.room} from`,
        );
      if (isRuntimeError(error, 'RUNTIME_CANCELLED'))
        throw new EngineError('ENGINE_CANCELLED', `pull of room ${info.room} cancelled`);
      throw new EngineError(
        'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
        `pull of room ${info.room} from prefill worker ${info.prefillWorkerId} failed: ${errorMessage(error)}`,
      );
    }
    if (answer === undefined)
      throw new EngineError(
        'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND',
        `prefill worker sent no answer for room ${info.room}`,
      );
    let decoded: ReturnType<typeof kvTransferAnswerFromWire>;
    try {
      decoded = kvTransferAnswerFromWire(decodeJson(answer));
    } catch (error) {
      decoded = { ok: false, error: errorMessage(error) };
    }
    if (!decoded.ok)
      throw new EngineError('ENGINE_BOOTSTRAP_ROOM_NOT_FOUND', `bad kv_transfer answer: ${decoded.error}`);
    const result = decoded.value;
    if (!result.ok) {
      const code = ENGINE_CODES.has(result.code)
        ? (result.code as EngineErrorCode)
        : 'ENGINE_BOOTSTRAP_ROOM_NOT_FOUND';
      throw new EngineError(code, result.message);
    }
    return { blocks: result.blocks, tokens: result.tokenIds };
  }
}
