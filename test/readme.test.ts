/**
 * Every shell snippet in the README runs as pasted, in order, against a service started as users
 * start it (`npm start`). A snippet is preceded by `<!-- readme-test: skip (why) -->` when it starts or
 * installs the service itself, or `<!-- readme-test: expect "text" … -->` listing what its output must
 * show. The only change made to a snippet is the gateway's port (4000 in the README, a free one here).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { adminQuery, withDatabase } from './databases';
import { npmStart, type Started } from './service';

const ROOT = join(__dirname, '..');
const REDIS_AVAILABLE = process.env.TEST_REDIS_AVAILABLE !== '0';

interface Snippet {
  line: number;
  code: string;
  skip?: string;
  expect: string[];
}

/** The README's ```sh blocks with the directive in the comment just before each. */
function snippets(markdown: string): Snippet[] {
  const found: Snippet[] = [];
  const pattern = /(?:<!-- readme-test: (.*?) -->\n)?```sh\n([\s\S]*?)```/g;
  for (let match = pattern.exec(markdown); match; match = pattern.exec(markdown)) {
    const directive = match[1] ?? '';
    const skip = /^skip\b/.test(directive) ? directive : undefined;
    const expected = [...directive.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\"/g, '"'));
    found.push({ line: markdown.slice(0, match.index).split('\n').length, code: match[2]!, skip, expect: expected });
  }
  return found;
}

const all = snippets(readFileSync(join(ROOT, 'README.md'), 'utf8'));

test('the README renders: every code fence is closed', () => {
  const fences = readFileSync(join(ROOT, 'README.md'), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('```'));
  expect(fences.length % 2).toBe(0);
  // Openings carry a language or nothing, closings nothing: pairs read opening, closing.
  for (let i = 1; i < fences.length; i += 2) expect(fences[i]).toBe('```');
});

test('every shell snippet in the README says whether it runs here and what it shows', () => {
  expect(all.length).toBeGreaterThanOrEqual(5);
  for (const snippet of all) expect(snippet.skip !== undefined || snippet.expect.length > 0).toBe(true);
});

describe('the README, pasted into a shell', () => {
  let service: Started;
  let url: URL;
  let env: NodeJS.ProcessEnv;
  const database = `${process.env.TEST_TEMPLATE_DB}_readme`;
  const adminUrl = process.env.TEST_ADMIN_URL!;

  beforeAll(async () => {
    await adminQuery(adminUrl, `CREATE DATABASE ${pg.escapeIdentifier(database)}`);
    env = {
      DATABASE_URL: withDatabase(adminUrl, database),
      // Secrets generated here and read by `npm run token` in the snippets, as on a fresh checkout.
      DATA_DIR: mkdtempSync(join(tmpdir(), 'readme-')),
      REDIS_NAMESPACE: database,
      ...(REDIS_AVAILABLE ? { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379' } : {}),
    };
    service = await npmStart({ ...env, LOG_LEVEL: 'warn' });
    url = new URL(await service.ready);
  }, 60_000);

  afterAll(async () => {
    service?.child.kill('SIGTERM');
    await service?.exited;
    await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
  });

  const runnable = all.filter((snippet) => !snippet.skip);
  it.each(runnable.map((snippet) => [snippet.line, snippet] as const))(
    'README line %i runs and shows what it says',
    async (_line, snippet) => {
      if (!REDIS_AVAILABLE && snippet.code.includes('REDIS_URL=')) {
        console.warn(`README line ${snippet.line} skipped: it needs Redis, and none answers at TEST_REDIS_URL.`);
        return;
      }
      const code = snippet.code.replaceAll('localhost:4000', `localhost:${url.port}`);
      const { stdout, stderr } = await promisify(execFile)('bash', ['-e', '-o', 'pipefail', '-c', code], {
        cwd: ROOT,
        // What the reader's shell has: their environment, with the service's settings a deployment would export.
        env: {
          ...process.env,
          NODE_ENV: 'production',
          ...env,
          REDIS_URL: snippet.code.includes('REDIS_URL=') ? env.REDIS_URL : '',
        },
        timeout: 60_000,
      });
      const output = stdout + stderr;
      for (const text of snippet.expect) expect(output).toContain(text);
      expect(output).not.toMatch(/INTERNAL_SERVER_ERROR|command not found|undefined/);
    },
    90_000,
  );
});
