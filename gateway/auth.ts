import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify, SignJWT, errors as joseErrors, type JWTVerifyGetKey } from 'jose';
import { LRUCache } from 'lru-cache';
import { ANONYMOUS, type Caller } from '../lib/authorization';
import type { Config } from '../lib/config';
import { isDelegationToken, verifyDelegation } from '../lib/delegation';
import { clientError, ErrorCode } from '../lib/errors';
import { createIdentitySigner } from '../lib/identity';
import { isUuid } from '../lib/ids';
import { loadSecrets } from '../lib/secrets';

export interface BearerAuthOptions {
  /** HS256 secret client tokens are signed with. Ignored when `jwksFile` is given. */
  secret: string;
  /** Path of a JWKS JSON file whose public keys verify client tokens (RS256, ES256, EdDSA). Defaults to none. */
  jwksFile?: string;
  /** Required `iss` claim. */
  issuer: string;
  /** Required `aud` claim. */
  audience: string;
  /**
   * IDENTITY_SECRET: also accept the jobs worker's delegation tokens (lib/delegation.ts), with which a job acts
   * as the caller who started it. Defaults to none (only client tokens).
   */
  delegationSecret?: string;
}

/** UNAUTHENTICATED with HTTP 401: the request carried a token we cannot accept. */
const rejected = (message: string) => clientError(ErrorCode.UNAUTHENTICATED, message, { http: { status: 401 } });

/** Whether `scope` is an OAuth 2.0 scope token (RFC 6749 §3.3): printable ASCII without space, quote or backslash. */
export const isScopeToken = (scope: string) => /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(scope);

/**
 * Verifies `Authorization: Bearer <JWT>` and returns the caller: the user id (`sub`, a UUID) and the
 * scopes of the `scope` claim (space-separated, as in OAuth 2.0; none when absent), or ANONYMOUS when the
 * request carries no token. A malformed, expired or wrongly signed token is UNAUTHENTICATED with HTTP
 * 401, never silently anonymous.
 */
export function createBearerAuthenticator(options: BearerAuthOptions) {
  const key: Uint8Array | JWTVerifyGetKey = options.jwksFile
    ? createLocalJWKSet(JSON.parse(readFileSync(options.jwksFile, 'utf8')))
    : new TextEncoder().encode(options.secret);
  const algorithms = options.jwksFile ? ['RS256', 'ES256', 'EdDSA'] : ['HS256'];
  // A client sends the same token with every request until it expires: its signature is checked once, and
  // its caller served from here until its `exp` (then it is refused as expired, as jwtVerify would).
  const verified = new LRUCache<string, { caller: Caller; expiresAt: number }>({ max: 10_000 });
  return async (authorization: string | undefined): Promise<Caller> => {
    if (authorization === undefined || authorization === '') return ANONYMOUS;
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i.exec(authorization);
    if (!match) throw rejected('The Authorization header must be "Bearer <JWT>".');
    const token = match[1]!;
    const known = verified.get(token);
    if (known) {
      if (Date.now() < known.expiresAt) return known.caller;
      verified.delete(token);
      throw rejected('The token has expired.');
    }
    let payload: { sub?: string; scope?: unknown; exp?: number };
    const delegationSecret = options.delegationSecret && isDelegationToken(token) ? options.delegationSecret : null;
    const delegated = delegationSecret !== null;
    try {
      ({ payload } = delegationSecret
        ? { payload: await verifyDelegation(delegationSecret, token) }
        : await jwtVerify(token, key as Uint8Array, {
            issuer: options.issuer,
            audience: options.audience,
            algorithms,
            requiredClaims: ['exp', 'sub'],
          }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw rejected('The token has expired.');
      throw rejected('The token is not valid.');
    }
    if (!isUuid(payload.sub)) throw rejected('The token names no valid user.');
    const scopes =
      payload.scope === undefined
        ? []
        : typeof payload.scope === 'string'
          ? payload.scope.split(' ').filter(Boolean)
          : null;
    if (!scopes || !scopes.every(isScopeToken))
      throw rejected("The token's scope claim must be a space-separated string of scopes.");
    const caller: Caller = Object.freeze({
      callerId: payload.sub.toLowerCase(),
      scopes: Object.freeze(scopes) as string[],
      ...(delegated && { background: true as const }),
    });
    verified.set(token, { caller, expiresAt: payload.exp! * 1_000 });
    return caller;
  };
}

export type BearerAuthenticator = ReturnType<typeof createBearerAuthenticator>;

/** A client token for `userId` with `scopes`, signed with the HS256 secret (development and tests: `npm run token`). */
export function issueToken(
  options: Pick<BearerAuthOptions, 'secret' | 'issuer' | 'audience'> & {
    userId: string;
    scopes?: readonly string[];
    expiresIn?: string;
  },
): Promise<string> {
  const scopes = options.scopes ?? [];
  return new SignJWT(scopes.length > 0 ? { scope: scopes.join(' ') } : {})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(options.userId)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '1h')
    .sign(new TextEncoder().encode(options.secret));
}

/** The gateway's `authenticate` and `signIdentity` from configuration (secrets as loadSecrets finds them). */
export function gatewaySecurity(config: Config) {
  const secrets = loadSecrets(config);
  return {
    authenticate: createBearerAuthenticator({
      secret: secrets.jwtSecret,
      jwksFile: config.JWT_JWKS_FILE,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      delegationSecret: secrets.identitySecret,
    }),
    signIdentity: createIdentitySigner(secrets.identitySecret),
  };
}
