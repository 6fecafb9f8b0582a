/**
 * The gateway's landing page (GET /graphql from a browser): Apollo's embedded Sandbox, which comes
 * from Apollo's CDN, with a way out to the gateway's own GraphiQL (/graphiql) for when it cannot load.
 */
import { randomBytes } from 'node:crypto';
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { DEFAULT_EMBEDDED_SANDBOX_VERSION } from '@apollo/server/plugin/landingPage/default';
import { GRAPHIQL_PATH } from './routes';

export const SANDBOX_SCRIPT_URL = `https://embeddable-sandbox.cdn.apollographql.com/${DEFAULT_EMBEDDED_SANDBOX_VERSION}/embeddable-sandbox.umd.production.min.js`;

export interface LandingPageOptions {
  /** Where the fallback goes. Defaults to /graphiql. */
  graphiqlPath?: string;
  /** How long the Sandbox script may take to load before the page goes to GraphiQL. Defaults to 10000 ms. */
  timeoutMs?: number;
  /** Whether Sandbox sends the browser's cookies with operations. Defaults to false. */
  includeCookies?: boolean;
}

/** Script-safe JSON (no </script> or HTML-significant characters). */
const scriptJson = (value: unknown) =>
  JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * The page: a slim bar linking to GraphiQL, and Sandbox below it. Sandbox's script is added from a
 * script of the page (nonce-allowed), so its `error` event is seen: when the script fails to load
 * (offline, CDN blocked), fails to start, or has not loaded after `timeoutMs`, the page replaces
 * itself with GraphiQL. Apollo's own embed (ApolloServerPluginLandingPageLocalDefault) cannot do
 * this: it only shows "Apollo Sandbox cannot be loaded; it appears that you might be offline."
 */
export function landingPageHtml(nonce: string, options: LandingPageOptions = {}): string {
  const graphiql = options.graphiqlPath ?? GRAPHIQL_PATH;
  const sandboxConfig = {
    target: '#embeddableSandbox',
    initialState: { includeCookies: options.includeCookies ?? false },
    hideCookieToggle: false,
    endpointIsEditable: false,
    runTelemetry: false,
    allowDynamicStyles: false,
  };
  const sandboxOrigin = new URL(SANDBOX_SCRIPT_URL).origin;
  // Apollo's own landing page allows the same hosts (script, styles, fonts, the Sandbox iframe).
  const csp = [
    `script-src 'nonce-${nonce}' ${sandboxOrigin}`,
    `style-src 'nonce-${nonce}' ${sandboxOrigin} https://fonts.googleapis.com`,
    `img-src 'self' data: ${sandboxOrigin}`,
    'frame-src https://sandbox.embed.apollographql.com',
    "object-src 'none'",
    "base-uri 'none'",
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta http-equiv="Content-Security-Policy" content="${csp}" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <link rel="icon" href="data:," />
    <title>Storefront gateway</title>
    <style nonce="${nonce}">
      body { margin: 0; overflow: hidden; font-family: system-ui, sans-serif; }
      .bar { height: 28px; line-height: 28px; padding: 0 12px; font-size: 13px; background: #0f172a; color: #e2e8f0; }
      .bar a, .fallback a { color: #7dd3fc; }
      .fallback { padding: 1em; }
      .fallback a { color: #0369a1; }
      #embeddableSandbox { position: absolute; top: 28px; left: 0; width: 100vw; height: calc(100vh - 28px); }
      #embeddableSandbox iframe { width: 100%; height: 100%; border: none; background: white; }
    </style>
  </head>
  <body>
    <div class="bar">Storefront gateway · Apollo Sandbox (from Apollo's CDN) · offline or blocked? <a id="graphiql-link" href="${graphiql}">Open GraphiQL</a> (served by this gateway)</div>
    <div class="fallback">
      <h1>Storefront gateway</h1>
      <p id="sandbox-status">Loading Apollo Sandbox… If it cannot be loaded (it comes from Apollo's CDN), this page opens <a href="${graphiql}">GraphiQL</a>, which the gateway serves itself.</p>
      <noscript><p>Without JavaScript, use <a href="${graphiql}">GraphiQL</a>.</p></noscript>
    </div>
    <div id="embeddableSandbox"></div>
    <script nonce="${nonce}">
      (function () {
        var settled = false;
        function toGraphiQL(reason) {
          if (settled) return;
          settled = true;
          document.getElementById('sandbox-status').textContent = 'Apollo Sandbox cannot be loaded (' + reason + '); opening GraphiQL…';
          location.replace(${scriptJson(graphiql)});
        }
        var timer = setTimeout(function () { toGraphiQL('timed out'); }, ${Math.max(0, options.timeoutMs ?? 10_000)});
        var script = document.createElement('script');
        script.src = ${scriptJson(SANDBOX_SCRIPT_URL)};
        script.nonce = ${scriptJson(nonce)};
        script.onerror = function () { clearTimeout(timer); toGraphiQL('its script did not load'); };
        script.onload = function () {
          clearTimeout(timer);
          if (settled) return;
          try {
            new window.EmbeddedSandbox(Object.assign(${scriptJson(sandboxConfig)}, { initialEndpoint: location.href }));
            settled = true;
          } catch (error) {
            toGraphiQL('it failed to start');
          }
        };
        document.head.appendChild(script);
      })();
    </script>
  </body>
</html>
`;
}

/**
 * Replaces ApolloServerPluginLandingPageLocalDefault: the same embedded Sandbox (with telemetry off),
 * falling back to GraphiQL (see landingPageHtml). A fresh nonce per page.
 */
export function landingPageWithGraphiQLFallback<TContext extends BaseContext>(
  options: LandingPageOptions = {},
): ApolloServerPlugin<TContext> {
  return {
    async serverWillStart() {
      return {
        async renderLandingPage() {
          return { html: async () => landingPageHtml(randomBytes(16).toString('base64'), options) };
        },
      };
    },
  };
}
