import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { jwtVerify, SignJWT } from 'jose';
import { LRUCache } from 'lru-cache';
import { ANONYMOUS, type Caller } from './authorization';
import { clientError, ErrorCode } from './errors';
import { isUuid } from './ids';

/**
 * The header in which the gateway tells a subgraph who is calling, `<jwt>~<mac>`:
 *
 * - `<jwt>`: a short-lived HS256 JWT signed with a secret only the gateway and the subgraphs hold, naming
 *   the caller (`sub`, absent for an anonymous one) and their scopes (`scope`, space-separated). Every
 *   request carries one, so a subgraph answers nobody but the gateway, and nobody who can reach a subgraph
 *   directly can act as someone else.
 * - `<mac>`: an HMAC-SHA256 (with a key derived from the same secret) over the JWT and the exact request body
 *   it is sent with, so a captured header cannot be replayed with another operation or other variables
 *   (only with the same POST, within the JWT's life).
 *
 * The two are apart so that the costly part is paid per caller, not per request: the JWT says nothing about
 * the body, so the signer reuses one per caller and scopes for most of its life, and a subgraph verifies
 * each JWT once and remembers the answer until it expires; only the HMAC, one hash of the body, is computed
 * per request. `~` separates them because it never appears in a JWT (base64url and dots).
 */
export const IDENTITY_HEADER = 'x-storefront-identity';

const ISSUER = 'storefront-gateway';
const AUDIENCE = 'storefront-subgraphs';
/** Long enough for a slow query plan, short enough that a leaked header is soon useless. */
const IDENTITY_TTL_SECONDS = 60;
/** A cached JWT is signed anew once less than this is left of its life: it must still be valid on arrival. */
const IDENTITY_RENEW_SECONDS = 30;
/** Cached JWTs (signer) and verifications (subgraph): one per active caller and scopes, bounded. */
const CACHE_ENTRIES = 5_000;
/** Between the JWT and the body MAC in the header value: not in the base64url alphabet, nor a dot. */
const MAC_SEPARATOR = '~';

const keyOf = (secret: string) => new TextEncoder().encode(secret);
/**
 * The body MAC has a key of its own, derived from the secret, so a MAC never passes for a JWT signature. A
 * KeyObject: createHmac with a Buffer key costs several times as much per call (OpenSSL 3 imports it each time).
 */
const macKeyOf = (secret: string) =>
  createSecretKey(Buffer.from(hkdfSync('sha256', secret, '', 'storefront identity body binding', 32)));
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The body MAC: over the JWT, a newline (which a JWT cannot contain) and the body's bytes. */
const bodyMac = (macKey: KeyObject, jwt: string, body: string | Uint8Array) =>
  createHmac('sha256', macKey).update(jwt).update('\n').update(body).digest();

/**
 * Signs the caller's identity for one subgraph request body (the gateway, and subgraphs calling each other):
 * the IDENTITY_HEADER value. The caller's JWT is reused until IDENTITY_RENEW_SECONDS before it expires.
 */
export function createIdentitySigner(secret: string) {
  const key = keyOf(secret);
  const macKey = macKeyOf(secret);
  const jwts = new LRUCache<string, { jwt: string; renewAt: number }>({ max: CACHE_ENTRIES });

  const sign = async (caller: Caller): Promise<{ jwt: string; renewAt: number }> => {
    const issuedAt = nowSeconds();
    const jwt = new SignJWT(caller.scopes.length > 0 ? { scope: caller.scopes.join(' ') } : {})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + IDENTITY_TTL_SECONDS);
    if (caller.callerId) jwt.setSubject(caller.callerId);
    return { jwt: await jwt.sign(key), renewAt: issuedAt + IDENTITY_TTL_SECONDS - IDENTITY_RENEW_SECONDS };
  };

  return async (caller: Caller, body: string): Promise<string> => {
    if (body.length === 0) throw new Error('An identity is signed for a request body, and this request has none.');
    // A newline appears in neither a user id nor a scope.
    const cacheKey = `${caller.callerId ?? ''}\n${caller.scopes.join(' ')}`;
    let cached = jwts.get(cacheKey);
    if (!cached || nowSeconds() >= cached.renewAt) {
      cached = await sign(caller);
      jwts.set(cacheKey, cached);
    }
    return `${cached.jwt}${MAC_SEPARATOR}${bodyMac(macKey, cached.jwt, body).toString('base64url')}`;
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
 * URL), so an identity is accepted on a POST only. A JWT is verified once and its caller remembered until
 * it expires; the body MAC is checked on every request.
 */
export function createIdentityVerifier(secret: string) {
  const key = keyOf(secret);
  const macKey = macKeyOf(secret);
  const verified = new LRUCache<string, { caller: Caller; expiresAt: number }>({ max: CACHE_ENTRIES });

  const callerOf = async (jwt: string): Promise<Caller> => {
    const cached = verified.get(jwt);
    // As jose decides: expired once `exp` is not after now.
    if (cached && cached.expiresAt > nowSeconds()) return cached.caller;
    if (cached) verified.delete(jwt);
    let payload: { sub?: string; scope?: unknown; exp?: number };
    try {
      ({ payload } = await jwtVerify(jwt, key, {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['HS256'],
        requiredClaims: ['exp'],
      }));
    } catch {
      throw untrusted('the identity header is not validly signed');
    }
    if (payload.scope !== undefined && typeof payload.scope !== 'string')
      throw untrusted('the identity carries malformed scopes');
    const scopes = payload.scope ? payload.scope.split(' ').filter(Boolean) : [];
    let caller: Caller;
    // Scopes belong to a signed-in caller: an anonymous identity has none.
    if (payload.sub === undefined) caller = ANONYMOUS;
    else if (!isUuid(payload.sub)) throw untrusted('the identity names no valid user');
    // Frozen: the same caller answers every request with this JWT.
    else caller = Object.freeze({ callerId: payload.sub.toLowerCase(), scopes: Object.freeze(scopes) });
    verified.set(jwt, { caller, expiresAt: payload.exp! });
    return caller;
  };

  return async (request: SignedRequest): Promise<Caller> => {
    const header = request.headers[IDENTITY_HEADER];
    if (typeof header !== 'string' || header === '') throw untrusted('the identity header is missing');
    if (request.method !== 'POST' || !request.rawBody?.length)
      throw untrusted('the identity header is accepted only on a POST with the body it was signed for');
    const separator = header.lastIndexOf(MAC_SEPARATOR);
    if (separator < 0) throw untrusted('the identity header is not validly signed');
    const jwt = header.slice(0, separator);
    const caller = await callerOf(jwt);
    const presented = Buffer.from(header.slice(separator + 1), 'base64url');
    const expected = bodyMac(macKey, jwt, request.rawBody);
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected))
      throw untrusted('the identity header was signed for another request');
    return caller;
  };
}

export type IdentityVerifier = ReturnType<typeof createIdentityVerifier>;
