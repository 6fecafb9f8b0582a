import type { IncomingHttpHeaders } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import { clientError, ErrorCode } from './errors';
import { isUuid } from './ids';

/**
 * The header in which the gateway tells a subgraph who is calling: a short-lived HS256 JWT signed
 * with a secret only the gateway and the subgraphs hold. Every request carries one (anonymous ones
 * without `sub`), so a subgraph answers nobody but the gateway, and nobody who can reach a
 * subgraph directly can act as someone else.
 */
export const IDENTITY_HEADER = 'x-storefront-identity';

const ISSUER = 'storefront-gateway';
const AUDIENCE = 'storefront-subgraphs';
/** Long enough for a slow query plan, short enough that a leaked header is soon useless. */
const IDENTITY_TTL_SECONDS = 60;

const keyOf = (secret: string) => new TextEncoder().encode(secret);

/** Signs the caller's identity for subgraph requests (the gateway, and subgraphs calling each other). */
export function createIdentitySigner(secret: string) {
  const key = keyOf(secret);
  return async (callerId: string | null): Promise<string> => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setIssuer(ISSUER).setAudience(AUDIENCE).setIssuedAt().setExpirationTime(`${IDENTITY_TTL_SECONDS}s`);
    if (callerId) jwt.setSubject(callerId);
    return jwt.sign(key);
  };
}

export type IdentitySigner = ReturnType<typeof createIdentitySigner>;

/** The error a subgraph answers a request without a valid gateway signature with (HTTP 401). */
const untrusted = (reason: string) =>
  clientError(ErrorCode.UNAUTHENTICATED, `This service answers only the gateway: ${reason}.`, { http: { status: 401 } });

/**
 * Reads the caller's user id from a subgraph request: null for an anonymous caller; throws
 * UNAUTHENTICATED (HTTP 401) when the signature is missing, wrong or expired.
 */
export function createIdentityVerifier(secret: string) {
  const key = keyOf(secret);
  return async (headers: IncomingHttpHeaders): Promise<string | null> => {
    const token = headers[IDENTITY_HEADER];
    if (typeof token !== 'string' || token === '') throw untrusted('the identity header is missing');
    let subject: string | undefined;
    try {
      const { payload } = await jwtVerify(token, key, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] });
      subject = payload.sub;
    } catch {
      throw untrusted('the identity header is not validly signed');
    }
    if (subject === undefined) return null;
    if (!isUuid(subject)) throw untrusted('the identity names no valid user');
    return subject.toLowerCase();
  };
}

export type IdentityVerifier = ReturnType<typeof createIdentityVerifier>;
