import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSecrets } from './secrets';

describe('loadSecrets', () => {
  it('generates secrets once into DATA_DIR, owner-only, and every later caller reads the same ones', () => {
    const DATA_DIR = mkdtempSync(join(tmpdir(), 'secrets-'));
    const first = loadSecrets({ DATA_DIR });
    expect(first.jwtSecret.length).toBeGreaterThanOrEqual(32);
    expect(first.identitySecret).not.toBe(first.jwtSecret);
    expect(loadSecrets({ DATA_DIR })).toEqual(first);
    expect(statSync(join(DATA_DIR, 'secrets.json')).mode & 0o777).toBe(0o600);
  });

  it('prefers the environment, and refuses a stored secret that is too short', () => {
    const DATA_DIR = mkdtempSync(join(tmpdir(), 'secrets-'));
    const JWT_SECRET = 'j'.repeat(40);
    expect(loadSecrets({ DATA_DIR, JWT_SECRET }).jwtSecret).toBe(JWT_SECRET);
    writeFileSync(
      join(DATA_DIR, 'secrets.json'),
      JSON.stringify({ jwtSecret: 'short', identitySecret: 'i'.repeat(40) }),
      { mode: 0o644 },
    );
    expect(() => loadSecrets({ DATA_DIR })).toThrow(/jwtSecret .* at least 32 characters/);
  });
});
