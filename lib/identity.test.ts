import { createHmac, hkdfSync } from 'node:crypto';
import * as jose from 'jose';
import { ANONYMOUS } from './authorization';
import { createIdentitySigner, createIdentityVerifier, IDENTITY_HEADER } from './identity';

// jose's functions are spied on (not replaced) to count how often the costly part runs.
jest.mock('jose', () => ({ __esModule: true, ...jest.requireActual('jose') }));

const SECRET = 'identity-unit-test-secret-of-32-chars!';
const ALICE = { callerId: '0b6f5ad2-9d3c-4c4e-9a4b-3f1f0c2c7f01', scopes: ['catalog:write'] };
const BOB = { callerId: '6a1d2e3f-4b5c-4d6e-8f70-8192a3b4c5d6', scopes: [] };
const body = (query: string) => JSON.stringify({ query, variables: {} });
const request = (header: string | undefined, payload: string | undefined, method = 'POST') => ({
  method,
  headers: header === undefined ? {} : { [IDENTITY_HEADER]: header },
  rawBody: payload === undefined ? undefined : new TextEncoder().encode(payload),
});

/** The header the signer would make for `jwt` and `payload`: a JWT of the test's choosing, with a valid body MAC. */
const withMac = (jwt: string, payload: string) => {
  const macKey = Buffer.from(hkdfSync('sha256', SECRET, '', 'storefront identity body binding', 32));
  return `${jwt}~${createHmac('sha256', macKey).update(jwt).update('\n').update(payload).digest('base64url')}`;
};

/** Only the clock is faked: jose's WebCrypto calls must still resolve. */
const fakeClock = (now: string) =>
  jest.useFakeTimers({
    now: new Date(now),
    doNotFake: ['nextTick', 'queueMicrotask', 'setImmediate', 'setTimeout', 'setInterval', 'clearTimeout'],
  });

afterEach(() => {
  jest.restoreAllMocks();
  jest.useRealTimers();
});

describe('signed identity', () => {
  it('round-trips the caller, anonymous ones included', async () => {
    const sign = createIdentitySigner(SECRET);
    const verify = createIdentityVerifier(SECRET);
    const payload = body('{ me { id } }');
    expect(await verify(request(await sign(ALICE, payload), payload))).toEqual(ALICE);
    expect(await verify(request(await sign({ callerId: null, scopes: [] }, payload), payload))).toEqual(ANONYMOUS);
  });

  it('signs one JWT per caller and scopes, binding each request body with a MAC of its own', async () => {
    const signJwt = jest.spyOn(jose.SignJWT.prototype, 'sign');
    const sign = createIdentitySigner(SECRET);
    const a1 = await sign(ALICE, body('{ a }'));
    const a2 = await sign(ALICE, body('{ b }'));
    const b = await sign(BOB, body('{ a }'));
    const withoutScopes = await sign({ ...ALICE, scopes: [] }, body('{ a }'));
    expect(signJwt).toHaveBeenCalledTimes(3);
    const jwtOf = (header: string) => header.split('~')[0];
    expect(jwtOf(a1)).toBe(jwtOf(a2));
    expect(a1).not.toBe(a2);
    expect(new Set([jwtOf(a1), jwtOf(b), jwtOf(withoutScopes)]).size).toBe(3);
    // The JWT names the caller, not the body.
    const claims = jose.decodeJwt(jwtOf(a1)!);
    expect(claims).toEqual({
      sub: ALICE.callerId,
      scope: 'catalog:write',
      iss: 'storefront-gateway',
      aud: 'storefront-subgraphs',
      iat: expect.any(Number),
      exp: claims.iat! + 60,
    });
  });

  it('signs a new JWT once the cached one has less than half its life left', async () => {
    fakeClock('2030-01-01T00:00:00Z');
    const sign = createIdentitySigner(SECRET);
    const verify = createIdentityVerifier(SECRET);
    const payload = body('{ me { id } }');
    const first = await sign(ALICE, payload);
    jest.setSystemTime(new Date('2030-01-01T00:00:29Z'));
    expect(await sign(ALICE, payload)).toBe(first);
    jest.setSystemTime(new Date('2030-01-01T00:00:30Z'));
    const renewed = await sign(ALICE, payload);
    expect(renewed).not.toBe(first);
    expect(await verify(request(renewed, payload))).toEqual(ALICE);
  });

  it('verifies a JWT once, checks the body MAC on every request, and forgets the JWT when it expires', async () => {
    fakeClock('2030-01-01T00:00:00Z');
    const verifyJwt = jest.spyOn(jose, 'jwtVerify');
    const sign = createIdentitySigner(SECRET);
    const verify = createIdentityVerifier(SECRET);
    const [one, two] = [body('{ one }'), body('{ two }')];
    const header = await sign(ALICE, one);
    for (let i = 0; i < 3; i += 1) expect(await verify(request(header, one))).toEqual(ALICE);
    expect(await verify(request(await sign(ALICE, two), two))).toEqual(ALICE);
    expect(verifyJwt).toHaveBeenCalledTimes(1);
    // The cached verification does not spare the MAC: the same header with another body is refused.
    await expect(verify(request(header, two))).rejects.toThrow(/signed for another request/);
    jest.setSystemTime(new Date('2030-01-01T00:01:00Z'));
    await expect(verify(request(header, one))).rejects.toMatchObject({
      message: expect.stringMatching(/not validly signed/),
      extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
    });
  });

  it('refuses an expired JWT whose body MAC is right', async () => {
    const now = Math.floor(Date.now() / 1000);
    const payload = body('{ me { id } }');
    const expired = await new jose.SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(ALICE.callerId)
      .setIssuer('storefront-gateway')
      .setAudience('storefront-subgraphs')
      .setIssuedAt(now - 120)
      .setExpirationTime(now - 60)
      .sign(new TextEncoder().encode(SECRET));
    // The same JWT with a future expiry is accepted: the MAC made here is the signer's.
    const live = await new jose.SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(ALICE.callerId)
      .setIssuer('storefront-gateway')
      .setAudience('storefront-subgraphs')
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(new TextEncoder().encode(SECRET));
    const verify = createIdentityVerifier(SECRET);
    expect(await verify(request(withMac(live, payload), payload))).toEqual({ callerId: ALICE.callerId, scopes: [] });
    await expect(verify(request(withMac(expired, payload), payload))).rejects.toThrow(/not validly signed/);
  });

  it('refuses a header that is missing, forged, tampered, without its MAC, for another body, or on a GET', async () => {
    const sign = createIdentitySigner(SECRET);
    const verify = createIdentityVerifier(SECRET);
    const payload = body('{ me { id } }');
    const genuine = await sign(ALICE, payload);
    const [jwt, mac] = genuine.split('~') as [string, string];
    // Verified (and cached) first, so each refusal below is not an accident of an empty cache.
    expect(await verify(request(genuine, payload))).toEqual(ALICE);
    const forged = await createIdentitySigner('a-secret-the-gateway-does-not-have!!')(ALICE, payload);
    const otherMac = (await sign(ALICE, `${payload} `)).split('~')[1]!;
    const [header, , signature] = jwt.split('.');
    const asBob = Buffer.from(JSON.stringify({ ...jose.decodeJwt(jwt), sub: BOB.callerId })).toString('base64url');
    const cases: Array<[string, ReturnType<typeof request>, RegExp]> = [
      ['missing', request(undefined, payload), /missing/],
      ['empty', request('', payload), /missing/],
      ['forged', request(forged, payload), /not validly signed/],
      ['tampered', request(`${header}.${asBob}.${signature}~${mac}`, payload), /not validly signed/],
      ['a bare JWT', request(jwt, payload), /not validly signed/],
      ['an empty MAC', request(`${jwt}~`, payload), /signed for another request/],
      ['a MAC for another body', request(`${jwt}~${otherMac}`, payload), /signed for another request/],
      ['another body', request(genuine, `${payload} `), /signed for another request/],
      ['a GET', request(genuine, payload, 'GET'), /only on a POST/],
      ['no body', request(genuine, undefined), /only on a POST/],
    ];
    for (const [name, refused, reason] of cases) {
      await expect(verify(refused).then(() => `${name} was accepted`)).rejects.toMatchObject({
        message: expect.stringMatching(reason),
        extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
      });
    }
  });

  it('refuses to sign for an empty body', async () => {
    await expect(createIdentitySigner(SECRET)(ALICE, '')).rejects.toThrow(/has none/);
  });
});
