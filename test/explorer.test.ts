/**
 * GraphiQL at /graphiql, bundled from npm and served by the gateway (gateway/explorer), and the landing
 * page's fallback to it. The HTTP checks always run; the browser ones drive Debian's headless Chromium
 * through playwright-core and are skipped, with a notice, where no Chromium can be launched.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BrowserContext, BrowserType, Page } from 'playwright-core';
import { ensureExplorerBundle } from '../gateway/explorer/build';
import { GRAPHIQL_CSP } from '../gateway/explorer/routes';
import { generateDataset } from '../prisma/seed';
import { STOREFRONT_PAGE } from '../scripts/operations';
import { FIXTURE_SCALE } from './global-setup';
import { useHarness } from './harness';

const ROOT = join(__dirname, '..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SCREENSHOT = join(ROOT, 'test-results', 'explorer.png');

/** Why Chromium cannot run here, or null when a headless one starts and renders a page (about 2 s). */
function chromiumUnavailable(): string | null {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`;
  const profile = mkdtempSync(join(tmpdir(), 'chromium-check-'));
  try {
    const run = spawnSync(CHROMIUM, [...CHROMIUM_ARGS, `--user-data-dir=${profile}`, '--dump-dom', 'about:blank'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (run.error) return `${CHROMIUM} could not be started: ${run.error.message}`;
    if (!run.stdout.includes('<body>'))
      return `${CHROMIUM} did not render a page (exit ${run.status}): ${run.stderr.trim().split('\n').slice(-2).join(' ')}`;
    return null;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

const unavailable = chromiumUnavailable();
if (unavailable) console.warn(`\nSkipping the GraphiQL browser tests (test/explorer.test.ts): ${unavailable}.`);
const describeWithChromium: jest.Describe = unavailable ? describe.skip : describe;

const dataset = generateDataset(FIXTURE_SCALE);
/** The storefront's first product (newest first, as the gateway lists them). */
const newestProduct = [...dataset.products].sort(
  (a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1),
)[0];

const suite = useHarness();
const origin = () => new URL(suite.harness.gatewayUrl).origin;

describe('GraphiQL at /graphiql', () => {
  it('is a page of this origin only: CSP, revalidated HTML, hashed assets cached for good (gzip when accepted)', async () => {
    const page = await fetch(`${origin()}/graphiql`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toBe(GRAPHIQL_CSP);
    expect(GRAPHIQL_CSP).not.toMatch(/unsafe-eval|blob:|https?:/);
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const etag = page.headers.get('etag');
    expect(etag).toBeTruthy();
    // (fetch itself would add Cache-Control: no-cache to a conditional request, which forbids a 304.)
    expect(
      (await fetch(`${origin()}/graphiql`, { headers: { 'if-none-match': etag!, 'cache-control': 'max-age=0' } }))
        .status,
    ).toBe(304);

    const html = await page.text();
    const assets = [...html.matchAll(/\/graphiql\/assets\/[\w.-]+/g)].map(([path]) => path);
    // The stylesheet, the module and the three Monaco workers (named in the page's config).
    expect(assets).toHaveLength(5);
    expect(html).not.toMatch(/https?:\/\//);
    for (const path of assets) {
      const asset = await fetch(`${origin()}${path}`, { headers: { 'accept-encoding': 'gzip' } });
      expect(asset.status).toBe(200);
      expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(asset.headers.get('content-encoding')).toBe('gzip');
      expect(asset.headers.get('content-type')).toMatch(
        path.endsWith('.css') ? /^text\/css/ : /^(text|application)\/javascript/,
      );
    }
    const plain = await fetch(`${origin()}${assets[0]}`, { headers: { 'accept-encoding': 'identity' } });
    expect(plain.headers.get('content-encoding')).toBeNull();
    expect((await plain.text()).length).toBeGreaterThan(1000);

    const missing = await fetch(`${origin()}/graphiql/assets/nothing-here.js`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as any).errors[0].extensions.code).toBe('NOT_FOUND');
  });

  it('is linked from the landing page, which still embeds Apollo Sandbox', async () => {
    const landing = await fetch(suite.harness.gatewayUrl, { headers: { accept: 'text/html' } });
    expect(landing.status).toBe(200);
    const html = await landing.text();
    expect(html).toMatch(/embeddable-sandbox/);
    expect(html).toContain('href="/graphiql"');
  });

  it('builds its bundle when it is missing (as a gateway start does), then only reads it', async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'graphiql-bundle-'));
    try {
      const first = await ensureExplorerBundle(outDir);
      expect(first.built).toBe(true);
      expect(readdirSync(join(outDir, 'assets'))).toEqual(
        expect.arrayContaining([first.manifest.script, first.manifest.style, ...Object.values(first.manifest.workers)]),
      );
      const started = Date.now();
      const second = await ensureExplorerBundle(outDir);
      expect(second).toEqual({ manifest: first.manifest, built: false });
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('has browser code that type-checks (gateway/explorer/tsconfig.json: DOM types, JSX)', async () => {
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    await expect(
      promisify(execFile)(process.execPath, [tsc, '-p', join(ROOT, 'gateway', 'explorer')], { cwd: ROOT }),
    ).resolves.toBeDefined();
  }, 60_000);
});

describeWithChromium('GraphiQL in headless Chromium', () => {
  let chromium: BrowserType;
  beforeAll(async () => {
    ({ chromium } = await import('playwright-core'));
  });

  /**
   * Chromium with a fresh profile, its requests recorded; anything for another host is answered as if
   * the machine were offline (so the outcome is the same with or without internet), or held forever.
   */
  async function open(options: { elsewhere?: 'offline' | 'hang' } = {}) {
    const profile = mkdtempSync(join(tmpdir(), 'chromium-explorer-'));
    const context: BrowserContext = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1400, height: 900 },
    });
    const requests: string[] = [];
    context.on('request', (request) => requests.push(request.url()));
    await context.route(
      (url) => url.origin !== origin() && url.protocol !== 'data:' && url.protocol !== 'blob:',
      (route) => (options.elsewhere === 'hang' ? undefined : route.abort('internetdisconnected')),
    );
    // Content-Security-Policy violations, as the page sees them.
    await context.addInitScript(() => {
      const seen: string[] = [];
      (globalThis as any).__cspViolations = seen;
      (globalThis as any).document.addEventListener('securitypolicyviolation', (event: any) =>
        seen.push(`${event.violatedDirective} ${event.blockedURI}`),
      );
    });
    const page: Page = context.pages()[0] ?? (await context.newPage());
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning')
        errors.push(`console.${message.type()}: ${message.text()}`);
    });
    const close = async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    };
    return { close, page, requests, errors };
  }

  /** What a Monaco editor shows (its rendered lines, with Monaco's non-breaking spaces as spaces). */
  const editorText = (page: Page, selector: string) =>
    page
      .locator(`${selector} .view-lines`)
      .first()
      .evaluate((element: any) => String(element.textContent ?? '').replace(/\u00a0/g, ' '));

  it('runs the storefront query typed into the editor, shows the result, with the explorer plugin and no other host', async () => {
    const { close, page, requests, errors } = await open();
    try {
      await page.goto(`${origin()}/graphiql`);
      const queryEditor = page.locator('.graphiql-query-editor .monaco-editor').first();
      await queryEditor.waitFor({ timeout: 20_000 });

      // The explorer plugin's sidebar button, and its panel listing the schema's root fields (introspected through /graphql).
      const explorerButton = page.getByRole('button', { name: 'Show GraphiQL Explorer' });
      await explorerButton.waitFor();
      await explorerButton.click();
      await page.locator('.graphiql-explorer-root').first().waitFor({ timeout: 15_000 });
      await page
        .locator('.graphiql-explorer-root')
        .getByText('products', { exact: true })
        .first()
        .waitFor({ timeout: 15_000 });

      // Type the query and the variables. Monaco auto-closes brackets after the cursor as they are
      // typed: whatever is after the cursor once the text is in goes.
      const typeInto = async (text: string) => {
        await page.keyboard.press('ControlOrMeta+A');
        await page.keyboard.press('Delete');
        await page.keyboard.insertText(text);
        await page.keyboard.press('Shift+ControlOrMeta+End');
        await page.keyboard.press('Delete');
      };
      await queryEditor.click();
      await typeInto(STOREFRONT_PAGE.trim());
      // Monaco indented each typed line further; GraphiQL's prettify (Prettier, loaded on first use) tidies it.
      await page.getByRole('button', { name: /^Prettify query/ }).click();
      await page.waitForFunction(() =>
        Array.from((globalThis as any).document.querySelectorAll('.graphiql-query-editor .view-line')).some(
          (line: any) => String(line.textContent ?? '').replace(/\u00a0/g, ' ') === '  products(first: $first) {',
        ),
      );
      await queryEditor.click();
      await page.keyboard.press('ControlOrMeta+Home');
      expect(await editorText(page, '.graphiql-query-editor')).toContain('query StorefrontPage($first: Int!)');
      await page.getByRole('button', { name: 'Variables' }).first().click();
      const variablesEditor = page.locator('.graphiql-editor-tool .monaco-editor').first();
      await variablesEditor.waitFor();
      await variablesEditor.click();
      await typeInto('{"first": 5}');

      const posted = page.waitForRequest(
        (request) =>
          request.url() === suite.harness.gatewayUrl &&
          request.method() === 'POST' &&
          (request.postData() ?? '').includes('StorefrontPage'),
      );
      await page.locator('.graphiql-execute-button').first().click();
      const request = await posted;
      expect(request.headers()['content-type']).toBe('application/json');
      const body = JSON.parse(request.postData()!);
      expect(body.variables).toEqual({ first: 5 });
      expect(body.query).toContain('query StorefrontPage($first: Int!)');

      // The newest seeded product, as the result pane shows it.
      mkdirSync(join(ROOT, 'test-results'), { recursive: true });
      await page
        .waitForFunction(
          (title) =>
            Array.from((globalThis as any).document.querySelectorAll('.graphiql-response .view-lines')).some(
              (element: any) =>
                String(element.textContent ?? '')
                  .replace(/\u00a0/g, ' ')
                  .includes(`"title": "${title}"`),
            ),
          newestProduct.title,
          { timeout: 20_000 },
        )
        .catch(async (error: Error) => {
          await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-failed.png') });
          throw new Error(
            `${error.message}\nThe result pane shows: ${await editorText(page, '.graphiql-response').catch(() => '(nothing)')}`,
          );
        });
      const result = await editorText(page, '.graphiql-response');
      expect(result).toContain('"products"');
      expect(result).not.toContain('"errors"');

      await page.screenshot({ path: SCREENSHOT });

      // Monaco's workers were started from this origin's assets.
      expect(
        requests.filter((url) => /\/graphiql\/assets\/(editor|graphql|json)\.worker-/.test(url)).length,
      ).toBeGreaterThanOrEqual(2);
      expect(
        requests.filter(
          (url) => !url.startsWith(`${origin()}/`) && !url.startsWith('data:') && !url.startsWith('blob:'),
        ),
      ).toEqual([]);
      expect(await page.evaluate(() => (globalThis as any).__cspViolations)).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  }, 90_000);

  it('the landing page goes to /graphiql when Apollo Sandbox cannot be loaded', async () => {
    const { close, page, requests } = await open({ elsewhere: 'offline' });
    try {
      await page.goto(suite.harness.gatewayUrl);
      await page.waitForURL(`${origin()}/graphiql`, { timeout: 15_000 });
      await page.locator('.graphiql-query-editor .monaco-editor').first().waitFor({ timeout: 20_000 });
      // It tried Sandbox first.
      expect(requests.some((url) => url.includes('embeddable-sandbox'))).toBe(true);
    } finally {
      await close();
    }
  }, 60_000);

  it("the landing page goes to /graphiql when Sandbox's script never arrives (after its timeout), and shows the link meanwhile", async () => {
    const { close, page } = await open({ elsewhere: 'hang' });
    try {
      await page.goto(suite.harness.gatewayUrl, { waitUntil: 'domcontentloaded' });
      await page.locator('#graphiql-link').waitFor({ state: 'visible', timeout: 5_000 });
      expect(page.url()).toBe(suite.harness.gatewayUrl);
      await page.waitForURL(`${origin()}/graphiql`, { timeout: 20_000 });
    } finally {
      await close();
    }
  }, 60_000);
});
