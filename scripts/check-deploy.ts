/**
 * npm run check:deploy: validates the shipped deployment files with tools that need neither a container engine
 * nor a cluster (none runs here or in CI), and names every problem.
 *
 * - Dockerfile: the linter of dockerfile-utils (the one behind VS Code's Dockerfile support: instructions, flags,
 *   arguments), and a few of hadolint's rules, since hadolint itself is not packaged for npm or Debian: tagged
 *   base images (DL3006/DL3007), COPY --from an earlier stage (DL3022), no root USER at the end (DL3002), CMD in
 *   exec form (DL3025), WORKDIR rather than `cd` (DL3003), `npm ci` rather than `npm install`.
 * - compose.yaml: the compose-spec JSON schema that dclint ships (every error, with its path), then dclint's rules.
 * - deploy/k8s/: every file kustomization.yaml lists, and no other; each object against the Kubernetes OpenAPI
 *   schemas (kubernetes-models' validators: types, required fields, enums, formats) and against kubernetes-models'
 *   TypeScript types, whose excess-property check names a misspelt field (the OpenAPI schemas allow unknown
 *   fields, which the API server drops or refuses). Where kubectl is installed, `kubectl kustomize` builds the
 *   directory (with secrets.env.example standing in for secrets.env when that is absent) and what it would apply
 *   is checked the same way.
 *
 * Usage: node scripts/check-deploy.ts [root]   (root: where Dockerfile, compose.yaml and deploy/k8s are; default
 * this repository). Exits 1 when anything is wrong. test/deploy.test.ts runs it.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { DCLinter } from 'dclint';
import { DockerfileParser } from 'dockerfile-ast';
import { validate as lintDockerfile } from 'dockerfile-utils';
import ts from 'typescript';
import { parse, parseAllDocuments } from 'yaml';

/** This repository: packages resolve from here whichever root is checked. */
const PROJECT = resolve(dirname(resolve(process.argv[1] ?? 'scripts/check-deploy.ts')), '..');
const requireHere = createRequire(join(PROJECT, 'package.json'));

type Problems = string[];
type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------- Dockerfile

export function checkDockerfile(root: string, problems: Problems): void {
  const content = readFileSync(join(root, 'Dockerfile'), 'utf8');
  for (const diagnostic of lintDockerfile(content)) {
    problems.push(`Dockerfile:${diagnostic.range.start.line + 1}: ${diagnostic.message}`);
  }
  const dockerfile = DockerfileParser.parse(content);
  const args = new Map<string, string>();
  for (const arg of dockerfile.getInitialARGs()) {
    const property = arg.getProperty();
    if (property?.getName()) args.set(property.getName(), property.getValue() ?? '');
  }
  const expand = (text: string) =>
    text.replace(/\$\{?(\w+)\}?/g, (whole: string, name: string) => args.get(name) ?? whole);
  const stages: string[] = [];
  const froms = dockerfile.getFROMs();
  for (const from of froms) {
    const line = from.getRange().start.line + 1;
    const image = expand(from.getImage() ?? '');
    const known = stages.includes(image);
    if (!known && image !== 'scratch') {
      const tag = image.includes('@') ? 'digest' : (image.split('/').pop()!.split(':')[1] ?? '');
      if (!tag) problems.push(`Dockerfile:${line}: FROM ${image} has no tag (hadolint DL3006)`);
      else if (tag === 'latest') problems.push(`Dockerfile:${line}: FROM ${image} uses "latest" (hadolint DL3007)`);
    }
    stages.push(from.getBuildStage() ?? String(stages.length));
  }
  const finalStart = froms.at(-1)?.getRange().start.line ?? 0;
  let lastUser: string | undefined;
  let stageIndex = -1;
  for (const instruction of dockerfile.getInstructions()) {
    const keyword = instruction.getKeyword();
    const line = instruction.getRange().start.line + 1;
    const text = instruction.getTextContent().slice(keyword.length).trim();
    if (keyword === 'FROM') stageIndex += 1;
    if (keyword === 'COPY') {
      const from = text.match(/--from=(\S+)/)?.[1];
      if (from && !stages.slice(0, stageIndex).includes(from) && !/[:/]/.test(from))
        problems.push(`Dockerfile:${line}: COPY --from=${from} names no earlier stage (hadolint DL3022)`);
    }
    if (keyword === 'RUN') {
      if (/(^|&&|;)\s*cd\s/.test(text)) problems.push(`Dockerfile:${line}: use WORKDIR, not cd (hadolint DL3003)`);
      if (/\bnpm (install|i)\b/.test(text))
        problems.push(`Dockerfile:${line}: use npm ci (the lockfile), not npm install`);
    }
    if ((keyword === 'CMD' || keyword === 'ENTRYPOINT') && !text.trim().startsWith('['))
      problems.push(
        `Dockerfile:${line}: ${keyword} in shell form: use the exec form, so signals reach the process (hadolint DL3025)`,
      );
    if (keyword === 'USER' && instruction.getRange().start.line >= finalStart) lastUser = text.trim();
  }
  if (!lastUser || /^(root|0)(:|$)/.test(lastUser))
    problems.push(`Dockerfile: the final stage runs as ${lastUser ?? 'root (no USER)'} (hadolint DL3002)`);
}

// ------------------------------------------------------------------------------------------------- compose.yaml

export function checkCompose(root: string, problems: Problems): void {
  const file = join(root, 'compose.yaml');
  let document: unknown;
  try {
    document = parse(readFileSync(file, 'utf8'), { merge: true, uniqueKeys: true });
  } catch (error) {
    problems.push(`compose.yaml: ${(error as Error).message}`);
    return;
  }
  const schemaFile = join(dirname(requireHere.resolve('dclint/package.json')), 'schemas', 'compose.schema.json');
  const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true, logger: false });
  // Its $schema names draft 7 by an https URL, which Ajv (draft 7 built in, under the http URL) does not know.
  const { $schema: _draft, ...schema } = JSON.parse(readFileSync(schemaFile, 'utf8')) as Json;
  const validate = ajv.compile(schema);
  if (!validate(document)) {
    for (const error of validate.errors ?? []) {
      const detail = error.params && 'additionalProperty' in error.params ? `: ${error.params.additionalProperty}` : '';
      problems.push(`compose.yaml: ${error.instancePath || '/'} ${error.message}${detail} (compose-spec schema)`);
    }
  }
  const linter = new DCLinter({ rules: {}, quiet: false, debug: false, exclude: [] });
  for (const result of linter.lintFiles([file], false)) {
    for (const message of result.messages) {
      if (message.rule === 'invalid-schema') continue; // Reported above, each error with its path.
      problems.push(`compose.yaml:${message.line}: ${message.message} (dclint ${message.rule})`);
    }
  }
}

// --------------------------------------------------------------------------------------------------- deploy/k8s

interface KubeObject {
  /** Where it comes from: a file of deploy/k8s, or kubectl kustomize's output. */
  source: string;
  object: Json;
}

/** Where kubernetes-models keeps a kind's model: kubernetes-models/<group>/<version>/<Kind> (core: v1/<Kind>). */
function modelPath(object: Json): string | null {
  const apiVersion = object.apiVersion;
  const kind = object.kind;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string' || !/^\w+$/.test(kind)) return null;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

const describeObject = ({ object }: KubeObject) =>
  `${String(object.kind)}/${String((object.metadata as Json | undefined)?.name ?? '?')}`;

export function readKustomization(k8sDir: string, problems: Problems): { objects: KubeObject[]; resources: string[] } {
  const kustomization = parse(readFileSync(join(k8sDir, 'kustomization.yaml'), 'utf8')) as Json;
  const resources = (kustomization.resources ?? []) as string[];
  const objects: KubeObject[] = [];
  for (const resource of resources) {
    if (!existsSync(join(k8sDir, resource))) {
      problems.push(`deploy/k8s/kustomization.yaml: lists ${resource}, which does not exist`);
      continue;
    }
    for (const document of parseAllDocuments(readFileSync(join(k8sDir, resource), 'utf8'), { uniqueKeys: true })) {
      for (const error of document.errors) problems.push(`deploy/k8s/${resource}: ${error.message}`);
      const object = document.toJS() as Json | null;
      if (object) objects.push({ source: `deploy/k8s/${resource}`, object });
    }
  }
  for (const file of readdirSync(k8sDir).filter((name) => /\.ya?ml$/.test(name))) {
    if (file !== 'kustomization.yaml' && !resources.includes(file))
      problems.push(`deploy/k8s/${file}: not listed in kustomization.yaml's resources, so never applied`);
  }
  for (const generator of (kustomization.secretGenerator ?? []) as Array<{ envs?: string[] }>) {
    for (const envs of generator.envs ?? []) {
      if (!existsSync(join(k8sDir, `${envs}.example`)))
        problems.push(`deploy/k8s/kustomization.yaml: ${envs} has no ${envs}.example to start from`);
    }
  }
  return { objects, resources };
}

/** `kubectl kustomize` of a copy of the directory (secrets.env from its example when absent); null without kubectl. */
export function kustomizeBuild(k8sDir: string, problems: Problems): KubeObject[] | null {
  if (spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status !== 0) return null;
  const copy = mkdtempSync(join(tmpdir(), 'storefront-k8s-'));
  try {
    cpSync(k8sDir, copy, { recursive: true });
    for (const name of readdirSync(copy).filter((file) => file.endsWith('.example'))) {
      const target = join(copy, name.replace(/\.example$/, ''));
      if (!existsSync(target)) copyFileSync(join(copy, name), target);
    }
    const built = spawnSync('kubectl', ['kustomize', copy], { encoding: 'utf8' });
    if (built.status !== 0) {
      problems.push(`kubectl kustomize deploy/k8s: ${built.stderr.trim()}`);
      return [];
    }
    const objects = parseAllDocuments(built.stdout)
      .map((document) => document.toJS() as Json | null)
      .filter((object): object is Json => object !== null);
    // kustomize folds long base64 values of a Secret's data over lines, which the API server's decoder ignores
    // (the schema's "byte" format does not).
    for (const object of objects.filter((candidate) => candidate.kind === 'Secret' && candidate.data)) {
      const data = object.data as Record<string, string>;
      for (const key of Object.keys(data)) data[key] = data[key]!.replace(/\s+/g, '');
    }
    return objects.map((object) => ({ source: 'kubectl kustomize deploy/k8s', object }));
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}

/** Each object against the OpenAPI schemas kubernetes-models compiled (its `validate()`). */
async function validateSchemas(objects: KubeObject[], problems: Problems): Promise<void> {
  for (const entry of objects) {
    const path = modelPath(entry.object);
    let model: Record<string, unknown>;
    try {
      model = (await import(path ?? 'no-model')) as Record<string, unknown>;
    } catch {
      problems.push(
        `${entry.source}: ${describeObject(entry)}: ${String(entry.object.apiVersion)} ${String(entry.object.kind)} is no Kubernetes kind`,
      );
      continue;
    }
    const Model = model[String(entry.object.kind)] as new (data: Json) => { validate(): void };
    try {
      new Model(entry.object).validate();
    } catch (error) {
      for (const line of String((error as Error).message)
        .split('\n')
        .filter(Boolean))
        problems.push(`${entry.source}: ${describeObject(entry)}: ${line.replace(/^data/, '')} (Kubernetes schema)`);
    }
  }
}

/** Each object as a literal of its kubernetes-models type: the compiler names fields the type does not have. */
function validateFields(objects: KubeObject[], problems: Problems): void {
  const file = join(PROJECT, '__check-deploy__.ts');
  const typed = objects.filter((entry) => modelPath(entry.object));
  const source = typed
    .map(
      (entry, index) =>
        `export const o${index}: import('${modelPath(entry.object)}').I${String(entry.object.kind)} = ${JSON.stringify(entry.object)};`,
    )
    .join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, source, language) : getSourceFile.call(host, name, language, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? source : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ');
    if (diagnostic.file?.fileName !== file || diagnostic.start === undefined) {
      problems.push(`kubernetes-models types: ${message}`);
      continue;
    }
    const entry = typed[diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line]!;
    problems.push(`${entry.source}: ${describeObject(entry)}: ${message} (Kubernetes field names)`);
  }
}

export async function checkKubernetes(root: string, problems: Problems): Promise<{ kustomized: boolean }> {
  const k8sDir = join(root, 'deploy', 'k8s');
  const { objects } = readKustomization(k8sDir, problems);
  const built = kustomizeBuild(k8sDir, problems);
  const all = [...objects, ...(built ?? [])];
  await validateSchemas(all, problems);
  validateFields(all, problems);
  return { kustomized: built !== null };
}

// ------------------------------------------------------------------------------------------------------- main

async function main(root: string): Promise<number> {
  const problems: Problems = [];
  checkDockerfile(root, problems);
  checkCompose(root, problems);
  const { kustomized } = await checkKubernetes(root, problems);
  const where = relative(process.cwd(), root) || '.';
  if (!kustomized) console.log('kubectl is not installed: the kustomize build of deploy/k8s was not checked.');
  if (problems.length === 0) {
    console.log(
      `${where}: Dockerfile, compose.yaml and deploy/k8s are valid (dockerfile-utils, compose-spec schema and dclint, Kubernetes schemas and field names${kustomized ? ', kubectl kustomize' : ''}).`,
    );
    return 0;
  }
  for (const problem of problems) console.error(problem);
  console.error(`${problems.length} problem${problems.length === 1 ? '' : 's'} in the deployment files`);
  return 1;
}

// Run as a script (node), not when a test imports it.
if (/check-deploy\.[cm]?[jt]s$/.test(process.argv[1] ?? '')) {
  void main(resolve(process.argv[2] ?? PROJECT)).then((code) => (process.exitCode = code));
}
