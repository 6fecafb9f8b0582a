import { isScopeToken, issueToken } from '../gateway/auth';
import { runMain } from '../lib/cli';
import { loadConfig } from '../lib/config';
import { isUuid } from '../lib/ids';
import { loadSecrets } from '../lib/secrets';

const USAGE = 'Usage: npm run -s token -- --user <user UUID> [--scope "catalog:write other:scope"] [--expires 1h]';

/**
 * `npm run -s token -- --user <uuid> [--scope catalog:write] [--expires 1h]`: prints a development bearer
 * token the gateway accepts (signed with JWT_SECRET, or the generated one in DATA_DIR/secrets.json).
 * `--scope` (space-separated, may be repeated) fills the token's `scope` claim; without it the token has none.
 */
runMain(async () => {
  const argv = process.argv.slice(2);
  const values = (flag: string) =>
    argv.flatMap((arg, index) => (arg === flag && index + 1 < argv.length ? [argv[index + 1]!] : []));
  const userId = values('--user')[0];
  if (!isUuid(userId)) throw new Error(USAGE);
  const expiresIn = values('--expires')[0] ?? '1h';
  if (!/^\d+[smhd]$/.test(expiresIn)) throw new Error('--expires must look like 30m, 1h or 7d');
  const scopes = values('--scope')
    .flatMap((value) => value.split(' '))
    .filter(Boolean);
  if (argv.includes('--scope') && scopes.length === 0) throw new Error(`--scope needs a value. ${USAGE}`);
  const malformed = scopes.filter((scope) => !isScopeToken(scope));
  if (malformed.length > 0)
    throw new Error(`Not OAuth 2.0 scopes (printable ASCII, no quote or backslash): ${malformed.join(', ')}`);
  const config = loadConfig();
  if (config.JWT_JWKS_FILE)
    throw new Error('JWT_JWKS_FILE is set: tokens come from your identity provider, not from this script.');
  const { jwtSecret } = loadSecrets(config);
  console.log(
    await issueToken({
      secret: jwtSecret,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      userId: userId.toLowerCase(),
      scopes,
      expiresIn,
    }),
  );
});
