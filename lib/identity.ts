import type { IncomingHttpHeaders } from 'node:http';
import { isUuid } from './ids';

/**
 * The header the gateway uses to tell subgraphs who is calling. For now the gateway forwards the
 * client's own header; a later change has the gateway sign it so subgraphs can trust it.
 */
export const USER_ID_HEADER = 'x-user-id';

/** The caller's user id, or null when absent or not a UUID. */
export function readCallerId(headers: IncomingHttpHeaders): string | null {
  const value = headers[USER_ID_HEADER];
  return isUuid(value) ? value.toLowerCase() : null;
}
