/**
 * What counts as the database being unavailable, from errors a real PostgreSQL (and a real dead port, a
 * server that never answers, a connection cut mid-statement) makes pg and Prisma raise; and the outage
 * log those failures write.
 */
import { randomBytes } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { GraphQLError } from 'graphql';
import pg from 'pg';
import { createDatabaseClient, isConnectionFailure, type DatabaseClient } from './db';
import { databaseOutageAsError, isDatabaseUnavailable, logDatabaseOutages } from './dependency-outage';
import { maskUnexpectedErrors } from './errors';
import type { Logger } from './logger';

const adminUrl = () => {
  const url = process.env.TEST_ADMIN_URL;
  if (!url) throw new Error('Run through jest: test/global-setup.ts sets TEST_ADMIN_URL.');
  return url;
};

/** The admin database under an application_name of its own, so a test terminates only its own sessions. */
function taggedUrl(base = adminUrl()) {
  const name = `outage_test_${randomBytes(4).toString('hex')}`;
  const url = new URL(base);
  url.searchParams.set('application_name', name);
  return { url: url.toString(), name };
}

/** Terminates every session of `applicationName` (57P01 admin shutdown, as a server restart sends). */
async function terminateSessions(applicationName: string): Promise<number> {
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    const { rowCount } = await admin.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
      [applicationName],
    );
    return rowCount ?? 0;
  } finally {
    await admin.end();
  }
}

/** Waits until a session of `applicationName` is running a statement. */
async function untilActive(applicationName: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    for (let i = 0; i < 200; i += 1) {
      const { rowCount } = await admin.query(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
        [applicationName],
      );
      if (rowCount) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`no active session of ${applicationName}`);
  } finally {
    await admin.end();
  }
}

const clients: DatabaseClient[] = [];
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close().catch(() => undefined)));
  await Promise.all(
    servers.splice(0).map((server) => new Promise((resolve) => server.close(() => resolve(undefined)))),
  );
});

function database(url: string, options: Parameters<typeof createDatabaseClient>[1] = {}): DatabaseClient {
  const client = createDatabaseClient(url, { poolSize: 2, ...options });
  clients.push(client);
  return client;
}

/** A TCP server on a free port: `onConnection` decides what to do with each connection. */
async function tcpServer(onConnection: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    onConnection(socket);
  });
  server.on('close', () => sockets.forEach((socket) => socket.destroy()));
  const close = server.close.bind(server);
  server.close = (callback) => {
    for (const socket of sockets) socket.destroy();
    return close(callback);
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return (server.address() as AddressInfo).port;
}

const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected the statement to fail');
    },
    (error: unknown) => error,
  );

describe('isDatabaseUnavailable', () => {
  it('is true for a database nobody listens for (ECONNREFUSED: Prisma P1001, or P2010 for raw SQL)', async () => {
    const unreachable = database('postgresql://postgres@127.0.0.1:1/nowhere');
    const model = await failureOf(unreachable.prisma.product.findMany({ take: 1 }));
    expect(model).toMatchObject({ code: 'P1001' });
    const raw = await failureOf(unreachable.prisma.$queryRaw`SELECT 1`);
    expect(raw).toMatchObject({
      code: 'P2010',
      meta: { driverAdapterError: { cause: { kind: 'DatabaseNotReachable' } } },
    });
    for (const error of [model, raw]) expect(isDatabaseUnavailable(error)).toBe(true);
    // pg's own error, as the pool sees it.
    const driver = await failureOf(
      new pg.Client({ connectionString: 'postgresql://postgres@127.0.0.1:1/nowhere' }).connect(),
    );
    expect(driver).toMatchObject({ code: 'ECONNREFUSED' });
    expect(isConnectionFailure(driver)).toBe(true);
  });

  it('is true when a server accepts connections but never answers, after the connect timeout', async () => {
    const port = await tcpServer(() => {});
    const startedAt = Date.now();
    const error = await failureOf(
      database(`postgresql://postgres@127.0.0.1:${port}/silent`, { connectTimeoutMs: 200 }).prisma.$queryRaw`SELECT 1`,
    );
    expect(Date.now() - startedAt).toBeLessThan(2_000);
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it('is true when the server ends the session (57P01 admin shutdown, as in a restart)', async () => {
    const { url, name } = taggedUrl();
    const db = database(url);
    const running = failureOf(db.prisma.$queryRawUnsafe('SELECT pg_sleep(10)::text'));
    await untilActive(name);
    expect(await terminateSessions(name)).toBeGreaterThan(0);
    const error = await running;
    expect(error).toMatchObject({ code: 'P2010', meta: { driverAdapterError: { cause: { originalCode: '57P01' } } } });
    expect(isDatabaseUnavailable(error)).toBe(true);
    // The pool replaces the connection: the next statement works.
    expect(await db.ping()).toBe(true);
  });

  it('is true when the connection is cut in the middle of a statement', async () => {
    const target = new URL(adminUrl());
    const sockets: net.Socket[] = [];
    const port = await tcpServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      upstream.on('error', () => {});
      sockets.push(client, upstream);
      client.pipe(upstream).pipe(client);
    });
    const url = new URL(adminUrl());
    url.host = `127.0.0.1:${port}`;
    const running = failureOf(database(url.toString()).prisma.$queryRawUnsafe('SELECT pg_sleep(10)::text'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const socket of sockets) socket.destroy();
    const error = await running;
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it('is false for a statement that fails on its own, a refused login and a missing database', async () => {
    const db = database(adminUrl());
    const division = await failureOf(db.prisma.$queryRawUnsafe('SELECT 1/0'));
    const syntax = await failureOf(db.prisma.$queryRawUnsafe('SELEC 1'));
    const role = new URL(adminUrl());
    role.username = `no_such_role_${randomBytes(4).toString('hex')}`;
    const login = await failureOf(database(role.toString()).prisma.$queryRaw`SELECT 1`);
    const missing = new URL(adminUrl());
    missing.pathname = `/no_such_database_${randomBytes(4).toString('hex')}`;
    const absent = await failureOf(database(missing.toString()).prisma.$queryRaw`SELECT 1`);
    for (const error of [division, syntax, login, absent]) expect(isDatabaseUnavailable(error)).toBe(false);
    for (const value of [null, undefined, 'ECONNREFUSED', new Error('Connection terminated unexpectedly'), {}])
      expect(isDatabaseUnavailable(value)).toBe(false);
    // A pool still answers after such errors: none of them was an outage.
    expect(await db.ping()).toBe(true);
  });
});

describe('maskUnexpectedErrors with databaseOutageAsError', () => {
  const logger = () => ({ error: jest.fn() });

  it('answers an outage as DEPENDENCY_UNAVAILABLE without logging it per request', async () => {
    const cause = await failureOf(database('postgresql://postgres@127.0.0.1:1/nowhere').prisma.$queryRaw`SELECT 1`);
    const log = logger();
    const format = maskUnexpectedErrors(log as unknown as Logger, { expected: databaseOutageAsError('catalog') });
    const error = new GraphQLError('whatever Prisma said', { path: ['products'], originalError: cause as Error });
    expect(format(error.toJSON(), error)).toEqual({
      message: 'The catalog database is unavailable; retry shortly.',
      path: ['products'],
      extensions: { code: 'DEPENDENCY_UNAVAILABLE', dependency: 'database', retryable: true },
    });
    expect(log.error).not.toHaveBeenCalled();
  });

  it('still masks and logs anything else', () => {
    const log = logger();
    const format = maskUnexpectedErrors(log as unknown as Logger, { expected: databaseOutageAsError('catalog') });
    const error = new GraphQLError('boom', { path: ['products'], originalError: new TypeError('boom') });
    expect(format(error.toJSON(), error)).toMatchObject({
      message: 'Internal error',
      extensions: { code: 'INTERNAL_SERVER_ERROR' },
    });
    expect(log.error).toHaveBeenCalledTimes(1);
  });
});

describe('logDatabaseOutages', () => {
  it('logs an outage once when it starts and once when a statement is answered again', async () => {
    const { url, name } = taggedUrl();
    const db = database(url, { poolSize: 4 });
    const lines: Array<{ level: 'warn' | 'info'; fields: Record<string, unknown>; msg: string }> = [];
    const stop = logDatabaseOutages('catalog', db, {
      warn: (fields, msg) => lines.push({ level: 'warn', fields: fields as Record<string, unknown>, msg }),
      info: (fields, msg) => lines.push({ level: 'info', fields: fields as Record<string, unknown>, msg }),
    });
    expect(await db.ping()).toBe(true);
    expect(lines).toEqual([]);

    const outage = async () => {
      const running = Array.from({ length: 4 }, () =>
        failureOf(db.prisma.$queryRawUnsafe('SELECT pg_sleep(10)::text')),
      );
      await untilActive(name);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await terminateSessions(name);
      for (const error of await Promise.all(running)) expect(isDatabaseUnavailable(error)).toBe(true);
    };
    await outage();
    expect(lines).toEqual([
      {
        level: 'warn',
        fields: { dependency: 'database', code: '57P01', reason: expect.any(String) },
        msg: 'catalog database unavailable: requests answer DEPENDENCY_UNAVAILABLE until it is back',
      },
    ]);

    expect(await db.ping()).toBe(true);
    expect(await db.ping()).toBe(true);
    expect(lines.slice(1)).toEqual([
      {
        level: 'info',
        fields: { dependency: 'database', downMs: expect.any(Number), failures: expect.any(Number) },
        msg: 'catalog database is back',
      },
    ]);
    expect((lines[1]!.fields.failures as number) >= 4).toBe(true);

    // The next outage is logged again; once stopped, nothing is.
    await outage();
    expect(lines.map((line) => line.level)).toEqual(['warn', 'info', 'warn']);
    expect(await db.ping()).toBe(true);
    stop();
    await outage();
    expect(await db.ping()).toBe(true);
    expect(lines.map((line) => line.level)).toEqual(['warn', 'info', 'warn', 'info']);
  });
});
