import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkLockfile,
  describe as describeProblem,
  resolveEntry,
  type Lockfile,
  type Manifest,
} from './check-lockfile';

const ROOT = join(__dirname, '..');

/** A project with one native tool (three platform builds) and a package nested under another. */
function fabricated(): { lockfile: Lockfile; manifest: Manifest } {
  const manifest: Manifest = { dependencies: { tool: '^1.0.0', app: '^2.0.0' }, devDependencies: { types: '^1.0.0' } };
  const lockfile: Lockfile = {
    lockfileVersion: 3,
    packages: {
      '': {
        name: 'demo',
        version: '1.0.0',
        dependencies: { tool: '^1.0.0', app: '^2.0.0' },
        devDependencies: { types: '^1.0.0' },
      },
      'node_modules/tool': {
        version: '1.2.0',
        optionalDependencies: {
          'tool-darwin-arm64': '1.2.0',
          'tool-linux-x64-gnu': '1.2.0',
          'tool-win32-x64-msvc': '1.2.0',
        },
      },
      'node_modules/tool-darwin-arm64': { version: '1.2.0' },
      'node_modules/tool-linux-x64-gnu': { version: '1.2.0' },
      'node_modules/tool-win32-x64-msvc': { version: '1.2.0' },
      'node_modules/app': {
        version: '2.0.0',
        dependencies: { helper: '^3.0.0', shared: '^1.0.0' },
        peerDependencies: { tool: '^1.0.0', absent: '*' },
        peerDependenciesMeta: { absent: { optional: true } },
      },
      'node_modules/app/node_modules/helper': { version: '3.1.0', dependencies: { shared: '^1.0.0' } },
      'node_modules/shared': { version: '1.0.0' },
      'node_modules/types': { version: '1.0.0' },
    },
  };
  return { lockfile, manifest };
}

describe('lockfile check', () => {
  it('passes a complete lockfile: every platform build locked, nested and hoisted packages found', () => {
    const { lockfile, manifest } = fabricated();
    expect(checkLockfile(lockfile, manifest)).toEqual([]);
  });

  it('names each platform build a locked package declares but the lockfile lacks (what makes npm ci refuse elsewhere)', () => {
    const { lockfile, manifest } = fabricated();
    delete lockfile.packages!['node_modules/tool-darwin-arm64'];
    delete lockfile.packages!['node_modules/tool-win32-x64-msvc'];
    const problems = checkLockfile(lockfile, manifest);
    expect(problems.map((p) => [p.from, p.name, p.kind, p.issue])).toEqual([
      ['node_modules/tool', 'tool-darwin-arm64', 'optionalDependencies', 'missing'],
      ['node_modules/tool', 'tool-win32-x64-msvc', 'optionalDependencies', 'missing'],
    ]);
    expect(describeProblem(problems[0]!, lockfile.packages!)).toBe(
      'tool@1.2.0 (node_modules/tool) needs tool-darwin-arm64@1.2.0 (optionalDependencies): no entry in the lockfile',
    );
  });

  it('flags a platform build locked at another version than its package pins, unless package.json overrides it', () => {
    const { lockfile, manifest } = fabricated();
    lockfile.packages!['node_modules/tool-linux-x64-gnu']!.version = '1.1.0';
    expect(checkLockfile(lockfile, manifest)).toEqual([
      {
        from: 'node_modules/tool',
        name: 'tool-linux-x64-gnu',
        spec: '1.2.0',
        kind: 'optionalDependencies',
        issue: 'version',
        locked: '1.1.0',
      },
    ]);
    expect(checkLockfile(lockfile, { ...manifest, overrides: { 'tool-linux-x64-gnu': '1.1.0' } })).toEqual([]);
  });

  it('flags missing regular dependencies and required peers, not optional peers', () => {
    const { lockfile } = fabricated();
    delete lockfile.packages!['node_modules/shared'];
    delete lockfile.packages!['node_modules/tool'];
    const problems = checkLockfile(lockfile).map((p) => `${p.from || '(root)'} ${p.kind} ${p.name}`);
    expect(problems.sort()).toEqual([
      '(root) dependencies tool',
      'node_modules/app dependencies shared',
      'node_modules/app peerDependencies tool',
      'node_modules/app/node_modules/helper dependencies shared',
    ]);
  });

  it('flags a package.json the lockfile was not made from', () => {
    const { lockfile, manifest } = fabricated();
    manifest.dependencies = { ...manifest.dependencies, tool: '^1.3.0', extra: '^1.0.0' };
    expect(checkLockfile(lockfile, manifest).map((p) => `${p.name} ${p.spec} ${p.locked} ${p.issue}`)).toEqual([
      'tool ^1.3.0 ^1.0.0 out of sync',
      'extra ^1.0.0 (absent) out of sync',
    ]);
  });

  it('resolves as Node does: the package’s own node_modules first, then each folder above', () => {
    const { packages } = fabricated().lockfile;
    expect(resolveEntry(packages!, 'node_modules/app/node_modules/helper', 'shared')).toBe('node_modules/shared');
    expect(resolveEntry(packages!, 'node_modules/app', 'helper')).toBe('node_modules/app/node_modules/helper');
    expect(resolveEntry(packages!, '', 'helper')).toBeUndefined();
  });

  it('refuses a lockfile without a packages section', () => {
    expect(() => checkLockfile({ lockfileVersion: 1 })).toThrow(/no "packages" section/);
  });

  it('passes this project’s own lockfile', () => {
    const lockfile = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as Lockfile;
    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Manifest;
    expect(checkLockfile(lockfile, manifest).map((p) => describeProblem(p, lockfile.packages!))).toEqual([]);
  });

  it('runs as a script with plain node (as CI does before npm ci): exit 1 naming the missing builds, 0 when complete', () => {
    const folder = mkdtempSync(join(tmpdir(), 'check-lockfile-'));
    try {
      const { lockfile, manifest } = fabricated();
      writeFileSync(join(folder, 'package.json'), JSON.stringify(manifest));
      writeFileSync(join(folder, 'package-lock.json'), JSON.stringify(lockfile));
      const run = () =>
        spawnSync(
          process.execPath,
          [
            '--disable-warning=MODULE_TYPELESS_PACKAGE_JSON',
            join(__dirname, 'check-lockfile.ts'),
            join(folder, 'package-lock.json'),
          ],
          { encoding: 'utf8' },
        );
      const complete = run();
      expect(complete.status).toBe(0);
      expect(complete.stdout).toMatch(/complete \(8 packages, 3 optional dependencies/);

      delete lockfile.packages!['node_modules/tool-win32-x64-msvc'];
      writeFileSync(join(folder, 'package-lock.json'), JSON.stringify(lockfile));
      const incomplete = run();
      expect(incomplete.status).toBe(1);
      expect(incomplete.stderr).toContain(
        'tool@1.2.0 (node_modules/tool) needs tool-win32-x64-msvc@1.2.0 (optionalDependencies): no entry in the lockfile',
      );
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
