import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify, SignJWT, errors as joseErrors, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../lib/config';
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
}

/** UNAUTHENTICATED with HTTP 401: the request carried a token we cannot accept. */
const rejected = (message: string) => clientError(ErrorCode.UNAUTHENTICATED, message, { http: { status: 401 } });

/**
 * Verifies `Authorization: Bearer <JWT>` and returns the caller's user id (`sub`, a UUID), or null
 * when the request carries no token (anonymous). A malformed, expired or wrongly signed token is
 * UNAUTHENTICATED with HTTP 401, never silently anonymous.
 */
export function createBearerAuthenticator(options: BearerAuthOptions) {
  const key: Uint8Array | JWTVerifyGetKey = options.jwksFile
    ? createLocalJWKSet(JSON.parse(readFileSync(options.jwksFile, 'utf8')))
    : new TextEncoder().encode(options.secret);
  const algorithms = options.jwksFile ? ['RS256', 'ES256', 'EdDSA'] : ['HS256'];
  return async (authorization: string | undefined): Promise<string | null> => {
    if (authorization === undefined || authorization === '') return null;
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/i.exec(authorization);
    if (!match) throw rejected('The Authorization header must be "Bearer <JWT>".');
    let subject: string | undefined;
    try {
      const { payload } = await jwtVerify(match[1]!, key as Uint8Array, { issuer: options.issuer, audience: options.audience, algorithms, requiredClaims: ['exp', 'sub'] });
      subject = payload.sub;
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw rejected('The token has expired.');
      throw rejected('The token is not valid.');
    }
    if (!isUuid(subject)) throw rejected('The token names no valid user.');
    return subject.toLowerCase();
  };
}

export type BearerAuthenticator = ReturnType<typeof createBearerAuthenticator>;

/** A client token for `userId` signed with the HS256 secret (development and tests: `npm run token`). */
export function issueToken(options: Pick<BearerAuthOptions, 'secret' | 'issuer' | 'audience'> & { userId: string; expiresIn?: string }): Promise<string> {
  return new SignJWT({})
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
    authenticate: createBearerAuthenticator({ secret: secrets.jwtSecret, jwksFile: config.JWT_JWKS_FILE, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE }),
    signIdentity: createIdentitySigner(secrets.identitySecret),
  };
}
