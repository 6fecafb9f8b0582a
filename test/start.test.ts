/**
 * `npm start` as users run it: through npm, in production mode. It drains a request in flight on SIGTERM
 * and on SIGINT and exits 0, with an external and with the embedded PostgreSQL; a start-up failure says
 * what is wrong and what to do, never `undefined`.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadSecrets } from '../lib/secrets';
import { adminQuery, freePort, withDatabase } from './databases';
import { exitCode, npmStart, until, type Started } from './service';

const PRODUCTS = JSON.stringify({
  query: '{ products(first: 20) { edges { node { title price { amountCents } } } } }',
});

/**
 * A request whose body is half sent, so it is in flight until `finish()` sends the rest; `reached`
 * resolves once the server has its headers (it answers `Expect: 100-continue`).
 */
function inFlight(url: string) {
  const body = Buffer.from(PRODUCTS);
  const request = http.request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': body.length, expect: '100-continue' },
  });
  const reached = new Promise<void>((resolve) => request.once('continue', () => resolve()));
  request.flushHeaders();
  const response = new Promise<{ status: number; body: any }>((resolve, reject) => {
    request.on('response', (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    request.on('error', reject);
  });
  return {
    reached: reached.then(() => void request.write(body.subarray(0, 20))),
    finish: () => {
      request.end(body.subarray(20));
      return response;
    },
  };
}

/** Holds a request in flight, sends `signal`, completes the request: the whole answer arrives and the process exits 0. */
async function drainsOn(service: Started, signal: NodeJS.Signals) {
  const url = await service.ready;
  const held = inFlight(url);
  // The request has reached the server (its headers are parsed) before the signal.
  await held.reached;
  service.child.kill(signal);
  await until(() => service.output().includes('draining'));
  const { status, body } = await held.finish();
  expect(status).toBe(200);
  expect(body.errors).toBeUndefined();
  expect(body.data.products.edges).toHaveLength(20);
  expect(
    body.data.products.edges.every((edge: any) => edge.node.title && Number.isInteger(edge.node.price.amountCents)),
  ).toBe(true);
  expect(await service.exited).toBe(0);
}

describe('npm start', () => {
  const adminUrl = process.env.TEST_ADMIN_URL!;
  const databases: string[] = [];
  const running: Started[] = [];
  const database = async (suffix: string) => {
    const name = `${process.env.TEST_TEMPLATE_DB}_${suffix}`;
    await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    databases.push(name);
    return withDatabase(adminUrl, name);
  };
  const start = async (env: NodeJS.ProcessEnv, script?: string) => {
    const service = await npmStart(env, script);
    running.push(service);
    return service;
  };
  afterAll(async () => {
    for (const service of running) service.killAll();
    for (const name of databases)
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  });

  it('with DATABASE_URL: migrates and seeds, serves in production mode, and on SIGTERM finishes the request in flight and exits 0', async () => {
    const service = await start({ DATABASE_URL: await database('start'), INTROSPECTION: 'off', EXPLORER: 'off' });
    const url = await service.ready;
    // Production mode by default (nothing in the environment says so), and what it used to switch is a setting.
    expect(service.output()).toMatch(/"mode":"production".*storefront supergraph ready/);
    const introspection = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __schema { queryType { name } } }' }),
    }).then((response) => response.json() as Promise<any>);
    expect(introspection.data).toBeUndefined();
    expect(introspection.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect((await fetch(new URL('/graphiql', url))).status).toBe(404);
    const landing = await fetch(url, { headers: { accept: 'text/html' } });
    expect(await landing.text()).not.toMatch(/sandbox|graphiql/i);
    await drainsOn(service, 'SIGTERM');
  }, 60_000);

  it('with the embedded PostgreSQL: refuses a second start on the same data, then on SIGINT finishes the request in flight, stops PostgreSQL and exits 0', async () => {
    // An owner-only data folder, as an older version (or a test run as root) left it: PostgreSQL,
    // which runs as the `postgres` user under root, must still get in.
    const checkout = mkdtempSync(join(tmpdir(), 'start-embedded-'));
    chmodSync(checkout, 0o755);
    const dataDir = join(checkout, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    const pgPort = await freePort();
    const service = await start({ DATABASE_URL: '', DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(pgPort) });
    await service.ready;
    if (process.getuid?.() === 0) expect(statSync(dataDir).mode & 0o001).toBe(0o001);

    const second = await start({ DATABASE_URL: '', DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort()) });
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(/data folder .*postgres is in use by pid \d+ .*probably another `npm start`/);
    // A script on the same data while the service runs says the same, not `undefined`.
    const migrate = await start(
      { DATABASE_URL: '', DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(pgPort) },
      'db:migrate',
    );
    expect(await migrate.exited).toBe(1);
    expect(migrate.output()).toMatch(/is in use by pid \d+/);
    expect(migrate.output()).not.toMatch(/undefined/);

    await drainsOn(service, 'SIGINT');
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);

    // A lock left behind by a killed server, whose pid now belongs to another program (this test's):
    // not a reason to refuse.
    const port = await freePort();
    writeFileSync(
      join(dataDir, 'postgres', 'postmaster.pid'),
      `${process.pid}\n${join(dataDir, 'postgres')}\n0\n${port}\n`,
    );
    const again = await start({ DATABASE_URL: '', DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(port) });
    // SIGTERM while it is still starting (PostgreSQL up, the servers not yet): it finishes starting,
    // drains, stops PostgreSQL and exits 0, leaving nothing running.
    await until(() => again.output().includes('embedded PostgreSQL running'));
    again.child.kill('SIGTERM');
    expect(await again.exited).toBe(0);
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
  }, 120_000);

  it('exits 1 saying how to fix a folder the postgres user cannot enter (when run as root)', async () => {
    // mkdtemp makes an owner-only folder, which this process does not open for others on its own.
    const dataDir = join(mkdtempSync(join(tmpdir(), 'start-closed-')), 'data');
    const service = await start({ DATABASE_URL: '', DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort()) });
    if (process.getuid?.() !== 0) {
      // Not root: PostgreSQL runs as this user, who can enter the folder.
      await service.ready;
      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
      return;
    }
    // Once on CI this did not exit within the test's 60 s: say what it printed if it happens again.
    expect(await exitCode(service)).toBe(1);
    expect(service.output()).toMatch(
      /PostgreSQL runs as the "postgres" user, which cannot enter \S+start-closed-\S+ \(mode 700\).*Run chmod o\+x/,
    );
  }, 60_000);

  it.each([
    [
      'its gateway port is taken',
      'GATEWAY_PORT',
      /Port (\d+) on 127\.0\.0\.1 \(GATEWAY_PORT\) is already in use by pid (\d+) .*Stop that process, or set GATEWAY_PORT/,
    ],
    [
      'a subgraph port is taken',
      'SUBGRAPH_CATALOG_PORT',
      /Port (\d+) on 127\.0\.0\.1 \(SUBGRAPH_CATALOG_PORT\) is already in use by pid (\d+) .*set SUBGRAPH_CATALOG_PORT/,
    ],
  ])(
    'exits 1 naming the process when %s',
    async (_name, setting, message) => {
      const blocker = net.createServer().listen(0, '127.0.0.1');
      await new Promise((resolve) => blocker.once('listening', resolve));
      const { port } = blocker.address() as AddressInfo;
      try {
        const service = await start({
          DATABASE_URL: await database(`port_${setting.toLowerCase()}`),
          [setting]: String(port),
        });
        expect(await service.exited).toBe(1);
        const [, named, pid] = message.exec(service.output()) ?? [];
        expect(named).toBe(String(port));
        // The holder is this test process.
        expect(pid).toBe(String(process.pid));
      } finally {
        blocker.close();
      }
    },
    60_000,
  );

  it('npm run start:gateway: production mode, its heap bounded (gateway/memory.md), SIGTERM exits 0', async () => {
    const gateway = await start({ GATEWAY_PORT: String(await freePort()) }, 'start:gateway');
    await until(() => gateway.output().includes('gateway ready'), 30_000);
    const ready = JSON.parse(
      gateway
        .output()
        .split('\n')
        .find((line) => line.includes('gateway ready'))!,
    ) as {
      mode: string;
      heapLimitMb: number;
    };
    expect(ready.mode).toBe('production');
    // 256 MiB of old space and three 8 MiB semi-spaces, where V8's default on this machine is gigabytes.
    expect(ready.heapLimitMb).toBeGreaterThanOrEqual(256);
    expect(ready.heapLimitMb).toBeLessThanOrEqual(320);
    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toBe(0);
  }, 60_000);

  it('exits 1 saying what to do when DATABASE_URL names a missing database or an unreachable server', async () => {
    const missing = await start({ DATABASE_URL: withDatabase(adminUrl, 'no_such_database_here') });
    expect(await missing.exited).toBe(1);
    expect(missing.output()).toMatch(
      /The database "no_such_database_here" named in DATABASE_URL does not exist on .*createdb no_such_database_here/,
    );
    const unreachable = await start({ DATABASE_URL: `postgresql://postgres@127.0.0.1:${await freePort()}/postgres` });
    expect(await unreachable.exited).toBe(1);
    expect(unreachable.output()).toMatch(/Cannot reach PostgreSQL at 127\.0\.0\.1:\d+ \(DATABASE_URL\): ECONNREFUSED/);
    // The local server trusts local connections: an unknown role is how it refuses credentials here.
    const stranger = await start({ DATABASE_URL: `postgresql://no_such_role_here@${new URL(adminUrl).host}/postgres` });
    expect(await stranger.exited).toBe(1);
    expect(stranger.output()).toMatch(
      /PostgreSQL at \S+ refused the credentials of DATABASE_URL \(user "no_such_role_here"\)\. Fix the user or password/,
    );
    for (const service of [missing, unreachable, stranger]) expect(service.output()).not.toMatch(/undefined|\n\s+at /);
  }, 60_000);
});

// The folder tests create for their own embedded servers is traversable, as DATA_DIR must be.
test('DATA_DIR made by loadSecrets stays traversable for the postgres user', () => {
  const DATA_DIR = join(mkdtempSync(join(tmpdir(), 'secrets-dir-')), 'data');
  loadSecrets({ DATA_DIR });
  expect(statSync(DATA_DIR).mode & 0o001).toBe(0o001);
});
