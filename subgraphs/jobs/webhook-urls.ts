/**
 * Which URLs a webhook subscription may point at: absolute http(s), no credentials in them (they would be
 * stored and shown), and, when WEBHOOK_ALLOWED_HOSTS is set, only those hosts (`.example.com`: its subdomains).
 */
export type AllowedHosts = readonly string[] | null;

export function parseAllowedHosts(setting: string | undefined): AllowedHosts {
  if (!setting) return null;
  return setting
    .split(',')
    .map((host) => host.trim().toLowerCase())
    .filter(Boolean);
}

/** Why `url` cannot be a subscription's target, or null when it can. */
export function webhookUrlProblem(url: string, allowed: AllowedHosts): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'The URL is not an absolute URL.';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'The URL must be http or https.';
  if (parsed.username || parsed.password) return 'The URL must not carry credentials: verify the signature instead.';
  if (url.length > 2_048) return 'The URL is longer than 2048 characters.';
  const host = parsed.hostname.toLowerCase();
  if (allowed && !allowed.some((entry) => (entry.startsWith('.') ? host.endsWith(entry) : host === entry)))
    return `The host ${host} is not one webhooks may be sent to (WEBHOOK_ALLOWED_HOSTS).`;
  return null;
}
