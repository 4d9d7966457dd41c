/**
 * Wire frames of the NATS request plane. One byte of kind, then for server frames a u32 (BE)
 * sequence: the index of a DATA frame, or the number of DATA frames sent so far on the others, so
 * the caller notices a lost frame instead of returning a silently shortened stream.
 *
 * caller -> server subject (reply = the call's inbox subject, which names the stream):
 *   REQUEST payload | CANCEL
 * server -> call inbox:
 *   DATA seq payload | END seq | ERROR seq message | HEARTBEAT seq | STOPPED seq message
 */

export const FrameKind = {
  request: 0x01,
  cancel: 0x02,
  data: 0x10,
  end: 0x11,
  error: 0x12,
  heartbeat: 0x13,
  stopped: 0x14,
} as const;

export type ServerFrameKind =
  | typeof FrameKind.data
  | typeof FrameKind.end
  | typeof FrameKind.error
  | typeof FrameKind.heartbeat
  | typeof FrameKind.stopped;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

export const CANCEL_FRAME = new Uint8Array([FrameKind.cancel]);

export function requestFrame(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(1 + payload.length);
  frame[0] = FrameKind.request;
  frame.set(payload, 1);
  return frame;
}

export function serverFrame(kind: ServerFrameKind, seq: number, body?: Uint8Array | string): Uint8Array {
  const bytes = typeof body === 'string' ? utf8Encoder.encode(body) : body;
  const frame = new Uint8Array(5 + (bytes?.length ?? 0));
  frame[0] = kind;
  frame[1] = seq >>> 24;
  frame[2] = (seq >>> 16) & 0xff;
  frame[3] = (seq >>> 8) & 0xff;
  frame[4] = seq & 0xff;
  if (bytes) frame.set(bytes, 5);
  return frame;
}

export interface ServerFrame {
  readonly kind: ServerFrameKind;
  readonly seq: number;
  /** A view into the frame (no copy). */
  readonly body: Uint8Array;
}

export function parseServerFrame(frame: Uint8Array): ServerFrame | undefined {
  if (frame.length < 5) return undefined;
  const kind = frame[0];
  if (kind < FrameKind.data || kind > FrameKind.stopped) return undefined;
  const seq = ((frame[1] << 24) | (frame[2] << 16) | (frame[3] << 8) | frame[4]) >>> 0;
  return { kind: kind as ServerFrameKind, seq, body: frame.subarray(5) };
}

export function frameText(body: Uint8Array): string {
  return utf8Decoder.decode(body);
}
