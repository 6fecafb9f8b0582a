/**
 * Who may do what, from the contract's @authenticated and @requiresScopes: enforced by the gateway before
 * any subgraph is called, and again by the owning subgraph from the signed identity, whose header cannot
 * be replayed for another request. Every write is declared with who may make it.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getIntrospectionQuery } from 'graphql';
import { unguardedWrites } from '../gateway/access-control';
import { IDENTITY_HEADER } from '../lib/identity';
import { generateDataset } from '../prisma/seed';
import { composeSupergraph } from '../scripts/compose';
import { FIXTURE_SCALE } from './global-setup';
import { requestBody, useHarness, type QueryOptions } from './harness';
import { editedSchema } from './schema-edits';
import { asyncHandler } from './service';

const dataset = generateDataset(FIXTURE_SCALE);
const [alice, bob] = dataset.users as [(typeof dataset.users)[0], (typeof dataset.users)[0]];
const product = dataset.products[3]!;
const suite = useHarness();
const noSql = { accounts: 0, catalog: 0, reviews: 0, jobs: 0 };

const anonymous: QueryOptions = {};
const signedIn: QueryOptions = { as: alice.id };
const editor: QueryOptions = { as: alice.id, scopes: ['catalog:write'] };

/** The product's price as PostgreSQL has it, past every cache. */
async function priceInDatabase(id = product.id) {
  const row = await suite.harness.database.prisma.product.findUniqueOrThrow({
    where: { id },
    select: { priceCents: true, currency: true },
  });
  return row;
}

describe('every write is declared in the contract with who may make it', () => {
  it('the composed supergraph has no Mutation field without @authenticated or @requiresScopes', () => {
    expect(unguardedWrites(composeSupergraph())).toEqual([]);
  });

  it('the check catches a write added without either directive', () => {
    const sdls = editedSchema('catalog', (sdl) =>
      sdl.replace('type Mutation {', 'type Mutation {\n  archiveProduct(id: ID!): Product! @cost(weight: 10)'),
    );
    expect(unguardedWrites(composeSupergraph(sdls))).toEqual(['Mutation.archiveProduct']);
  });
});

/** Each write, in three spellings: plain with literals, behind variables, and hidden in a fragment (`id`: a review of Alice's to delete). */
const UPDATE_INPUT = { price: { amountCents: 1, currency: 'USD' } };
const writes = {
  updateProduct: {
    needs: 'catalog:write',
    plain: (_id: string) =>
      [
        `mutation { updateProduct(id: "${product.id}", input: { price: { amountCents: 1, currency: "USD" } }) { id } }`,
        {},
      ] as const,
    variables: (_id: string) =>
      [
        'mutation ($id: ID!, $input: UpdateProductInput!) { updateProduct(id: $id, input: $input) { id } }',
        { id: product.id, input: UPDATE_INPUT },
      ] as const,
    fragment: (_id: string) =>
      [
        'mutation ($id: ID!, $input: UpdateProductInput!, $yes: Boolean!) { ...Write @include(if: $yes) } fragment Write on Mutation { cheap: updateProduct(id: $id, input: $input) { id } }',
        { id: product.id, input: UPDATE_INPUT, yes: true },
      ] as const,
  },
  createProduct: {
    needs: 'catalog:write',
    plain: (_id: string) =>
      [
        `mutation { createProduct(input: { sku: "AUTHZ-${randomUUID().slice(0, 8)}", title: "Made up", price: { amountCents: 1 } }) { id } }`,
        {},
      ] as const,
    variables: (_id: string) =>
      [
        'mutation ($input: CreateProductInput!) { createProduct(input: $input) { id } }',
        { input: { sku: `AUTHZ-${randomUUID().slice(0, 8)}`, title: 'Made up', price: { amountCents: 1 } } },
      ] as const,
    fragment: (_id: string) =>
      [
        'mutation ($input: CreateProductInput!) { ... on Mutation { ...Create } } fragment Create on Mutation { createProduct(input: $input) { id } }',
        { input: { sku: `AUTHZ-${randomUUID().slice(0, 8)}`, title: 'Made up', price: { amountCents: 1 } } },
      ] as const,
  },
  createReview: {
    needs: null,
    plain: (_id: string) =>
      [
        `mutation { createReview(input: { productId: "${product.id}", rating: 4, body: "Fine." }) { id } }`,
        {},
      ] as const,
    variables: (_id: string) =>
      [
        'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }',
        { input: { productId: product.id, rating: 4, body: 'Fine.' } },
      ] as const,
    fragment: (_id: string) =>
      [
        'mutation ($input: CreateReviewInput!) { ...Review } fragment Review on Mutation { createReview(input: $input) { id } }',
        { input: { productId: product.id, rating: 4, body: 'Fine.' } },
      ] as const,
  },
  deleteReview: {
    needs: null,
    // Alice deletes a review she wrote just before (made in the test), so success is observable.
    plain: (id: string) => [`mutation { deleteReview(id: "${id}") { deletedReviewId } }`, {}] as const,
    variables: (id: string) => ['mutation ($id: ID!) { deleteReview(id: $id) { deletedReviewId } }', { id }] as const,
    fragment: (id: string) =>
      [
        'mutation ($id: ID!) { ...Delete } fragment Delete on Mutation { deleteReview(id: $id) { deletedReviewId } }',
        { id },
      ] as const,
  },
} as const;

async function aliceReview(): Promise<string> {
  const { data, errors } = await suite.harness.query(
    'mutation ($input: CreateReviewInput!) { createReview(input: $input) { id } }',
    { input: { productId: product.id, rating: 3, body: 'To delete.' } },
    signedIn,
  );
  expect(errors).toBeUndefined();
  return data!.createReview.id as string;
}

describe.each(Object.entries(writes))('%s through the gateway', (name, write) => {
  describe.each(['plain', 'variables', 'fragment'] as const)('written %s', (spelling) => {
    const operation = async () => write[spelling](name === 'deleteReview' ? await aliceReview() : '');

    it('is refused to an anonymous caller with 401 UNAUTHENTICATED, before any SQL, for one point', async () => {
      const [query, variables] = await operation();
      const before = await priceInDatabase();
      suite.harness.sql.reset();
      const response = await suite.harness.query(query, variables, anonymous);
      expect(suite.harness.sql.counts()).toEqual(noSql);
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer');
      expect(response.data).toBeUndefined();
      expect(response.errors).toEqual([
        {
          message: expect.stringContaining(`Mutation.${name}`),
          extensions: { code: 'UNAUTHENTICATED', fields: [`Mutation.${name}`] },
        },
      ]);
      expect(response.extensions?.cost?.requested).toBe(1);
      expect(await priceInDatabase()).toEqual(before);
    });

    if (write.needs) {
      it(`is refused to a signed-in caller without ${write.needs} with 403 FORBIDDEN naming the scope, before any SQL`, async () => {
        const [query, variables] = await operation();
        const before = await priceInDatabase();
        suite.harness.sql.reset();
        const response = await suite.harness.query(query, variables, {
          as: bob.id,
          scopes: ['catalog:read', 'profile'],
        });
        expect(suite.harness.sql.counts()).toEqual(noSql);
        expect(response.status).toBe(403);
        expect(response.headers.get('www-authenticate')).toBe(
          `Bearer error="insufficient_scope", scope="${write.needs}"`,
        );
        expect(response.errors).toEqual([
          {
            message: expect.stringContaining(write.needs),
            extensions: { code: 'FORBIDDEN', fields: [`Mutation.${name}`], missingScopes: [write.needs] },
          },
        ]);
        expect(response.extensions?.cost?.requested).toBe(1);
        expect(await priceInDatabase()).toEqual(before);
      });
    }

    it(`runs for a caller who ${write.needs ? `holds ${write.needs}` : 'is signed in'}`, async () => {
      const [query, variables] = await operation();
      const response = await suite.harness.query(query, variables, write.needs ? editor : signedIn);
      expect(response.errors).toBeUndefined();
      expect(response.status).toBe(200);
      if (name === 'updateProduct') {
        expect(await priceInDatabase()).toEqual({ priceCents: 1, currency: 'USD' });
        await suite.harness.database.prisma.product.update({
          where: { id: product.id },
          data: { priceCents: product.priceCents, currency: product.currency },
        });
      }
    });
  });
});

describe('reads the contract protects', () => {
  it('refuses User.email to an anonymous caller, also through a fragment on a nested entity', async () => {
    for (const query of [
      `{ user(id: "${alice.id}") { email } }`,
      `{ product(id: "${product.id}") { reviews(first: 1) { edges { node { author { ...Contact } } } } } } fragment Contact on User { email }`,
    ]) {
      suite.harness.sql.reset();
      const response = await suite.harness.query(query, {}, anonymous);
      expect(response.status).toBe(401);
      expect(response.errors?.map((e) => e.extensions)).toEqual([{ code: 'UNAUTHENTICATED', fields: ['User.email'] }]);
      expect(suite.harness.sql.counts()).toEqual(noSql);
    }
  });

  it('lets an anonymous caller skip the protected field with @include(if: false), and a signed-in one see their own email', async () => {
    const skipped = await suite.harness.query(
      'query ($me: Boolean!) { user(id: "' + alice.id + '") { displayName email @include(if: $me) } }',
      { me: false },
      anonymous,
    );
    expect(skipped.errors).toBeUndefined();
    expect(skipped.data).toEqual({ user: { displayName: alice.displayName } });
    // The operation's own defaults count, as execution applies them.
    for (const query of [
      'query ($withEmail: Boolean = false) { user(id: "ID") { displayName email @include(if: $withEmail) } }',
      'query ($hide: Boolean = true) { user(id: "ID") { displayName email @skip(if: $hide) } }',
    ]) {
      const defaulted = await suite.harness.query(query.replace('ID', alice.id), {}, anonymous);
      expect([defaulted.status, defaulted.data]).toEqual([200, { user: { displayName: alice.displayName } }]);
    }
    const overridden = await suite.harness.query(
      `query ($withEmail: Boolean = false) { user(id: "${alice.id}") { email @include(if: $withEmail) } }`,
      { withEmail: true },
      anonymous,
    );
    expect(overridden.status).toBe(401);
    const own = await suite.harness.query(`{ user(id: "${alice.id}") { email } }`, {}, signedIn);
    expect(own.data).toEqual({ user: { email: alice.email } });
  });

  it('leaves public reads and introspection open', async () => {
    const page = await suite.harness.query(`{ product(id: "${product.id}") { title } }`, {}, anonymous);
    expect(page.data).toEqual({ product: { title: product.title } });
    const introspection = await suite.harness.query(getIntrospectionQuery(), {}, anonymous);
    expect(introspection.errors).toBeUndefined();
  });
});

describe('the owning subgraph enforces the same rules from the signed identity', () => {
  const UPDATE = `mutation { updateProduct(id: "${product.id}", input: { price: { amountCents: 1, currency: "USD" } }) { id } }`;

  it('catalog refuses updateProduct to an anonymous identity and to one without catalog:write, and runs it with the scope', async () => {
    const before = await priceInDatabase();
    const url = suite.harness.subgraphs.catalog.url;
    const refusedAnonymous = await suite.harness.query(UPDATE, {}, { url });
    expect(refusedAnonymous.errors?.map((e) => e.extensions)).toEqual([
      { code: 'UNAUTHENTICATED', fields: ['Mutation.updateProduct'] },
    ]);
    const refusedScope = await suite.harness.query(UPDATE, {}, { url, as: bob.id, scopes: ['profile'] });
    expect(refusedScope.errors?.map((e) => e.extensions)).toEqual([
      { code: 'FORBIDDEN', fields: ['Mutation.updateProduct'], missingScopes: ['catalog:write'] },
    ]);
    expect(await priceInDatabase()).toEqual(before);
    const allowed = await suite.harness.query(UPDATE, {}, { url, ...editor });
    expect(allowed.errors).toBeUndefined();
    expect(await priceInDatabase()).toEqual({ priceCents: 1, currency: 'USD' });
    await suite.harness.database.prisma.product.update({
      where: { id: product.id },
      data: { priceCents: product.priceCents, currency: product.currency },
    });
  });

  it('reviews refuses createReview and deleteReview, and accounts an entity fetch of User.email, to an anonymous identity', async () => {
    const url = suite.harness.subgraphs.reviews.url;
    const review = await suite.harness.query(
      `mutation { createReview(input: { productId: "${product.id}", rating: 5, body: "Sneaky." }) { id } }`,
      {},
      { url },
    );
    expect(review.errors?.map((e) => e.extensions)).toEqual([
      { code: 'UNAUTHENTICATED', fields: ['Mutation.createReview'] },
    ]);
    const deletion = await suite.harness.query(
      `mutation { deleteReview(id: "${dataset.reviews[0]!.id}") { deletedReviewId } }`,
      {},
      { url },
    );
    expect(deletion.errors?.map((e) => e.extensions)).toEqual([
      { code: 'UNAUTHENTICATED', fields: ['Mutation.deleteReview'] },
    ]);
    const entities = await suite.harness.query(
      'query ($r: [_Any!]!) { _entities(representations: $r) { ... on User { email } } }',
      { r: [{ __typename: 'User', id: alice.id }] },
      { url: suite.harness.subgraphs.accounts.url },
    );
    expect(entities.errors?.map((e) => e.extensions)).toEqual([{ code: 'UNAUTHENTICATED', fields: ['User.email'] }]);
  });
});

describe('the signed identity is bound to the request it was signed for', () => {
  it('a captured identity header works for its own body and is refused with any other', async () => {
    // A recording hop between a second gateway and catalog: what someone reading that traffic would see.
    const captured: Array<{ header: string; body: string }> = [];
    const target = new URL(suite.harness.subgraphs.catalog.url);
    const tap = http.createServer(
      asyncHandler(async (req, res) => {
        // The gateway's readiness checks (GET /readyz) pass through; only GraphQL calls are captured.
        if (req.method !== 'POST') {
          const answer = await fetch(new URL(req.url!, target));
          res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text());
          return;
        }
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const body = Buffer.concat(chunks).toString();
        captured.push({ header: String(req.headers[IDENTITY_HEADER]), body });
        const answer = await fetch(target, {
          method: 'POST',
          headers: { 'content-type': 'application/json', [IDENTITY_HEADER]: String(req.headers[IDENTITY_HEADER]) },
          body,
        });
        res
          .writeHead(answer.status, { 'content-type': 'application/json' })
          .end(Buffer.from(await answer.arrayBuffer()));
      }),
    );
    await new Promise<void>((resolve) => tap.listen(0, '127.0.0.1', resolve));
    const gateway = await suite.harness.startGateway({
      subgraphUrls: {
        ...{ accounts: suite.harness.subgraphs.accounts.url, reviews: suite.harness.subgraphs.reviews.url },
        catalog: `http://127.0.0.1:${(tap.address() as AddressInfo).port}/graphql`,
      },
    });
    try {
      // An editor's harmless read, signed with their catalog:write scope.
      const read = await suite.harness.query(
        `{ product(id: "${product.id}") { title } }`,
        {},
        { url: gateway.url, ...editor },
      );
      expect(read.data).toEqual({ product: { title: product.title } });
      expect(captured).toHaveLength(1);
      const { header, body } = captured[0]!;
      const send = (payload: string) =>
        fetch(target, {
          method: 'POST',
          headers: { 'content-type': 'application/json', [IDENTITY_HEADER]: header },
          body: payload,
        });

      const replayedAsIs = await send(body);
      expect(replayedAsIs.status).toBe(200);
      // A GET runs the query in its URL, not its body: the captured header and body with another query in the URL are refused.
      const viaGet = await new Promise<number>((resolve, reject) => {
        const url = new URL(target);
        url.searchParams.set('query', `{ product(id: "${dataset.products[4]!.id}") { title } }`);
        const request = http.request(
          url,
          {
            method: 'GET',
            headers: {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body),
              'apollo-require-preflight': 'true',
              [IDENTITY_HEADER]: header,
            },
          },
          (response) => {
            response.resume();
            resolve(response.statusCode!);
          },
        );
        request.on('error', reject);
        request.end(body);
      });
      expect(viaGet).toBe(401);
      const before = await priceInDatabase();
      for (const other of [
        requestBody(
          `mutation { updateProduct(id: "${product.id}", input: { price: { amountCents: 1, currency: "USD" } }) { id } }`,
        ),
        body.replace(product.id, dataset.products[4]!.id),
        `${body} `,
      ]) {
        const replayed = await send(other);
        expect(replayed.status).toBe(401);
        expect(((await replayed.json()) as { errors: Array<{ message: string }> }).errors[0]!.message).toMatch(
          /signed for another request/,
        );
      }
      expect(await priceInDatabase()).toEqual(before);
    } finally {
      await gateway.stop();
      await new Promise((resolve) => tap.close(resolve));
    }
  });
});
