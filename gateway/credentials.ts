import type { Request, Response } from 'express';
import { ANONYMOUS, type Caller } from '../lib/authorization';
import { clientError, ErrorCode } from '../lib/errors';
import type { BearerAuthenticator } from './auth';
import { parseApiKeys } from './rate-limits';

/** The verdict on a request's credentials, made once per request. */
export interface Credentials {
  caller: Caller;
  /** The API key's client name, when a known key was sent. */
  apiClient: string | null;
  /** Why the credentials were refused (a 401 for the context to throw). */
  error?: unknown;
}

/**
 * Verifies a request's bearer token and API key once, before the body is read, and remembers the
 * verdict on the response: the IP rate applies unless they are valid, and the context reports a bad
 * token or unknown key as a 401.
 */
export function credentialsChecker(authenticate: BearerAuthenticator, apiKeys: string | undefined) {
  const apiKeyName = parseApiKeys(apiKeys);
  return async (req: Request, res: Response): Promise<Credentials> => {
    if (res.locals.credentials) return res.locals.credentials as Credentials;
    let credentials: Credentials;
    try {
      const caller = await authenticate(req.headers.authorization);
      const apiKey = req.headers['x-api-key'];
      const apiClient = typeof apiKey === 'string' ? apiKeyName(apiKey) : null;
      credentials =
        apiKey !== undefined && !apiClient
          ? {
              caller: ANONYMOUS,
              apiClient: null,
              error: clientError(ErrorCode.UNAUTHENTICATED, 'Unknown API key.', { http: { status: 401 } }),
            }
          : { caller, apiClient };
    } catch (error) {
      credentials = { caller: ANONYMOUS, apiClient: null, error };
    }
    res.locals.credentials = credentials;
    return credentials;
  };
}

/** Whether the request carries valid credentials of a user or a known API client (then the IP rate does not apply). */
export const isIdentified = (credentials: Credentials) =>
  !credentials.error && (credentials.caller.callerId !== null || credentials.apiClient !== null);
