/**
 * Bundles GraphiQL 5, its explorer plugin and Monaco's web workers (editor, graphql, json) from the
 * installed npm packages with esbuild, into gateway/explorer/dist (git-ignored). The gateway serves
 * that folder at /graphiql (routes.ts): nothing is fetched from a CDN.
 *
 * `npm run build:explorer` (run by postinstall) builds it; startGateway calls ensureExplorerBundle,
 * which only reads dist/manifest.json and rebuilds when it is missing or stale.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { BuildOptions as BuildOptionsOfEsbuild, Metafile } from 'esbuild';

export const EXPLORER_DIR = __dirname;
/** Where the bundle goes. */
export const DEFAULT_OUT_DIR = join(__dirname, 'dist');

/** What a build produced: the asset names (under assets/) the page and the bundle refer to. */
export interface ExplorerManifest {
  /** Of the sources and package versions the bundle was built from (see fingerprint()). */
  fingerprint: string;
  script: string;
  style: string;
  workers: { editor: string; graphql: string; json: string };
  /** Sum of every asset's size, in bytes. */
  bytes: number;
}

/** The npm packages whose code ends up in the bundle: a new version of any of them means a rebuild. */
const BUNDLED_PACKAGES = [
  'graphiql',
  '@graphiql/react',
  '@graphiql/plugin-explorer',
  'react',
  'react-dom',
  'monaco-editor',
  'monaco-graphql',
  'graphql',
  'prettier',
  'esbuild',
];
const SOURCES = ['app.jsx', 'app.css', 'build.ts'];

function packageVersion(name: string): string {
  // Resolved from the explorer's folder as esbuild resolves it; @graphiql/react may sit under graphiql.
  for (const from of [EXPLORER_DIR, dirname(require.resolve('graphiql/package.json'))]) {
    try {
      return (
        JSON.parse(readFileSync(require.resolve(`${name}/package.json`, { paths: [from] }), 'utf8')) as {
          version: string;
        }
      ).version;
    } catch {
      // Try the next place.
    }
  }
  return 'missing';
}

/** A hash of the explorer's sources and of the bundled packages' versions (a few small file reads). */
export function fingerprint(): string {
  const hash = createHash('sha256');
  for (const file of SOURCES) hash.update(file).update(readFileSync(join(EXPLORER_DIR, file)));
  for (const name of BUNDLED_PACKAGES) hash.update(`${name}@${packageVersion(name)}\n`);
  return hash.digest('hex').slice(0, 16);
}

/** The manifest in `outDir` when it was built from the current sources and packages, else null. */
export function readManifest(outDir = DEFAULT_OUT_DIR): ExplorerManifest | null {
  try {
    const manifest = JSON.parse(readFileSync(join(outDir, 'manifest.json'), 'utf8')) as ExplorerManifest;
    const assets = [manifest.script, manifest.style, ...Object.values(manifest.workers)];
    if (manifest.fingerprint !== fingerprint() || !assets.every((asset) => existsSync(join(outDir, 'assets', asset))))
      return null;
    return manifest;
  } catch {
    return null;
  }
}

/** Writes a file under a temporary name, then renames it: a concurrent reader never sees half of it. */
async function writeAtomically(path: string, contents: Uint8Array | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, contents);
  await rename(temporary, path);
}

export interface BuildOptions {
  /** Defaults to gateway/explorer/dist. */
  outDir?: string;
  /** Deletes assets the new manifest does not name (`npm run build:explorer`). Defaults to false, since a running gateway may still serve them. */
  prune?: boolean;
}

/**
 * Builds the bundle: first the three workers (each one self-contained classic-worker script), then
 * the page's ES module (code-split: Prettier and Monaco's JSON mode load when first needed) and its
 * CSS. Every asset name carries a content hash, so assets can be cached for good. Files are written
 * one by one atomically and the manifest last: gateways starting while another process builds see
 * either the old complete bundle or the new one.
 */
export async function buildExplorer(options: BuildOptions = {}): Promise<ExplorerManifest> {
  // Loaded here, not at the top: a gateway whose bundle is already built never loads esbuild.
  const esbuild = await import('esbuild');
  const outDir = options.outDir ?? DEFAULT_OUT_DIR;
  const assetsDir = join(outDir, 'assets');
  const common = {
    absWorkingDir: EXPLORER_DIR,
    bundle: true,
    minify: true,
    write: false,
    outdir: assetsDir,
    target: 'es2022',
    legalComments: 'linked',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  } satisfies BuildOptionsOfEsbuild;
  const workers = await esbuild.build({
    ...common,
    entryPoints: [
      { in: 'monaco-editor/esm/vs/editor/editor.worker.js', out: 'editor.worker' },
      { in: 'monaco-editor/esm/vs/language/json/json.worker.js', out: 'json.worker' },
      { in: 'monaco-graphql/esm/graphql.worker.js', out: 'graphql.worker' },
    ],
    format: 'iife',
    entryNames: '[name]-[hash]',
    metafile: true,
  });
  const page = await esbuild.build({
    ...common,
    entryPoints: [{ in: './app.jsx', out: 'graphiql' }],
    format: 'esm',
    splitting: true,
    jsx: 'automatic',
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    assetNames: '[name]-[hash]',
    loader: { '.ttf': 'file', '.woff': 'file', '.woff2': 'file', '.svg': 'file', '.png': 'file' },
    // GraphiQL's prettify imports Prettier's parsers by their legacy names, CommonJS (UMD) files whose
    // exports esbuild cannot see (the import gets only `default`, and Prettier then finds no parser);
    // the ES module builds of the same plugins have them as named exports.
    alias: { 'prettier/parser-graphql': 'prettier/plugins/graphql', 'prettier/parser-babel': 'prettier/plugins/babel' },
    metafile: true,
  });
  const outputName = (metafile: Metafile, entry: string, extension: string) => {
    const found = Object.entries(metafile.outputs).find(
      ([file, output]) =>
        output.entryPoint !== undefined && basename(file).startsWith(`${entry}-`) && file.endsWith(extension),
    );
    if (!found) throw new Error(`esbuild produced no ${entry}${extension}`);
    return basename(found[0]);
  };
  const outputs = page.metafile.outputs;
  const style = Object.keys(outputs).find((file) => basename(file).startsWith('graphiql-') && file.endsWith('.css'));
  if (!style) throw new Error('esbuild produced no graphiql CSS');
  // Code splitting also gives each lazily loaded chunk a CSS file, which nothing would load: every
  // rule in them is already in the page's CSS (checked here, so an upgrade cannot lose styles quietly).
  const chunkStyles = Object.keys(outputs).filter((file) => file.endsWith('.css') && file !== style);
  for (const chunk of chunkStyles) {
    const missing = Object.keys(outputs[chunk].inputs).filter((input) => !(input in outputs[style].inputs));
    if (missing.length > 0) throw new Error(`CSS of a lazy chunk is not in the page's CSS: ${missing.join(', ')}`);
  }
  const dropped = new Set(
    chunkStyles.flatMap((file) => [file, `${file}.LEGAL.txt`]).map((file) => join(EXPLORER_DIR, file)),
  );
  const files = [...workers.outputFiles, ...page.outputFiles.filter((file) => !dropped.has(file.path))];
  const manifest: ExplorerManifest = {
    fingerprint: fingerprint(),
    script: outputName(page.metafile, 'graphiql', '.js'),
    style: basename(style),
    workers: {
      editor: outputName(workers.metafile, 'editor.worker', '.js'),
      graphql: outputName(workers.metafile, 'graphql.worker', '.js'),
      json: outputName(workers.metafile, 'json.worker', '.js'),
    },
    bytes: files.reduce((sum, file) => sum + file.contents.byteLength, 0),
  };
  for (const file of files) {
    const name = relative(assetsDir, file.path);
    await writeAtomically(join(assetsDir, name), file.contents);
    // A gzip copy of each script and stylesheet, sent to browsers that accept it (about a quarter of the size).
    if (/\.(js|css)$/.test(name))
      await writeAtomically(join(assetsDir, `${name}.gz`), gzipSync(file.contents, { level: 9 }));
  }
  await writeAtomically(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  if (options.prune) {
    const keep = new Set(
      files.flatMap((file) => [relative(assetsDir, file.path), `${relative(assetsDir, file.path)}.gz`]),
    );
    for (const name of await readdir(assetsDir)) if (!keep.has(name)) await rm(join(assetsDir, name), { force: true });
  }
  return manifest;
}

let building: Promise<ExplorerManifest> | undefined;

/** The current bundle's manifest, building it first when it is missing or stale (once per process at a time). */
export async function ensureExplorerBundle(
  outDir = DEFAULT_OUT_DIR,
): Promise<{ manifest: ExplorerManifest; built: boolean }> {
  const manifest = readManifest(outDir);
  if (manifest) return { manifest, built: false };
  building ??= buildExplorer({ outDir }).finally(() => {
    building = undefined;
  });
  return { manifest: await building, built: true };
}

if (require.main === module) {
  const started = Date.now();
  buildExplorer({ prune: true }).then(
    async (manifest) => {
      const kib = (bytes: number) => `${Math.round(bytes / 1024)} KiB`;
      const size = async (name: string) => (await readFile(join(DEFAULT_OUT_DIR, 'assets', name))).byteLength;
      console.log(
        `GraphiQL explorer built in ${Date.now() - started} ms into ${relative(process.cwd(), DEFAULT_OUT_DIR)}: ${kib(manifest.bytes)} in all, ` +
          `page script ${kib(await size(manifest.script))}, CSS ${kib(await size(manifest.style))}.`,
      );
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
