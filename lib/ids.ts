import { badInput } from './errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: unknown): value is string => typeof value === 'string' && UUID.test(value);

/** Validates an ID argument: our ids are UUIDs, so anything else is a client mistake, not a miss. */
export function parseId(value: string, argumentName: string): string {
  if (!isUuid(value))
    throw badInput(argumentName, `${argumentName} must be a UUID; got ${JSON.stringify(String(value).slice(0, 64))}.`);
  return value.toLowerCase();
}
