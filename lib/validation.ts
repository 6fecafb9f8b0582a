import type { z } from 'zod';
import { badInput } from './errors';

/** Parses input with a zod schema; the first problem becomes BAD_USER_INPUT naming the argument path. */
export function validate<T extends z.ZodType>(schema: T, value: unknown, argumentName: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = [argumentName, ...issue.path.map(String)].join('.');
  throw badInput(path, `${path}: ${issue.message}`);
}
