import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/**
 * Links to a job's result that work without a token until they expire (`?expires=<epoch s>&signature=…`),
 * as S3's presigned URLs do: a job's `url` and its webhook message carry one, so a download tool or the
 * receiver of the webhook can fetch the file. HMAC-SHA256 over the job id and expiry, with a key derived
 * from IDENTITY_SECRET (shared by the subgraph that makes them and the gateway that serves the file).
 */
const keyOf = (secret: string) => Buffer.from(hkdfSync('sha256', secret, '', 'storefront job result links', 32));

const signatureOf = (key: Buffer, jobId: string, expires: number) =>
  createHmac('sha256', key).update(`${jobId}\n${expires}`).digest('base64url');

/** The path of a job's result on the gateway. */
export const resultPath = (jobId: string) => `/jobs/${jobId}/result`;

export function createResultLinks(secret: string, { ttlSeconds = 3_600 }: { ttlSeconds?: number } = {}) {
  const key = keyOf(secret);
  return {
    /** The result's path with a signature valid for `ttlSeconds` (defaults to an hour). */
    sign(jobId: string, now = Date.now()): string {
      const expires = Math.floor(now / 1000) + ttlSeconds;
      return `${resultPath(jobId)}?expires=${expires}&signature=${signatureOf(key, jobId, expires)}`;
    },
    /** Whether `expires` and `signature` (from the query string) are a valid, unexpired link to this job's result. */
    verify(jobId: string, expires: unknown, signature: unknown, now = Date.now()): boolean {
      if (typeof expires !== 'string' || typeof signature !== 'string' || !/^\d{1,12}$/.test(expires)) return false;
      const at = Number(expires);
      if (at * 1000 <= now) return false;
      const expected = Buffer.from(signatureOf(key, jobId, at));
      const presented = Buffer.from(signature);
      return presented.length === expected.length && timingSafeEqual(presented, expected);
    },
  };
}

export type ResultLinks = ReturnType<typeof createResultLinks>;
