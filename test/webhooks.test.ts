/**
 * Webhooks through the whole service, on the real PostgreSQL and pg-boss: a job's end is POSTed, signed per
 * Standard Webhooks, to each of its owner's subscriptions; a receiver that fails is tried again with backoff up
 * to the limit, with the same webhook-id; every attempt is recorded and listed. Only the owner's subscriptions
 * hear of a job, a deleted one hears nothing, and targets are validated when a subscription is created.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { generateDataset } from '../prisma/seed';
import { queueSettings } from '../subgraphs/jobs/queue';
import type { RunningWorker } from '../subgraphs/jobs/worker';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness, type Harness } from './harness';
import { asyncHandler, until } from './service';

const dataset = generateDataset(FIXTURE_SCALE);
const userAt = (index: number) => dataset.users[index]!.id;

const SUBSCRIBE = `mutation ($url: String!, $topics: [WebhookTopic!]!) {
  createWebhookSubscription(url: $url, topics: $topics) {
    subscription { id url topics }
    secret
    userErrors { code message }
  }
}`;
const UNSUBSCRIBE = `mutation ($id: ID!) {
  deleteWebhookSubscription(id: $id) { deletedSubscriptionId userErrors { code message } }
}`;
const DELIVERIES = `{
  webhookSubscriptions(first: 20) {
    edges { node { id deliveries(first: 20) { edges { node { messageId attempt outcome statusCode error jobId topic } } } } }
  }
}`;
const BULK_QUERY = '{ products(first: 5) { edges { node { id } } } }';
const RUN = `mutation ($query: String!) { runBulkQuery(query: $query) { job { id status } userErrors { code message } } }`;
const CANCEL = 'mutation ($id: ID!) { cancelJob(id: $id) { job { id status } userErrors { code } } }';
const JOB = 'query ($id: ID!) { job(id: $id) { id status objectCount url } }';

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

interface Receiver {
  url: string;
  received: Request[];
  close(): Promise<void>;
}

/** A webhook receiver on 127.0.0.1 answering its nth request (from 1) with `status(n)`, and keeping every request. */
async function startReceiver(status: (n: number) => number): Promise<Receiver> {
  const received: Request[] = [];
  const server = http.createServer(
    asyncHandler(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
      );
      received.push({ method: req.method!, path: req.url!, headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(status(received.length)).end();
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/storefront`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        // The worker's client keeps its connection alive.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Subscribed = { id: string; secret: string };

async function subscribe(harness: Harness, as: string, url: string): Promise<Subscribed> {
  const { data, errors } = await harness.query(SUBSCRIBE, { url, topics: ['JOB_FINISHED'] }, { as });
  expect(errors).toBeUndefined();
  const payload = data!.createWebhookSubscription;
  expect(payload.userErrors).toEqual([]);
  expect(payload.subscription).toEqual({ id: expect.any(String), url, topics: ['JOB_FINISHED'] });
  expect(payload.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
  return { id: payload.subscription.id, secret: payload.secret };
}

async function runBulkQuery(harness: Harness, as: string): Promise<string> {
  const { data, errors } = await harness.query(RUN, { query: BULK_QUERY }, { as });
  expect(errors).toBeUndefined();
  expect(data!.runBulkQuery.userErrors).toEqual([]);
  return data!.runBulkQuery.job.id;
}

async function jobOf(harness: Harness, as: string, id: string) {
  const { data, errors } = await harness.query(JOB, { id }, { as });
  expect(errors).toBeUndefined();
  return data!.job as { id: string; status: string; objectCount: number; url: string | null };
}

/** The caller's subscriptions' delivery attempts through GraphQL, oldest first, by subscription id. */
async function deliveriesOf(harness: Harness, as: string): Promise<Record<string, Record<string, unknown>[]>> {
  const { data, errors } = await harness.query(DELIVERIES, {}, { as });
  expect(errors).toBeUndefined();
  return Object.fromEntries(
    (data!.webhookSubscriptions.edges as { node: { id: string; deliveries: { edges: { node: any }[] } } }[]).map(
      ({ node }) => [node.id, node.deliveries.edges.map((edge) => edge.node).reverse()],
    ),
  );
}

/** The pg-boss messages queued to a subscription, with their state (created, retry, active, completed, failed). */
async function queuedTo(harness: Harness, subscriptionId: string): Promise<{ state: string; retryLimit: number }[]> {
  const { rows } = await harness.database.pool.query<{ state: string; retryLimit: number }>(
    `SELECT state, retry_limit AS "retryLimit" FROM pgboss.job
      WHERE name = 'webhook-delivery' AND data->>'subscriptionId' = $1`,
    [subscriptionId],
  );
  return rows;
}

const subscriptionRows = async (harness: Harness, ownerId: string) =>
  Number(
    (
      await harness.database.pool.query<{ count: string }>(
        'SELECT count(*) AS count FROM webhook_subscriptions WHERE owner_id = $1::uuid',
        [ownerId],
      )
    ).rows[0]!.count,
  );

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('webhooks', () => {
  const suite = useHarness();
  // Whatever a test started, stopped even when it fails.
  const started: { stop?(): Promise<void>; close?(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const thing of started.splice(0).reverse()) await (thing.stop ?? thing.close)!.call(thing);
  });
  const receiver = async (status: (n: number) => number) => {
    const running = await startReceiver(status);
    started.push(running);
    return running;
  };
  const worker = async (overrides?: Parameters<Harness['startWorker']>[0]): Promise<RunningWorker> => {
    const running = await suite.harness.startWorker(overrides);
    started.push(running);
    return running;
  };

  it('POSTs a signed job.finished message when a job completes, again with the same id until the receiver takes it, and records each attempt', async () => {
    const { harness } = suite;
    const alice = userAt(10);
    const hooks = await receiver((n) => (n <= 2 ? 500 : 204));
    const subscription = await subscribe(harness, alice, hooks.url);
    await worker();
    const jobId = await runBulkQuery(harness, alice);

    await until(async () => (await jobOf(harness, alice, jobId)).status === 'COMPLETED', 20_000);
    const job = await jobOf(harness, alice, jobId);
    expect(job.objectCount).toBe(dataset.products.length);
    await until(() => hooks.received.length >= 3, 20_000);
    // Delivered: nothing more is sent (the next retry would have come within 4 s of the second).
    await until(async () => (await queuedTo(harness, subscription.id))[0]?.state === 'completed');
    expect(hooks.received).toHaveLength(3);

    const messageId = hooks.received[0]!.headers['webhook-id'];
    expect(messageId).toMatch(/^msg_/);
    for (const request of hooks.received) {
      expect(request).toMatchObject({
        method: 'POST',
        path: '/hooks/storefront',
        headers: {
          'content-type': 'application/json',
          'webhook-id': messageId,
          'webhook-timestamp': expect.stringMatching(/^\d+$/),
          'webhook-signature': expect.stringMatching(/^v1,/),
        },
      });
      // Signed with the secret shown at creation, and only with it.
      const verified = new Webhook(subscription.secret).verify(request.body, request.headers);
      expect(verified).toEqual(JSON.parse(request.body));
      const other = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
      expect(() => new Webhook(other).verify(request.body, request.headers)).toThrow(/signature/i);
      // Nor does a changed body pass.
      expect(() =>
        new Webhook(subscription.secret).verify(request.body.replace('COMPLETED', 'FAILED'), request.headers),
      ).toThrow();
      expect(verified).toEqual({
        type: 'job.finished',
        timestamp: expect.any(String),
        data: expect.objectContaining({
          id: jobId,
          status: 'COMPLETED',
          objectCount: job.objectCount,
          url: expect.stringMatching(new RegExp(`^/jobs/${jobId}/result\\?expires=\\d+&signature=`)),
        }),
      });
      expect(Number(request.headers['webhook-timestamp'])).toBe(
        Math.floor(Date.parse((verified as { timestamp: string }).timestamp) / 1000),
      );
    }

    // The message's link downloads the result from the gateway, without a token.
    const { url } = (JSON.parse(hooks.received[2]!.body) as { data: { url: string } }).data;
    const download = await fetch(new URL(url, harness.gatewayUrl));
    expect(download.status).toBe(200);
    expect(download.headers.get('content-type')).toMatch(/^application\/jsonl/);
    const lines = (await download.text()).trimEnd().split('\n');
    expect(lines).toHaveLength(job.objectCount);
    expect(lines.map((line) => (JSON.parse(line) as { id: string }).id).sort()).toEqual(
      dataset.products.map((product) => product.id).sort(),
    );

    // Each attempt is recorded, and listed on the subscription.
    const deliveries = (await deliveriesOf(harness, alice))[subscription.id];
    const attempt = { messageId, jobId, topic: 'JOB_FINISHED' };
    expect(deliveries).toEqual([
      { ...attempt, attempt: 1, outcome: 'FAILED', statusCode: 500, error: expect.stringContaining('500') },
      { ...attempt, attempt: 2, outcome: 'FAILED', statusCode: 500, error: expect.stringContaining('500') },
      { ...attempt, attempt: 3, outcome: 'DELIVERED', statusCode: 204, error: null },
    ]);
  }, 45_000);

  it("sends a job's end only to its owner's subscriptions", async () => {
    const { harness } = suite;
    const [carol, dave] = [userAt(11), userAt(12)];
    const carols = await receiver(() => 204);
    const daves = await receiver(() => 204);
    const toCarol = await subscribe(harness, carol, carols.url);
    const toDave = await subscribe(harness, dave, daves.url);
    // Carol's job ends (canceled before any worker runs it): its messages are queued in the same transaction.
    const jobId = await runBulkQuery(harness, carol);
    const canceled = await harness.query(CANCEL, { id: jobId }, { as: carol });
    expect(canceled.data!.cancelJob).toEqual({ job: { id: jobId, status: 'CANCELED' }, userErrors: [] });
    expect(await queuedTo(harness, toDave.id)).toEqual([]);
    expect(await queuedTo(harness, toCarol.id)).toHaveLength(1);

    await worker();
    await until(async () => (await queuedTo(harness, toCarol.id))[0]?.state === 'completed');
    expect(carols.received).toHaveLength(1);
    expect(JSON.parse(carols.received[0]!.body)).toMatchObject({
      type: 'job.finished',
      data: { id: jobId, status: 'CANCELED', url: null },
    });
    expect(daves.received).toEqual([]);
    expect(await queuedTo(harness, toDave.id)).toEqual([]);
    // Each lists only their own subscription: Carol's with its one delivery, Dave's with none.
    expect(await deliveriesOf(harness, dave)).toEqual({ [toDave.id]: [] });
    expect(await deliveriesOf(harness, carol)).toEqual({
      [toCarol.id]: [expect.objectContaining({ jobId, attempt: 1, outcome: 'DELIVERED', statusCode: 204 })],
    });
  });

  it('deletes only the caller’s own subscription, and a message queued for a deleted one is not sent', async () => {
    const { harness } = suite;
    const [erin, frank] = [userAt(13), userAt(14)];
    const deleted = await receiver(() => 204);
    const kept = await receiver(() => 204);
    const toDeleted = await subscribe(harness, erin, deleted.url);
    const toKept = await subscribe(harness, erin, kept.url);

    const byFrank = await harness.query(UNSUBSCRIBE, { id: toDeleted.id }, { as: frank });
    expect(byFrank.errors).toBeUndefined();
    expect(byFrank.data!.deleteWebhookSubscription).toEqual({
      deletedSubscriptionId: null,
      userErrors: [{ code: 'NOT_FOUND', message: expect.any(String) }],
    });
    expect(await subscriptionRows(harness, erin)).toBe(2);

    // Erin's job ends while both subscriptions exist: a message is queued to each; then she deletes one.
    const jobId = await runBulkQuery(harness, erin);
    expect((await harness.query(CANCEL, { id: jobId }, { as: erin })).data!.cancelJob.userErrors).toEqual([]);
    expect(await queuedTo(harness, toDeleted.id)).toHaveLength(1);
    const byErin = await harness.query(UNSUBSCRIBE, { id: toDeleted.id }, { as: erin });
    expect(byErin.data!.deleteWebhookSubscription).toEqual({ deletedSubscriptionId: toDeleted.id, userErrors: [] });
    expect(await subscriptionRows(harness, erin)).toBe(1);
    const again = await harness.query(UNSUBSCRIBE, { id: toDeleted.id }, { as: erin });
    expect(again.data!.deleteWebhookSubscription.userErrors).toEqual([
      { code: 'NOT_FOUND', message: expect.any(String) },
    ]);

    await worker();
    // Both messages handled: the kept subscription's delivered, the deleted one's dropped without a POST.
    await until(async () =>
      [...(await queuedTo(harness, toDeleted.id)), ...(await queuedTo(harness, toKept.id))].every(
        (message) => message.state === 'completed',
      ),
    );
    expect(kept.received).toHaveLength(1);
    expect(deleted.received).toEqual([]);
    const { rows } = await harness.database.pool.query(
      'SELECT 1 FROM webhook_deliveries WHERE subscription_id = $1::uuid',
      [toDeleted.id],
    );
    expect(rows).toEqual([]);
    expect(Object.keys(await deliveriesOf(harness, erin))).toEqual([toKept.id]);
  });

  it('stops retrying at the limit', async () => {
    const { harness } = suite;
    const gina = userAt(15);
    const hooks = await receiver(() => 503);
    const subscription = await subscribe(harness, gina, hooks.url);
    await worker({ settings: { ...queueSettings(harness.config), webhookRetryLimit: 1 } });
    const jobId = await runBulkQuery(harness, gina);
    await until(async () => (await jobOf(harness, gina, jobId)).status === 'COMPLETED', 20_000);
    expect(await queuedTo(harness, subscription.id)).toEqual([{ state: expect.any(String), retryLimit: 1 }]);
    // Out of retries: pg-boss fails the message for good after the second attempt.
    await until(async () => (await queuedTo(harness, subscription.id))[0]?.state === 'failed', 20_000);
    expect(hooks.received).toHaveLength(2);
    // A third attempt would have come 2 to 4 s after the second.
    await sleep(5_000);
    expect(hooks.received).toHaveLength(2);
    expect(new Set(hooks.received.map((request) => request.headers['webhook-id'])).size).toBe(1);
    const deliveries = (await deliveriesOf(harness, gina))[subscription.id];
    expect(deliveries).toEqual([
      expect.objectContaining({ jobId, attempt: 1, outcome: 'FAILED', statusCode: 503 }),
      expect.objectContaining({ jobId, attempt: 2, outcome: 'FAILED', statusCode: 503 }),
    ]);
  }, 45_000);

  it('refuses targets that are not absolute http(s) URLs without credentials, and subscriptions without topics', async () => {
    const { harness } = suite;
    const henry = userAt(16);
    for (const url of ['ftp://hooks.example.com/x', 'http://user:pass@hooks.example.com/', 'not a url', '/relative']) {
      const { data, errors } = await harness.query(SUBSCRIBE, { url, topics: ['JOB_FINISHED'] }, { as: henry });
      expect(errors).toBeUndefined();
      expect(data!.createWebhookSubscription).toEqual({
        subscription: null,
        secret: null,
        userErrors: [{ code: 'INVALID_URL', message: expect.any(String) }],
      });
    }
    const { data } = await harness.query(SUBSCRIBE, { url: 'https://hooks.example.com/x', topics: [] }, { as: henry });
    expect(data!.createWebhookSubscription).toEqual({
      subscription: null,
      secret: null,
      userErrors: [{ code: 'NO_TOPICS', message: expect.any(String) }],
    });
    expect(await subscriptionRows(harness, henry)).toBe(0);
    // Any host when WEBHOOK_ALLOWED_HOSTS is not set.
    await subscribe(harness, henry, 'https://anywhere.example.net/hooks');
    expect(await subscriptionRows(harness, henry)).toBe(1);
  });

  it('refuses an anonymous caller', async () => {
    const { harness } = suite;
    const before = (await harness.database.pool.query('SELECT count(*) FROM webhook_subscriptions')).rows[0];
    const response = await harness.query(SUBSCRIBE, { url: 'https://hooks.example.com/x', topics: ['JOB_FINISHED'] });
    expect(response.status).toBe(401);
    expect(response.data).toBeUndefined();
    expect(response.errors).toEqual([
      {
        message: expect.stringContaining('Mutation.createWebhookSubscription'),
        extensions: { code: 'UNAUTHENTICATED', fields: ['Mutation.createWebhookSubscription'] },
      },
    ]);
    expect((await harness.database.pool.query('SELECT count(*) FROM webhook_subscriptions')).rows[0]).toEqual(before);
  });
});

describe('webhooks with WEBHOOK_ALLOWED_HOSTS', () => {
  const suite = useHarness({ env: { WEBHOOK_ALLOWED_HOSTS: 'hooks.example.com,.example.org' } });

  it('accepts only the hosts listed, and subdomains of a .domain entry', async () => {
    const { harness } = suite;
    const ida = userAt(17);
    for (const url of ['https://evil.example.net/x', 'https://example.org/x', 'http://127.0.0.1:9/x']) {
      const { data } = await harness.query(SUBSCRIBE, { url, topics: ['JOB_FINISHED'] }, { as: ida });
      expect(data!.createWebhookSubscription).toEqual({
        subscription: null,
        secret: null,
        userErrors: [{ code: 'INVALID_URL', message: expect.stringContaining('WEBHOOK_ALLOWED_HOSTS') }],
      });
    }
    expect(await subscriptionRows(harness, ida)).toBe(0);
    await subscribe(harness, ida, 'https://a.example.org/x');
    await subscribe(harness, ida, 'https://hooks.example.com/x');
    expect(await subscriptionRows(harness, ida)).toBe(2);
  });
});
