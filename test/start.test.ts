import { spawn } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { adminQuery, withDatabase } from './databases';

const ROOT = join(__dirname, '..');

describe('npm start', () => {
  it('migrates and seeds an empty database, serves the supergraph, and drains on SIGTERM', async () => {
    const adminUrl = process.env.TEST_ADMIN_URL!;
    const name = `${process.env.TEST_TEMPLATE_DB}_start`;
    await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    const child = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), ['scripts/start.ts'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: withDatabase(adminUrl, name), GATEWAY_PORT: '0', ACCOUNTS_PORT: '0', CATALOG_PORT: '0', REVIEWS_PORT: '0', SEED_SCALE: '1', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setInterval(() => {
          const match = output.match(/ready in [\d.]+ s: (http:\/\/\S+)/);
          if (match) {
            clearInterval(timer);
            resolve(match[1]!);
          }
        }, 50);
        exited.then(() => {
          clearInterval(timer);
          reject(new Error(`npm start exited early:\n${output}`));
        });
      });
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ products(first: 50) { edges { node { title reviewCount reviews(first: 1) { edges { node { author { displayName } } } } } } } }' }),
      });
      const body = (await response.json()) as any;
      expect(body.errors).toBeUndefined();
      expect(body.data.products.edges).toHaveLength(50);
      expect(body.data.products.edges.some((e: any) => e.node.reviews.edges[0]?.node.author.displayName)).toBe(true);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    }
  });
});
