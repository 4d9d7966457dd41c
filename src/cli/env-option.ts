/** Flags that fall back to a `KVGATE_*` environment variable named after them. */
import { Option } from 'commander';

/** `--some-name` → `KVGATE_SOME_NAME`. */
export function envVariable(long: string): string {
  return `KVGATE_${long.replace(/^--/, '').toUpperCase().replaceAll('-', '_')}`;
}

/**
 * `--name <value>` that reads `KVGATE_NAME` when the flag is absent (the flag wins), parsed by
 * `parse`, with an optional default.
 */
export function envOption<T>(
  flags: string,
  description: string,
  parse: (value: string, previous: T) => T,
  defaultValue?: T,
): Option {
  const option = new Option(flags, description);
  option.env(envVariable(option.long ?? flags));
  option.argParser(parse);
  return defaultValue === undefined ? option : option.default(defaultValue);
}
