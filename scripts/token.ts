import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { isUuid } from '../lib/ids';
import { loadSecrets } from '../lib/secrets';
import { issueToken } from '../gateway/auth';

/**
 * `npm run token -- --user <uuid> [--expires 1h]`: prints a development bearer token the gateway
 * accepts (signed with JWT_SECRET, or the generated one in DATA_DIR/secrets.json).
 */
runMain(async () => {
  const argv = process.argv.slice(2);
  const value = (flag: string) => {
    const index = argv.indexOf(flag);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const userId = value('--user');
  if (!isUuid(userId)) throw new Error('Usage: npm run token -- --user <user UUID> [--expires 1h]');
  const expiresIn = value('--expires') ?? '1h';
  if (!/^\d+[smhd]$/.test(expiresIn)) throw new Error('--expires must look like 30m, 1h or 7d');
  const config = loadConfig();
  if (config.JWT_JWKS_FILE) throw new Error('JWT_JWKS_FILE is set: tokens come from your identity provider, not from this script.');
  const { jwtSecret } = loadSecrets(config);
  console.log(await issueToken({ secret: jwtSecret, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE, userId: userId.toLowerCase(), expiresIn }));
});
