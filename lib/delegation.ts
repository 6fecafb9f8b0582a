import { hkdfSync } from 'node:crypto';
import { decodeJwt, jwtVerify, SignJWT } from 'jose';
import type { Caller } from './authorization';

/**
 * Tokens with which background work acts as the caller who started it: the jobs worker sends each page of a
 * bulk query to the gateway with one, so the page runs under that caller's identity, scopes, query limits and
 * budget, exactly as their own request would. HS256 with a key derived from IDENTITY_SECRET, which every
 * process of the service shares and clients never see; the gateway accepts them beside client tokens
 * (gateway/auth.ts), whatever those are signed with (JWT_SECRET or a JWKS). A key of its own, so neither a
 * client token nor a subgraph identity ever passes for one.
 */
export const DELEGATION_ISSUER = 'storefront-jobs';
const AUDIENCE = 'storefront-gateway';
/** Long enough for one page; the worker signs a fresh one well before it runs out. */
const TTL_SECONDS = 300;

const keyOf = (secret: string) => new Uint8Array(hkdfSync('sha256', secret, '', 'storefront delegation tokens', 32));

export interface Delegation extends Caller {
  callerId: string;
  /** The job acting for the caller (`jti`), for the gateway's logs. */
  jobId: string;
}

/** Signs delegation tokens for `signDelegation({ callerId, scopes, jobId })`: a bearer token for the gateway. */
export function createDelegationSigner(secret: string) {
  const key = keyOf(secret);
  return (delegation: Delegation): Promise<string> =>
    new SignJWT(delegation.scopes.length > 0 ? { scope: delegation.scopes.join(' ') } : {})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(DELEGATION_ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(delegation.callerId)
      .setJti(delegation.jobId)
      .setIssuedAt()
      .setExpirationTime(`${TTL_SECONDS}s`)
      .sign(key);
}

/** Whether a bearer token claims to be a delegation (it is verified by verifyDelegation, not trusted for this). */
export function isDelegationToken(token: string): boolean {
  try {
    return decodeJwt(token).iss === DELEGATION_ISSUER;
  } catch {
    return false;
  }
}

/** The verified claims of a delegation token (`sub`, `scope`, `exp`); throws as jose does when it is not valid. */
export async function verifyDelegation(secret: string, token: string) {
  const { payload } = await jwtVerify<{ scope?: unknown }>(token, keyOf(secret), {
    issuer: DELEGATION_ISSUER,
    audience: AUDIENCE,
    algorithms: ['HS256'],
    requiredClaims: ['exp', 'sub'],
  });
  return payload;
}
