import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from './config';

export interface Secrets {
  /** Verifies client bearer tokens (HS256) unless JWT_JWKS_FILE is set. */
  jwtSecret: string;
  /** Signs the identity the gateway passes to subgraphs. */
  identitySecret: string;
}

const MIN_LENGTH = 32;

function readStored(file: string): Partial<Secrets> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Partial<Secrets>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`${file} is not readable JSON; fix or delete it (new secrets are then generated).`, {
      cause: error,
    });
  }
}

/**
 * JWT_SECRET and IDENTITY_SECRET from the environment; whichever is unset comes from
 * DATA_DIR/secrets.json, generated on first use (owner-only permissions), so a fresh machine needs no
 * set-up and every local process (`npm start`, `npm run token`, a subgraph started alone) agrees on it.
 * Production sets both.
 */
export function loadSecrets(config: Pick<Config, 'JWT_SECRET' | 'IDENTITY_SECRET' | 'DATA_DIR'>): Secrets {
  if (config.JWT_SECRET && config.IDENTITY_SECRET)
    return { jwtSecret: config.JWT_SECRET, identitySecret: config.IDENTITY_SECRET };
  const file = join(config.DATA_DIR, 'secrets.json');
  let stored = readStored(file);
  if (!stored.jwtSecret || !stored.identitySecret) {
    // The folder stays traversable: it also holds the embedded PostgreSQL's data, which runs as the
    // `postgres` user when this runs as root. The secrets file itself is owner-only.
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    const generated: Secrets = {
      jwtSecret: randomBytes(32).toString('base64url'),
      identitySecret: randomBytes(32).toString('base64url'),
    };
    try {
      // "wx": when two processes start at once, the first one's secrets win and the other reads them.
      writeFileSync(file, `${JSON.stringify({ ...generated, ...stored }, null, 2)}\n`, {
        mode: 0o600,
        flag: stored.jwtSecret || stored.identitySecret ? 'w' : 'wx',
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    stored = readStored(file);
  }
  chmodSync(file, 0o600);
  for (const [name, value] of Object.entries(stored)) {
    if (typeof value !== 'string' || value.length < MIN_LENGTH)
      throw new Error(`${name} in ${file} must be at least ${MIN_LENGTH} characters.`);
  }
  return {
    jwtSecret: config.JWT_SECRET ?? stored.jwtSecret!,
    identitySecret: config.IDENTITY_SECRET ?? stored.identitySecret!,
  };
}
