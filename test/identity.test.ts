/** Identity and trust: bearer tokens at the gateway, signed identity between gateway and subgraphs. */
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { createIdentitySigner, IDENTITY_HEADER } from '../lib/identity';
import { generateDataset } from '../prisma/seed';
import { SUBGRAPH_NAMES } from '../subgraphs/registry';
import { FIXTURE_SCALE } from './global-setup';
import { requestBody, TEST_IDENTITY_SECRET, TEST_JWT_SECRET, testSubgraphServices, useHarness } from './harness';

const dataset = generateDataset(FIXTURE_SCALE);
const [alice, bob] = dataset.users as [(typeof dataset.users)[0], (typeof dataset.users)[0]];
const suite = useHarness();

const ME = '{ me { id email } }';
const sign = (claims: { sub?: string; iss?: string; aud?: string; exp?: number }, secret = TEST_JWT_SECRET) => {
  const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (claims.sub) jwt.setSubject(claims.sub);
  jwt.setIssuer(claims.iss ?? 'storefront-supergraph').setAudience(claims.aud ?? 'storefront');
  jwt.setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 600);
  return jwt.sign(new TextEncoder().encode(secret));
};

describe('bearer tokens at the gateway', () => {
  it('signs the caller in: me and their own email, but nobody else’s email', async () => {
    const { status, data, errors } = await suite.harness.query(
      `{ me { id email } user(id: "${bob.id}") { id email } }`,
      {},
      { as: alice.id },
    );
    expect(status).toBe(200);
    expect(errors).toBeUndefined();
    expect(data).toEqual({ me: { id: alice.id, email: alice.email }, user: { id: bob.id, email: null } });
  });

  it('treats a request without a token as anonymous, and ignores a client-sent identity header', async () => {
    const { data } = await suite.harness.query(
      '{ me { id } }',
      {},
      { headers: { 'x-user-id': alice.id, [IDENTITY_HEADER]: 'forged' } },
    );
    expect(data).toEqual({ me: null });
  });

  it.each([
    ['not a bearer token', async () => 'Basic abc'],
    ['a malformed token', async () => 'Bearer not.a.jwt'],
    [
      'an expired token',
      async () => `Bearer ${await sign({ sub: alice.id, exp: Math.floor(Date.now() / 1000) - 60 })}`,
    ],
    [
      'a token signed with another secret',
      async () => `Bearer ${await sign({ sub: alice.id }, 'another-secret-of-at-least-32-characters!')}`,
    ],
    ['a token for another audience', async () => `Bearer ${await sign({ sub: alice.id, aud: 'elsewhere' })}`],
    ['a token from another issuer', async () => `Bearer ${await sign({ sub: alice.id, iss: 'elsewhere' })}`],
    ['a token without a user', async () => `Bearer ${await sign({})}`],
    ['a token whose user is not a UUID', async () => `Bearer ${await sign({ sub: 'admin' })}`],
  ])('answers %s with 401 UNAUTHENTICATED and runs nothing', async (_name, header) => {
    suite.harness.sql.reset();
    const { status, data, errors } = await suite.harness.query(ME, {}, { headers: { authorization: await header() } });
    expect(status).toBe(401);
    expect(data).toBeUndefined();
    expect(errors).toHaveLength(1);
    expect(errors![0]!.extensions).toEqual({ code: 'UNAUTHENTICATED' });
    expect(suite.harness.sql.counts()).toEqual({ accounts: 0, catalog: 0, reviews: 0, jobs: 0 });
  });

  it('needs a signed-in user to write a review', async () => {
    const { errors } = await suite.harness.query(
      'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }',
      { input: { productId: dataset.products[0]!.id, rating: 5, body: 'Anonymous praise.' } },
    );
    expect(errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
  });

  it('`npm run token` prints a token the gateway accepts', () => {
    const root = join(__dirname, '..');
    const token = execFileSync(
      join(root, 'node_modules', '.bin', 'tsx'),
      [join(root, 'scripts', 'token.ts'), '--user', alice.id],
      {
        env: {
          ...process.env,
          JWT_SECRET: TEST_JWT_SECRET,
          IDENTITY_SECRET: 'unused-identity-secret-of-32-characters',
        },
        encoding: 'utf8',
      },
    ).trim();
    return suite.harness.query(ME, {}, { headers: { authorization: `Bearer ${token}` } }).then(({ data }) => {
      expect(data).toEqual({ me: { id: alice.id, email: alice.email } });
    });
  });
});

describe('`npm run token -- --scope`', () => {
  // Run without blocking the event loop, so the test's keep-alive connections stay usable meanwhile.
  const token = async (...args: string[]) =>
    (
      await promisify(execFile)(
        join(__dirname, '..', 'node_modules', '.bin', 'tsx'),
        [join(__dirname, '..', 'scripts', 'token.ts'), '--user', alice.id, ...args],
        {
          env: {
            ...process.env,
            JWT_SECRET: TEST_JWT_SECRET,
            IDENTITY_SECRET: 'unused-identity-secret-of-32-characters',
          },
          encoding: 'utf8',
        },
      )
    ).stdout.trim();
  const UPDATE = `mutation { updateProduct(id: "${dataset.products[9]!.id}", input: { title: "Retitled by a scoped token" }) { title } }`;

  it('prints a token whose scope lets the caller change the catalog; without --scope the same call is FORBIDDEN', async () => {
    const [scoped, plain] = await Promise.all([token('--scope', 'catalog:write'), token()]);
    expect(JSON.parse(Buffer.from(scoped.split('.')[1]!, 'base64url').toString())).toMatchObject({
      sub: alice.id,
      scope: 'catalog:write',
    });
    const refused = await suite.harness.query(UPDATE, {}, { headers: { authorization: `Bearer ${plain}` } });
    expect([refused.status, refused.errors?.[0]?.extensions?.code]).toEqual([403, 'FORBIDDEN']);
    const allowed = await suite.harness.query(UPDATE, {}, { headers: { authorization: `Bearer ${scoped}` } });
    expect(allowed.errors).toBeUndefined();
    expect(allowed.data).toEqual({ updateProduct: { title: 'Retitled by a scoped token' } });
  });
});

describe('signed identity between gateway and subgraphs', () => {
  const forgedSigner = createIdentitySigner('a-secret-the-gateway-does-not-have!!');

  it.each(SUBGRAPH_NAMES)('%s refuses a request without the identity header (401)', async (name) => {
    const { status, errors } = await suite.harness.query(
      '{ __typename }',
      {},
      { url: suite.harness.subgraphs[name].url, unsigned: true },
    );
    expect(status).toBe(401);
    expect(errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
  });

  it('refuses an identity signed with the wrong secret, so nobody can act as someone else', async () => {
    const { status, data, errors } = await suite.harness.query(
      ME,
      {},
      {
        url: suite.harness.subgraphs.accounts.url,
        unsigned: true,
        headers: { [IDENTITY_HEADER]: await forgedSigner({ callerId: alice.id, scopes: [] }, requestBody(ME)) },
      },
    );
    expect(status).toBe(401);
    expect(data).toBeUndefined();
    expect(errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
  });

  it('refuses a tampered identity (same signature, other user)', async () => {
    const { status } = await suite.harness.query(
      '{ __typename }',
      {},
      { url: suite.harness.subgraphs.accounts.url, as: alice.id },
    );
    expect(status).toBe(200);
    const genuine = await testSubgraphServices().signIdentity({ callerId: alice.id, scopes: [] }, requestBody(ME));
    const [header, payload, signature] = genuine.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    const tampered = [
      header,
      Buffer.from(JSON.stringify({ ...claims, sub: bob.id })).toString('base64url'),
      signature,
    ].join('.');
    const response = await suite.harness.query(
      ME,
      {},
      { url: suite.harness.subgraphs.accounts.url, unsigned: true, headers: { [IDENTITY_HEADER]: tampered } },
    );
    expect(response.status).toBe(401);
  });

  it('refuses an expired identity, even correctly signed', async () => {
    const expired = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(alice.id)
      .setIssuer('storefront-gateway')
      .setAudience('storefront-subgraphs')
      .setIssuedAt(Math.floor(Date.now() / 1000) - 120)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
      .sign(new TextEncoder().encode(TEST_IDENTITY_SECRET));
    const { status } = await suite.harness.query(
      ME,
      {},
      { url: suite.harness.subgraphs.accounts.url, unsigned: true, headers: { [IDENTITY_HEADER]: expired } },
    );
    expect(status).toBe(401);
  });

  it('accepts the identity the gateway signs', async () => {
    const { status, data } = await suite.harness.query(
      ME,
      {},
      { url: suite.harness.subgraphs.accounts.url, as: bob.id },
    );
    expect(status).toBe(200);
    expect(data).toEqual({ me: { id: bob.id, email: bob.email } });
  });
});
