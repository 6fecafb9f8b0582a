import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from './config';

export interface Secrets {
  /** Verifies client bearer tokens (HS256) unless JWT_JWKS_FILE is set. */
  jwtSecret: string;
  /** Signs the identity the gateway passes to subgraphs. */
  identitySecret: string;
}

/**
 * JWT_SECRET and IDENTITY_SECRET from the environment; whichever is unset is generated once and kept
 * in DATA_DIR/secrets.json (mode 0600), so a fresh machine needs no set-up and every local process
 * (`npm start`, `npm run token`, a subgraph started alone) agrees on it. Production sets both.
 */
export function loadSecrets(config: Pick<Config, 'JWT_SECRET' | 'IDENTITY_SECRET' | 'DATA_DIR'>): Secrets {
  if (config.JWT_SECRET && config.IDENTITY_SECRET) return { jwtSecret: config.JWT_SECRET, identitySecret: config.IDENTITY_SECRET };
  const file = join(config.DATA_DIR, 'secrets.json');
  let stored: Partial<Secrets> = {};
  if (existsSync(file)) stored = JSON.parse(readFileSync(file, 'utf8')) as Partial<Secrets>;
  const generated: Secrets = {
    jwtSecret: stored.jwtSecret ?? randomBytes(32).toString('base64url'),
    identitySecret: stored.identitySecret ?? randomBytes(32).toString('base64url'),
  };
  if (stored.jwtSecret !== generated.jwtSecret || stored.identitySecret !== generated.identitySecret) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(generated, null, 2)}\n`, { mode: 0o600 });
  }
  return { jwtSecret: config.JWT_SECRET ?? generated.jwtSecret, identitySecret: config.IDENTITY_SECRET ?? generated.identitySecret };
}
