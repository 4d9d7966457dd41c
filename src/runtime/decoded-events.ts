/**
 * Typed subscriptions on the event plane: each message is decoded (and validated) before the
 * listener sees it; a message that does not decode is dropped with a log line and a counter.
 */
import { errorMessage } from './errors.ts';
import type { Runtime, Subscription } from './types.ts';

export function subscribeDecoded<T>(
  runtime: Pick<Runtime, 'events' | 'malformed'>,
  subject: string,
  decode: (payload: Uint8Array) => T,
  listener: (value: T, subject: string) => void,
): Subscription {
  return runtime.events.subscribe(subject, (message) => {
    let value: T;
    try {
      value = decode(message.payload);
    } catch (error) {
      runtime.malformed.drop('event', message.subject, errorMessage(error));
      return;
    }
    listener(value, message.subject);
  });
}
