// @ts-check
// The browser side of GET /graphiql: GraphiQL 5 with the explorer plugin, bundled by build.ts.
// Type-checked on its own (gateway/explorer/tsconfig.json: DOM types, JSX); the service's tsconfig
// leaves .jsx files out.
import { explorerPlugin } from '@graphiql/plugin-explorer';
import { GraphiQL } from 'graphiql';
// @ts-expect-error react-dom ships no types (and @types/react-dom is not installed): typed just below.
import { createRoot as untypedCreateRoot } from 'react-dom/client';
import 'graphiql/style.css';
import '@graphiql/plugin-explorer/style.css';
import './app.css';

/** @type {(container: Element) => { render(children: import('react').ReactNode): void }} */
const createRoot = untypedCreateRoot;

/**
 * What the page tells the bundle (a JSON <script> the server writes; it is data, so the CSP allows it).
 * @typedef {{ endpoint: string, workers: { editor: string, graphql: string, json: string } }} PageConfig
 */
/** @type {PageConfig} */
const config = JSON.parse(document.getElementById('graphiql-config')?.textContent ?? '{}');

// Monaco asks for a web worker per language service. Each is its own bundle served from this origin
// (the hashed URLs come from the page), so no blob: or CDN worker is ever created.
/** @type {any} */ (globalThis).MonacoEnvironment = {
  /** @param {string} _workerId @param {string} label */
  getWorker(_workerId, label) {
    const url =
      label === 'json' ? config.workers.json : label === 'graphql' ? config.workers.graphql : config.workers.editor;
    return new Worker(url, { name: label });
  },
};

/**
 * Every operation is a same-origin JSON POST: Apollo's CSRF prevention accepts it as is, and
 * the headers typed in GraphiQL's headers editor (e.g. Authorization) go along.
 * @type {import('graphiql').GraphiQLProps['fetcher']}
 */
const fetcher = async (params, options) => {
  const response = await fetch(config.endpoint, {
    method: 'POST',
    headers: {
      accept: 'application/graphql-response+json, application/json',
      ...options?.headers,
      'content-type': 'application/json',
    },
    body: JSON.stringify(params),
    credentials: 'same-origin',
  });
  return response.json();
};

// ?query=…&variables=… open GraphiQL on that operation (shareable links). Headers are never read from
// the URL: a link must not be able to make its reader send the link author's token.
const search = new URLSearchParams(location.search);
const explorer = explorerPlugin();

const root = document.getElementById('graphiql');
if (!root) throw new Error('The page has no #graphiql element.');
createRoot(root).render(
  <GraphiQL
    fetcher={fetcher}
    plugins={[explorer]}
    initialQuery={search.get('query') ?? undefined}
    initialVariables={search.get('variables') ?? undefined}
    defaultEditorToolsVisibility={search.has('variables') ? 'variables' : undefined}
  />,
);
