import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as jose from 'jose';
import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from 'jose';
import { createDelegationSigner } from '../lib/delegation';
import { createBearerAuthenticator, issueToken } from './auth';

// So jest.spyOn can count jwtVerify calls (the module's own exports are not configurable).
jest.mock('jose', () => ({ __esModule: true, ...jest.requireActual('jose') }));

const USER = '0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
const claims = { issuer: 'storefront-supergraph', audience: 'storefront' };

async function rejection(promise: Promise<unknown>) {
  const error = await promise.then(
    () => null,
    (caught: unknown) => caught as { extensions: Record<string, unknown> },
  );
  expect(error).not.toBeNull();
  return error!.extensions;
}

describe('bearer tokens verified against a JWKS file', () => {
  let authenticate: ReturnType<typeof createBearerAuthenticator>;
  let privateKey: KeyLike;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'key-1', alg: 'RS256', use: 'sig' };
    const file = join(mkdtempSync(join(tmpdir(), 'jwks-')), 'jwks.json');
    writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    authenticate = createBearerAuthenticator({
      secret: 'unused-when-a-jwks-file-is-given-123',
      jwksFile: file,
      ...claims,
    });
  });

  const rs256 = (key: KeyLike, kid = 'key-1') =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid })
      .setSubject(USER)
      .setIssuer(claims.issuer)
      .setAudience(claims.audience)
      .setExpirationTime('5m')
      .sign(key);

  it('accepts a token signed by a key in the set', async () => {
    expect(await authenticate(`Bearer ${await rs256(privateKey)}`)).toEqual({ callerId: USER, scopes: [] });
    expect(await authenticate(`bearer ${await rs256(privateKey)}`)).toEqual({ callerId: USER, scopes: [] });
  });

  it('refuses a token signed by another key, and an HS256 token (no algorithm confusion)', async () => {
    const stranger = (await generateKeyPair('RS256')).privateKey;
    expect(await rejection(authenticate(`Bearer ${await rs256(stranger)}`))).toEqual({
      code: 'UNAUTHENTICATED',
      http: { status: 401 },
    });
    const hs256 = await issueToken({ secret: 'unused-when-a-jwks-file-is-given-123', ...claims, userId: USER });
    expect(await rejection(authenticate(`Bearer ${hs256}`))).toEqual({
      code: 'UNAUTHENTICATED',
      http: { status: 401 },
    });
  });
});

describe('scopes from the scope claim', () => {
  const secret = 'a-test-secret-of-at-least-32-characters';
  const authenticate = createBearerAuthenticator({ secret, ...claims });
  const signed = (scope: unknown) =>
    new SignJWT(scope === undefined ? {} : { scope })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(USER)
      .setIssuer(claims.issuer)
      .setAudience(claims.audience)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(secret));

  it('reads a space-separated scope claim, and none when it is absent', async () => {
    expect(await authenticate(`Bearer ${await signed('catalog:write  profile')}`)).toEqual({
      callerId: USER,
      scopes: ['catalog:write', 'profile'],
    });
    expect(await authenticate(`Bearer ${await signed(undefined)}`)).toEqual({ callerId: USER, scopes: [] });
    expect(
      await authenticate(`Bearer ${await issueToken({ secret, ...claims, userId: USER, scopes: ['catalog:write'] })}`),
    ).toEqual({ callerId: USER, scopes: ['catalog:write'] });
  });

  it.each([[['catalog:write']], [42], ['catalog:"write"']])(
    'refuses a malformed scope claim %j with 401',
    async (scope) => {
      expect(await rejection(authenticate(`Bearer ${await signed(scope)}`))).toEqual({
        code: 'UNAUTHENTICATED',
        http: { status: 401 },
      });
    },
  );
});

describe('a token seen before', () => {
  const secret = 'a-test-secret-of-at-least-32-characters';

  it('is verified once, served from memory until its exp, then refused as expired', async () => {
    jest.useFakeTimers({ now: Date.now(), doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    try {
      const authenticate = createBearerAuthenticator({ secret, ...claims });
      const token = await issueToken({ secret, ...claims, userId: USER, scopes: ['catalog:write'], expiresIn: '60s' });
      const verify = jest.spyOn(jose, 'jwtVerify');
      for (let i = 0; i < 3; i++)
        expect(await authenticate(`Bearer ${token}`)).toEqual({ callerId: USER, scopes: ['catalog:write'] });
      expect(verify).toHaveBeenCalledTimes(1);
      jest.advanceTimersByTime(61_000);
      expect(await rejection(authenticate(`Bearer ${token}`))).toEqual({
        code: 'UNAUTHENTICATED',
        http: { status: 401 },
      });
      // A forged token is never served from memory: each is verified, and refused.
      const forged = `${token.slice(0, -4)}AAAA`;
      expect(await rejection(authenticate(`Bearer ${forged}`))).toEqual({
        code: 'UNAUTHENTICATED',
        http: { status: 401 },
      });
      verify.mockRestore();
    } finally {
      jest.useRealTimers();
    }
  });
});

describe("a jobs worker's delegation tokens", () => {
  const identitySecret = 'identity-secret-of-at-least-32-characters';
  const authenticate = createBearerAuthenticator({
    secret: 'client-secret-of-at-least-32-characters!',
    ...claims,
    delegationSecret: identitySecret,
  });
  const delegation = { callerId: USER, scopes: ['catalog:write'], jobId: '0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c' };

  it('act as the caller, with their scopes, marked as background work', async () => {
    const token = await createDelegationSigner(identitySecret)(delegation);
    expect(await authenticate(`Bearer ${token}`)).toEqual({
      callerId: USER,
      scopes: ['catalog:write'],
      background: true,
    });
    // A client's own token is never background.
    const own = await issueToken({ secret: 'client-secret-of-at-least-32-characters!', ...claims, userId: USER });
    expect((await authenticate(`Bearer ${own}`)).background).toBeUndefined();
  });

  it('are refused when signed with another secret, or by a gateway that accepts none', async () => {
    const forged = await createDelegationSigner('another-secret-of-at-least-32-characters')(delegation);
    expect(await rejection(authenticate(`Bearer ${forged}`))).toMatchObject({ code: 'UNAUTHENTICATED' });
    const genuine = await createDelegationSigner(identitySecret)(delegation);
    const withoutDelegation = createBearerAuthenticator({
      secret: 'client-secret-of-at-least-32-characters!',
      ...claims,
    });
    expect(await rejection(withoutDelegation(`Bearer ${genuine}`))).toMatchObject({ code: 'UNAUTHENTICATED' });
  });
});
