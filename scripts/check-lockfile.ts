/**
 * npm run check:lockfile: fails when `npm ci` would refuse package-lock.json on some platform.
 *
 * `npm ci` rebuilds the dependency tree from the lockfile and refuses it ("Missing: … from lock file") when a
 * locked package declares a dependency that has no entry. The usual way in: a package whose newest version
 * has platform builds (optionalDependencies such as @swc/core-darwin-arm64) the registry lacked when the
 * lockfile was made, so only this machine's build got locked; CI on Linux passes, a Mac or Windows clone fails.
 *
 * Checked, offline and from the lockfile alone:
 * - package.json's dependencies (each kind) are the ones the lockfile was made from;
 * - every dependency, optional dependency and required peer of every locked package resolves to an entry,
 *   the way Node resolves it (the package's own node_modules, then each folder above it);
 * - an optional dependency pinned to an exact version (platform builds are) is locked at that version.
 *
 * Runs before `npm ci` (no node_modules needed): `node scripts/check-lockfile.ts [path/to/package-lock.json]`.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export interface LockEntry {
  name?: string;
  version?: string;
  link?: boolean;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

export interface Lockfile {
  lockfileVersion?: number;
  packages?: Record<string, LockEntry>;
}

export interface Manifest {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  overrides?: Record<string, unknown>;
}

export interface Problem {
  /** The lockfile key of the package that declares the dependency ('' is the project itself). */
  from: string;
  name: string;
  spec: string;
  kind: 'dependencies' | 'devDependencies' | 'optionalDependencies' | 'peerDependencies';
  /** What is wrong: no entry at all, a different locked version, or package.json out of sync. */
  issue: 'missing' | 'version' | 'out of sync';
  locked?: string;
}

const EXACT_VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** The entry a dependency `name` of the package at lockfile key `from` resolves to, as Node would find it. */
export function resolveEntry(packages: Record<string, LockEntry>, from: string, name: string): string | undefined {
  let base = from;
  for (;;) {
    const key = `${base ? `${base}/` : ''}node_modules/${name}`;
    if (packages[key]) return key;
    if (!base) return undefined;
    // node_modules/a/node_modules/b → node_modules/a → '' (a workspace folder such as packages/x → '').
    const at = base.lastIndexOf('node_modules/');
    base = at <= 0 ? '' : base.slice(0, at - 1);
  }
}

/** Every way the lockfile falls short of what `npm ci` needs; empty when it is complete. */
export function checkLockfile(lockfile: Lockfile, manifest?: Manifest): Problem[] {
  const packages = lockfile.packages;
  if (!packages || !packages[''])
    throw new Error(
      'not a lockfile npm 7+ wrote (no "packages" section): regenerate it with npm install --package-lock-only',
    );
  const problems: Problem[] = [];
  const overridden = new Set(Object.keys(manifest?.overrides ?? {}));

  const kinds = ['dependencies', 'devDependencies', 'optionalDependencies'] as const;
  if (manifest) {
    for (const kind of kinds) {
      const wanted = manifest[kind] ?? {};
      const locked = packages[''][kind] ?? {};
      for (const name of new Set([...Object.keys(wanted), ...Object.keys(locked)])) {
        if (wanted[name] !== locked[name])
          problems.push({
            from: '',
            name,
            spec: wanted[name] ?? '(removed)',
            kind,
            issue: 'out of sync',
            locked: locked[name] ?? '(absent)',
          });
      }
    }
  }

  for (const [from, entry] of Object.entries(packages)) {
    if (entry.link) continue;
    const declared: Array<[Problem['kind'], Record<string, string> | undefined]> = [
      ['dependencies', entry.dependencies],
      ['optionalDependencies', entry.optionalDependencies],
      ['peerDependencies', entry.peerDependencies],
    ];
    if (from === '') declared.push(['devDependencies', entry.devDependencies]);
    for (const [kind, deps] of declared) {
      for (const [name, spec] of Object.entries(deps ?? {})) {
        if (kind === 'peerDependencies' && entry.peerDependenciesMeta?.[name]?.optional) continue;
        const key = resolveEntry(packages, from, name);
        if (!key) {
          problems.push({ from, name, spec, kind, issue: 'missing' });
        } else if (
          kind === 'optionalDependencies' &&
          EXACT_VERSION.test(spec) &&
          !overridden.has(name) &&
          packages[key]!.version !== spec
        ) {
          problems.push({ from, name, spec, kind, issue: 'version', locked: packages[key]!.version });
        }
      }
    }
  }
  return problems;
}

/** One line per problem, naming the package that declares the dependency. */
export function describe(problem: Problem, packages: Record<string, LockEntry>): string {
  const entry = packages[problem.from];
  const owner =
    problem.from === ''
      ? 'package.json'
      : `${problem.from.replace(/^.*node_modules\//, '')}@${entry?.version ?? '?'} (${problem.from})`;
  const what = `${problem.name}@${problem.spec} (${problem.kind})`;
  if (problem.issue === 'missing') return `${owner} needs ${what}: no entry in the lockfile`;
  if (problem.issue === 'version') return `${owner} needs ${what}: the lockfile has ${problem.locked}`;
  return `package.json has ${problem.name}@${problem.spec} in ${problem.kind}, the lockfile was made from ${problem.locked}`;
}

function main(path: string): number {
  const lockfile = JSON.parse(readFileSync(path, 'utf8')) as Lockfile;
  let manifest: Manifest | undefined;
  try {
    manifest = JSON.parse(readFileSync(join(dirname(path), 'package.json'), 'utf8')) as Manifest;
  } catch {
    manifest = undefined;
  }
  const problems = checkLockfile(lockfile, manifest);
  const packages = lockfile.packages!;
  if (problems.length === 0) {
    const optional = Object.values(packages).reduce(
      (sum, entry) => sum + Object.keys(entry.optionalDependencies ?? {}).length,
      0,
    );
    console.log(
      `${path}: complete (${Object.keys(packages).length - 1} packages, ${optional} optional dependencies, all locked)`,
    );
    return 0;
  }
  console.error(`${path}: npm ci would refuse this lockfile (on this platform or another):`);
  for (const problem of problems) console.error(`  ${describe(problem, packages)}`);
  console.error(
    'Pin the declaring package to a version whose builds the registry has for every platform (or override it), then regenerate the lockfile from scratch: rm -f package-lock.json && npm install --package-lock-only --ignore-scripts',
  );
  return 1;
}

// Run as a script (node, tsx), not when a test imports it.
if (/check-lockfile\.[cm]?[jt]s$/.test(process.argv[1] ?? '')) {
  process.exitCode = main(resolve(process.argv[2] ?? 'package-lock.json'));
}
