import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import { ANONYMOUS, type Caller } from './authorization';
import { clientError, ErrorCode } from './errors';
import { isUuid } from './ids';

/**
 * The header in which the gateway tells a subgraph who is calling: a short-lived HS256 JWT signed
 * with a secret only the gateway and the subgraphs hold. Every request carries one (anonymous ones
 * without `sub`), so a subgraph answers nobody but the gateway, and nobody who can reach a
 * subgraph directly can act as someone else. It carries the caller's scopes (`scope`, space-separated)
 * and the SHA-256 of the exact request body it was signed for (`body_sha256`), so a captured header
 * cannot be replayed with another operation or other variables (only with the same POST, within its life).
 */
export const IDENTITY_HEADER = 'x-storefront-identity';

const ISSUER = 'storefront-gateway';
const AUDIENCE = 'storefront-subgraphs';
/** Long enough for a slow query plan, short enough that a leaked header is soon useless. */
const IDENTITY_TTL_SECONDS = 60;

const keyOf = (secret: string) => new TextEncoder().encode(secret);

/** The digest an identity is bound to: of the request body's bytes. */
export const bodyDigest = (body: string | Uint8Array) => createHash('sha256').update(body).digest('base64url');

/** Signs the caller's identity for one subgraph request body (the gateway, and subgraphs calling each other). */
export function createIdentitySigner(secret: string) {
  const key = keyOf(secret);
  return async (caller: Caller, body: string): Promise<string> => {
    if (body.length === 0) throw new Error('An identity is signed for a request body, and this request has none.');
    const claims = {
      body_sha256: bodyDigest(body),
      ...(caller.scopes.length > 0 && { scope: caller.scopes.join(' ') }),
    };
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(`${IDENTITY_TTL_SECONDS}s`);
    if (caller.callerId) jwt.setSubject(caller.callerId);
    return jwt.sign(key);
  };
}

export type IdentitySigner = ReturnType<typeof createIdentitySigner>;

/** The error a subgraph answers a request without a valid gateway signature with (HTTP 401). */
const untrusted = (reason: string) =>
  clientError(ErrorCode.UNAUTHENTICATED, `This service answers only the gateway: ${reason}.`, {
    http: { status: 401 },
  });

/** What a subgraph knows of an incoming request: its method, headers and the bytes of its body. */
export interface SignedRequest {
  method?: string;
  headers: IncomingHttpHeaders;
  /** The body exactly as received (lib/http-server.ts keeps it); none for a request without a body. */
  rawBody?: Uint8Array;
}

/**
 * Reads the caller (user id and scopes) from a subgraph request: anonymous when the identity names no
 * user; throws UNAUTHENTICATED (HTTP 401) when the signature is missing, wrong, expired, or was made
 * for another request body. Only a POST carries a body the operation is read from (a GET's comes from its
 * URL), so an identity is accepted on a POST only.
 */
export function createIdentityVerifier(secret: string) {
  const key = keyOf(secret);
  return async (request: SignedRequest): Promise<Caller> => {
    const token = request.headers[IDENTITY_HEADER];
    if (typeof token !== 'string' || token === '') throw untrusted('the identity header is missing');
    if (request.method !== 'POST' || !request.rawBody?.length)
      throw untrusted('the identity header is accepted only on a POST with the body it was signed for');
    let payload: { sub?: string; scope?: unknown; body_sha256?: unknown };
    try {
      ({ payload } = await jwtVerify(token, key, {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['HS256'],
        requiredClaims: ['body_sha256'],
      }));
    } catch {
      throw untrusted('the identity header is not validly signed');
    }
    if (payload.body_sha256 !== bodyDigest(request.rawBody))
      throw untrusted('the identity header was signed for another request');
    if (payload.scope !== undefined && typeof payload.scope !== 'string')
      throw untrusted('the identity carries malformed scopes');
    const scopes = payload.scope ? payload.scope.split(' ').filter(Boolean) : [];
    // Scopes belong to a signed-in caller: an anonymous identity has none.
    if (payload.sub === undefined) return ANONYMOUS;
    if (!isUuid(payload.sub)) throw untrusted('the identity names no valid user');
    return { callerId: payload.sub.toLowerCase(), scopes };
  };
}

export type IdentityVerifier = ReturnType<typeof createIdentityVerifier>;
