/**
 * GET /graphiql: GraphiQL 5 with the explorer plugin, served by the gateway from the bundle build.ts
 * makes (gateway/explorer/dist). The page and its workers come from this origin only.
 */
import { join } from 'node:path';
import type { Express, Request, Response } from 'express';
import type { Logger } from '../../lib/logger';
import { DEFAULT_OUT_DIR, ensureExplorerBundle, type ExplorerManifest } from './build';

/** Where GraphiQL is served. */
export const GRAPHIQL_PATH = '/graphiql';
const ASSETS_PATH = `${GRAPHIQL_PATH}/assets`;

/**
 * The page's Content-Security-Policy: everything from this origin ('self') and nothing else, except
 * - style-src 'unsafe-inline': Monaco writes its theme and decorations into <style> elements it creates
 *   at run time, and the editors' lines carry style attributes; without it the editors render unstyled;
 * - data: for fonts and images: GraphiQL's stylesheet embeds its fonts and Monaco's CSS its icons as data: URLs.
 * No 'unsafe-eval' and no blob: workers: Monaco's workers are bundled scripts loaded from /graphiql/assets.
 */
export const GRAPHIQL_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "worker-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The HTML page around the bundle (config as JSON data, which the CSP lets through: it is not run). */
export function graphiqlPage(manifest: ExplorerManifest, endpoint: string): string {
  const asset = (name: string) => `${ASSETS_PATH}/${encodeURIComponent(name)}`;
  const config = {
    endpoint,
    workers: {
      editor: asset(manifest.workers.editor),
      graphql: asset(manifest.workers.graphql),
      json: asset(manifest.workers.json),
    },
  };
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>GraphiQL · storefront gateway</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="${escapeHtml(asset(manifest.style))}" />
    <script type="application/json" id="graphiql-config">${JSON.stringify(config).replace(/</g, '\\u003c')}</script>
    <script type="module" src="${escapeHtml(asset(manifest.script))}"></script>
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <noscript>GraphiQL needs JavaScript. The API itself is at <a href="${escapeHtml(endpoint)}">${escapeHtml(endpoint)}</a>.</noscript>
  </body>
</html>
`;
}

const SECURITY_HEADERS = {
  'content-security-policy': GRAPHIQL_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

/**
 * The Express routes of GraphiQL: the page at GET /graphiql (revalidated each time: Cache-Control
 * no-cache with an ETag), its hashed assets under /graphiql/assets (cached for a year, immutable; the
 * gzip copy when the browser accepts it). Without a bundle, /graphiql answers 503 and says how to build it.
 */
export function explorerRoutes(
  manifest: ExplorerManifest | null,
  options: { outDir?: string; endpoint?: string } = {},
): (app: Express) => void {
  const assetsDir = join(options.outDir ?? DEFAULT_OUT_DIR, 'assets');
  const html = manifest ? graphiqlPage(manifest, options.endpoint ?? '/graphql') : null;
  return (app) => {
    app.get(GRAPHIQL_PATH, (_req: Request, res: Response) => {
      res.set(SECURITY_HEADERS);
      if (!html) {
        res
          .status(503)
          .type('text/plain')
          .send('GraphiQL is not built: run `npm run build:explorer`, then restart the gateway.\n');
        return;
      }
      // Express adds the ETag and answers a matching If-None-Match with 304.
      res.set('cache-control', 'no-cache').type('html').send(html);
    });
    app.get(`${ASSETS_PATH}/:name`, (req: Request<{ name: string }>, res: Response, next) => {
      const name = req.params.name;
      if (!/^[\w.-]+$/.test(name) || name.startsWith('.') || name.endsWith('.gz')) {
        next();
        return;
      }
      const gzip = /\.(js|css)$/.test(name) && req.acceptsEncodings('gzip', 'identity') === 'gzip';
      res.set(SECURITY_HEADERS);
      res.set('cache-control', 'public, max-age=31536000, immutable');
      if (/\.(js|css)$/.test(name)) res.vary('accept-encoding');
      if (gzip) res.set('content-encoding', 'gzip');
      res.type(name.replace(/\.LEGAL\.txt$/, '.txt'));
      res.sendFile(
        gzip ? `${name}.gz` : name,
        { root: assetsDir, dotfiles: 'deny', lastModified: false },
        (error?: Error & { status?: number; statusCode?: number }) => {
          if (!error || res.headersSent) return;
          res.removeHeader('content-encoding');
          res.removeHeader('cache-control');
          // A name no build produced: the service's JSON 404.
          next((error.status ?? error.statusCode) === 404 ? undefined : error);
        },
      );
    });
  };
}

/**
 * The routes for the gateway: the bundle's manifest, built first when missing or stale (a few
 * seconds, once). A failed build does not stop the gateway; /graphiql then answers 503.
 */
export async function loadExplorerRoutes(
  logger: Logger,
  options: { outDir?: string; endpoint?: string } = {},
): Promise<(app: Express) => void> {
  const started = Date.now();
  try {
    const { manifest, built } = await ensureExplorerBundle(options.outDir);
    if (built) logger.info({ ms: Date.now() - started, bytes: manifest.bytes }, 'built the GraphiQL bundle');
    return explorerRoutes(manifest, options);
  } catch (error) {
    logger.error(
      { err: error },
      'could not build the GraphiQL bundle; /graphiql answers 503 (run npm run build:explorer)',
    );
    return explorerRoutes(null, options);
  }
}
