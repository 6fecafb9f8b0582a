import { createHash } from 'node:crypto';
import type { ApolloServerPlugin, BaseContext, GraphQLRequestContext } from '@apollo/server';
import { print, type DocumentNode } from 'graphql';
import { LRUCache } from 'lru-cache';
import { CHANGED_EXTENSION, HELD_EXTENSION } from '../lib/entity-tags';
import type { RedisClient, RedisConnection, RedisGuard } from '../lib/redis';
import type { GatewayGraphQLResponse } from './subgraph-data-source';

/**
 * The gateway's whole-response cache for public queries, invalidated by entity. The why and the proof
 * of the invalidation order are in response-cache.md; in short:
 *
 * - A query whose cache policy (the subgraphs' Cache-Control, from the contract's @cacheControl hints)
 *   is public with a max-age is stored, keyed by its normalized document, operation name and variables,
 *   with the entity tags its subgraphs said it holds (lib/entity-tags.ts). Only `data` is stored: the
 *   caller's parts (`extensions.cost`, rate-limit headers) are added per request, and a hit is charged
 *   to the caller's budget like any other request (the charge comes before this cache is asked).
 * - A mutation whose subgraphs say which entities they changed bumps those tags before its answer
 *   leaves the gateway. Tag versions live in Redis, so every gateway sees the bump before serving again.
 * - Versions are epochs: one counter, incremented by every bump, and each tag set to the epoch of its
 *   last bump, all in one Lua script (atomic). An answer is stored with the epoch read before it was
 *   computed and only if none of its tags was bumped after that epoch (a write racing the fill keeps
 *   the old answer out). It is served while the epoch is unchanged (one GET), or, after other writes,
 *   while none of its own tags is newer than its epoch (one MGET).
 * - Two layers: a bounded in-process LRU in front of Redis. Without Redis: the in-process layer only,
 *   with versions in memory (one gateway).
 */

/** Entity tags of the responses a request's fetches held and its writes changed, gathered by the data sources. */
export class FetchedTags {
  readonly held = new Set<string>();
  readonly changed = new Set<string>();
  /** Query fetches that did not say what they hold (a subgraph without entity tags): the answer is not stored. */
  untagged = 0;
  fetches = 0;
}

/** Where the data sources put what each subgraph answer says about entities (collectEntityTags). */
export interface ResponseCacheContext {
  fetchedTags?: FetchedTags;
  /** When the request's answer is due (epoch ms): the longest it waits for another request's fill. */
  deadline?: number;
  /**
   * Set before it runs when this request computes an answer to store: with read replicas its fetches read the
   * primary (gateway/read-your-writes.ts), since an answer read from a replica still behind a write would be
   * stored as current after that write's bump.
   */
  filling?: boolean;
}

/** `promise`'s value, or undefined once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), Math.max(0, ms))));
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

export interface ResponseCacheOptions {
  /** Shares entries and tag versions between gateways. Defaults to none: this gateway's memory only. */
  redis?: RedisConnection;
  /** Prefix of its Redis keys (REDIS_NAMESPACE). Defaults to storefront. */
  namespace?: string;
  /** Bytes of stored answers the in-process layer keeps (least recently used go first). Defaults to 32 MiB. */
  maxBytes?: number;
  /** The longest an answer is kept, whatever its max-age says. Defaults to 300 s. */
  maxTtlSeconds?: number;
  /** Told each lookup's result (metrics). Defaults to none. */
  onLookup?(result: 'hit' | 'miss' | 'stale' | 'bypass'): void;
}

interface StoredEntry {
  /** `data` of the answer (in memory deeply frozen: every hit returns the same object). */
  data: Record<string, unknown>;
  tags: string[];
  /** The epoch this answer is known to be current at. */
  epoch: number;
  /** Its max-age (seconds) and when it was stored (epoch ms): hits say both (Cache-Control and Age). */
  maxAge: number;
  storedAt: number;
  expiresAt: number;
}

/** An entry in memory: as Redis holds it, with what it costs to hold (about two bytes per character of its JSON). */
interface Entry extends StoredEntry {
  size: number;
}

const inMemory = (stored: StoredEntry, json: string): Entry => {
  const data = deepFreeze(stored.data);
  dataJson.set(data, JSON.stringify(data));
  return { ...stored, data, size: 2 * json.length };
};

/** The JSON of each stored answer's `data`, made once: a hit is not serialised again (stringifyResult). */
const dataJson = new WeakMap<object, string>();

/**
 * Apollo Server's `stringifyResult` (its default is `JSON.stringify(value) + '\n'`): the same text, but
 * the `data` of a cache hit is the JSON made when it was stored, spliced in, instead of being serialised
 * again on every hit (a fifth of a hit's CPU). Fields keep Apollo's order: errors, data, extensions.
 */
export function stringifyResult(value: { errors?: unknown; data?: unknown; extensions?: unknown }): string {
  const cached = value.data && typeof value.data === 'object' ? dataJson.get(value.data) : undefined;
  if (cached === undefined) return `${JSON.stringify(value)}\n`;
  const parts: string[] = [];
  if (value.errors !== undefined) parts.push(`"errors":${JSON.stringify(value.errors)}`);
  parts.push(`"data":${cached}`);
  if (value.extensions !== undefined) parts.push(`"extensions":${JSON.stringify(value.extensions)}`);
  return `{${parts.join(',')}}\n`;
}

/** Tag versions and (with Redis) the shared layer. Undefined from any method: the store cannot answer now (bypass). */
interface VersionStore {
  /** The current epoch, and the floor: entries current at an epoch below it are all stale (after a lost bump). */
  epoch(): Promise<Epoch | undefined>;
  /** The epoch and the shared entry's JSON (one round trip, to two masters of a cluster). */
  epochAndEntry(key: string): Promise<[Epoch, string | undefined] | undefined>;
  /** Each tag's last bump epoch (0: never bumped). */
  versions(tags: readonly string[]): Promise<number[] | undefined>;
  /** Increments the epoch and sets each tag to it, atomically. */
  bump(tags: readonly string[]): Promise<number | undefined>;
  /** Stores an entry's JSON for every gateway. */
  share(key: string, json: string, ttlMs: number): Promise<void>;
}

interface Epoch {
  current: number;
  floor: number;
}

/** One gateway, no Redis: versions in memory, kept at least as long as any entry can live. */
class MemoryVersions implements VersionStore {
  private current = 0;
  private readonly tags: LRUCache<string, number>;

  constructor(tagTtlMs: number) {
    this.tags = new LRUCache<string, number>({ ttl: tagTtlMs, ttlAutopurge: true });
  }

  async epoch() {
    return { current: this.current, floor: 0 };
  }

  async epochAndEntry(): Promise<[Epoch, undefined]> {
    return [{ current: this.current, floor: 0 }, undefined];
  }

  async versions(tags: readonly string[]) {
    return tags.map((tag) => this.tags.get(tag) ?? 0);
  }

  async bump(tags: readonly string[]) {
    this.current += 1;
    for (const tag of tags) this.tags.set(tag, this.current);
    return this.current;
  }

  async share() {}
}

/**
 * INCR the epoch (KEYS[1]). There was none if that makes 1: the first use, or the versions were lost (the Redis,
 * or the cluster master holding them, restarted empty) while entries stored before may remain (in other masters,
 * in gateways' memory) with tags that no longer say what changed. So the epoch starts from Redis's clock, in
 * microseconds, above every epoch counted before (a counter would have to take a million bumps a second to
 * outrun it), and the floor (KEYS[2]) is raised to it: everything stored before is stale.
 */
const NEXT_EPOCH = `
local epoch = redis.call('INCR', KEYS[1])
if epoch == 1 then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], epoch)
end`;

/** The next epoch, and every tag (KEYS[3…]) set to it with the tags' TTL: one atomic step, so no reader sees half a bump. */
const BUMP_SCRIPT = `${NEXT_EPOCH}
for i = 3, #KEYS do redis.call('SET', KEYS[i], epoch, 'PX', ARGV[1]) end
return epoch`;

/** The next epoch, and the floor raised to it: every entry stored so far is stale. */
const FLUSH_SCRIPT = `${NEXT_EPOCH}
redis.call('SET', KEYS[2], epoch)
return epoch`;

const parseEpoch = (current: string | null, floor: string | null): Epoch => ({
  current: Number(current ?? 0),
  floor: Number(floor ?? 0),
});

/**
 * Versions and entries in Redis, through the connection's guard (a slow or failing Redis is a bypass,
 * never a wait). The epoch, floor and tag keys share a hash tag, so the scripts and MGETs touch one cluster
 * slot; entries have none, and spread over a cluster's masters.
 */
class RedisVersions implements VersionStore {
  private readonly slot: string;
  /** A bump Redis did not take: everything stored may hold what that write changed. */
  private lostBump = false;

  constructor(
    private readonly guard: RedisGuard,
    private readonly namespace: string,
    private readonly tagTtlMs: number,
  ) {
    // Under the namespace like every key, and one hash tag (`{<ns>:responses}`) for the bump script's keys.
    this.slot = `${namespace}:{${namespace}:responses}`;
    // The first thing once Redis answers again: drop every answer stored before the lost write.
    guard.onRecover(() => void this.flushIfLost());
  }

  private get epochKey() {
    return `${this.slot}:epoch`;
  }

  private get floorKey() {
    return `${this.slot}:floor`;
  }

  private async flushIfLost() {
    if (!this.lostBump) return;
    if ((await this.flush()) !== undefined) this.lostBump = false;
  }

  /** Raises the floor to a new epoch (see FLUSH_SCRIPT); undefined when Redis did not take it. */
  private async flush(): Promise<Epoch | undefined> {
    const epoch = await this.guard.attempt((client) =>
      client.eval(FLUSH_SCRIPT, { keys: [this.epochKey, this.floorKey], arguments: [] }),
    );
    return epoch === undefined ? undefined : { current: Number(epoch), floor: Number(epoch) };
  }

  /** The epoch read, or, when there is none (a first use, or lost: see NEXT_EPOCH), a new one above everything stored. */
  private orNew(epoch: Epoch): Promise<Epoch | undefined> | Epoch {
    return epoch.current === 0 ? this.flush() : epoch;
  }

  private tagKey(tag: string) {
    return `${this.slot}:tag:${tag}`;
  }

  private entryKey(key: string) {
    return `${this.namespace}:response:${key}`;
  }

  async epoch() {
    if (this.lostBump) await this.flushIfLost();
    if (this.lostBump) return undefined;
    const values = await this.guard.attempt((client) => client.mGet([this.epochKey, this.floorKey]));
    return values && this.orNew(parseEpoch(values[0] ?? null, values[1] ?? null));
  }

  async epochAndEntry(key: string): Promise<[Epoch, string | undefined] | undefined> {
    if (this.lostBump) await this.flushIfLost();
    if (this.lostBump) return undefined;
    // Sent together, not as one pipeline: on a cluster the entry is in another slot (and often another master).
    // The entry may then be read before the epoch; the checks hold either way (see response-cache.md).
    const replies = await this.guard.attempt((client: RedisClient) =>
      Promise.all([client.mGet([this.epochKey, this.floorKey]), client.get(this.entryKey(key))]),
    );
    if (!replies) return undefined;
    const [[current, floor], stored] = replies;
    const epoch = await this.orNew(parseEpoch(current ?? null, floor ?? null));
    return epoch && [epoch, stored ?? undefined];
  }

  async versions(tags: readonly string[]) {
    if (tags.length === 0) return [];
    const values = await this.guard.attempt((client) => client.mGet(tags.map((tag) => this.tagKey(tag))));
    return values?.map((value) => Number(value ?? 0));
  }

  async bump(tags: readonly string[]) {
    const epoch = await this.guard.attempt((client) =>
      client.eval(BUMP_SCRIPT, {
        keys: [this.epochKey, this.floorKey, ...tags.map((tag) => this.tagKey(tag))],
        arguments: [String(this.tagTtlMs)],
      }),
    );
    if (epoch === undefined) this.lostBump = true;
    return epoch === undefined ? undefined : Number(epoch);
  }

  async share(key: string, json: string, ttlMs: number) {
    await this.guard.attempt((client) =>
      client.set(this.entryKey(key), json, { expiration: { type: 'PX', value: ttlMs } }),
    );
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** The normalized document's hash, once per parsed document (Apollo reuses one DocumentNode per query text). */
const documentKeys = new WeakMap<DocumentNode, string>();
function documentKey(document: DocumentNode): string {
  let key = documentKeys.get(document);
  if (key === undefined) {
    key = createHash('sha256').update(print(document)).digest('base64url');
    documentKeys.set(document, key);
  }
  return key;
}

/** Whether every tag is no newer than `epoch`: nothing the entry holds changed since it was current. */
const unchangedSince = (versions: readonly number[], epoch: number) => versions.every((version) => version <= epoch);

/** The cache itself, without Apollo: lookup, fill and bump (see the module comment). */
export class ResponseCache {
  private readonly local: LRUCache<string, Entry>;
  private readonly versions: VersionStore;
  /** Whether entries are shared through Redis (else this gateway's memory is the only layer). */
  private readonly shared: boolean;
  private readonly maxTtlMs: number;

  constructor(options: ResponseCacheOptions = {}) {
    this.maxTtlMs = (options.maxTtlSeconds ?? 300) * 1_000;
    this.shared = options.redis !== undefined;
    // A tag must outlive every entry that holds it, or an old entry would look current again.
    const tagTtlMs = 2 * this.maxTtlMs;
    this.versions = options.redis
      ? new RedisVersions(
          options.redis.guard('response cache', 'public answers are not cached (every request runs)'),
          options.namespace ?? 'storefront',
          tagTtlMs,
        )
      : new MemoryVersions(tagTtlMs);
    this.local = new LRUCache<string, Entry>({
      maxSize: options.maxBytes ?? 32 * 1024 * 1024,
      // Sized by what it costs to hold: about two bytes per character of its JSON.
      sizeCalculation: (entry) => entry.size,
    });
  }

  /**
   * The current answer for `key`, or the epoch to fill it at (read before the answer is computed), or
   * `bypass` when the versions cannot be read.
   */
  async lookup(key: string): Promise<{ hit: Entry } | { miss: number; stale: boolean } | 'bypass'> {
    const now = Date.now();
    const local = this.local.get(key);
    let stale = false;
    if (local && local.expiresAt > now) {
      const epoch = await this.versions.epoch();
      if (!epoch) return 'bypass';
      const checked = await this.check(local, epoch);
      if (checked !== 'stale') return checked;
      this.local.delete(key);
      stale = true;
      // Another gateway may have stored a newer answer since: look in Redis before calling it a miss.
      if (!this.shared) return { miss: epoch.current, stale: true };
    }
    const found = await this.versions.epochAndEntry(key);
    if (!found) return 'bypass';
    const [epoch, json] = found;
    const stored = json === undefined ? undefined : (JSON.parse(json) as StoredEntry);
    if (!stored || stored.expiresAt <= now) return { miss: epoch.current, stale };
    const entry = inMemory(stored, json!);
    const checked = await this.check(entry, epoch);
    if (checked === 'stale') return { miss: epoch.current, stale: true };
    if (checked !== 'bypass') this.local.set(key, entry, { ttl: entry.expiresAt - now });
    return checked;
  }

  /** Whether an entry is current at `epoch` (see the module comment). */
  private async check(entry: Entry, epoch: Epoch): Promise<{ hit: Entry } | 'stale' | 'bypass'> {
    // Above the current epoch: stored before the versions went back (lost with a Redis restarted empty, or
    // bumps a cluster's failed master took but its replica had not received yet), so its tags cannot be trusted.
    if (entry.epoch < epoch.floor || entry.epoch > epoch.current) return 'stale';
    if (entry.epoch !== epoch.current) {
      const versions = await this.versions.versions(entry.tags);
      if (!versions) return 'bypass';
      if (!unchangedSince(versions, entry.epoch)) return 'stale';
      // Current at this epoch too: no tag of its was bumped up to it (bumps are atomic and the epoch was
      // read first). Moving it forward in place is safe: any holder may read either value.
      entry.epoch = epoch.current;
    }
    return { hit: entry };
  }

  /**
   * Stores an answer computed after `epoch` was read, unless one of its tags was bumped since (a write
   * raced the computation: its answer may be old). Returns the entry, or undefined when not stored.
   */
  async fill(
    key: string,
    answer: { data: Record<string, unknown>; tags: string[]; maxAgeSeconds: number },
    epoch: number,
  ): Promise<Entry | undefined> {
    const ttlMs = Math.min(answer.maxAgeSeconds * 1_000, this.maxTtlMs);
    if (ttlMs <= 0) return undefined;
    const versions = await this.versions.versions(answer.tags);
    if (!versions || !unchangedSince(versions, epoch)) return undefined;
    const now = Date.now();
    const stored: StoredEntry = {
      data: answer.data,
      tags: answer.tags,
      epoch,
      maxAge: answer.maxAgeSeconds,
      storedAt: now,
      expiresAt: now + ttlMs,
    };
    const json = JSON.stringify(stored);
    const entry = inMemory(stored, json);
    this.local.set(key, entry, { ttl: ttlMs });
    await this.versions.share(key, json, ttlMs);
    return entry;
  }

  /** A write changed these entities: every answer holding one is stale, on every gateway, from now. False: not recorded. */
  async bump(tags: readonly string[]): Promise<boolean> {
    if (tags.length === 0) return true;
    return (await this.versions.bump(tags)) !== undefined;
  }
}

/** The tag every answer of a subgraph holds and every write of it bumps when it names no entities. */
const subgraphTag = (subgraph: string) => `subgraph:${subgraph}`;

/**
 * What a data source does with each subgraph answer (SubgraphDataSource's `didReceive`): gathers the
 * entity tags it reports into the request's FetchedTags. A subgraph that names nothing it holds makes the
 * answer unstorable; a mutation that names nothing it changed bumps every answer of that subgraph.
 */
export function collectEntityTags(
  subgraph: string,
  operation: string | undefined,
  response: GatewayGraphQLResponse,
  context: ResponseCacheContext,
): void {
  const fetched = (context.fetchedTags ??= new FetchedTags());
  fetched.fetches += 1;
  const extensions = response.extensions as Record<string, unknown> | undefined;
  const held = extensions?.[HELD_EXTENSION];
  const changed = extensions?.[CHANGED_EXTENSION];
  if (operation === 'mutation') {
    if (Array.isArray(changed) && changed.length > 0) for (const tag of changed) fetched.changed.add(String(tag));
    else fetched.changed.add(subgraphTag(subgraph));
    return;
  }
  fetched.held.add(subgraphTag(subgraph));
  if (Array.isArray(held)) for (const tag of held) fetched.held.add(String(tag));
  else fetched.untagged += 1;
}

/** The request's cache key: normalized document, operation name and variables. */
function cacheKey(requestContext: GraphQLRequestContext<BaseContext>): string {
  const { document, request, operationName } = requestContext;
  return createHash('sha256')
    .update(`${documentKey(document!)}\n${operationName ?? ''}\n${JSON.stringify(request.variables ?? {})}`)
    .digest('base64url');
}

/**
 * The response cache as an Apollo Server plugin, with one load per key when many miss at once: the
 * first request computes, the others wait for its answer (and run themselves if it was not storable).
 */
export function useResponseCache<TContext extends BaseContext & ResponseCacheContext>(
  cache: ResponseCache,
  options: Pick<ResponseCacheOptions, 'onLookup'> = {},
): ApolloServerPlugin<TContext> {
  const filling = new Map<string, Promise<Entry | undefined>>();
  const hit = (requestContext: GraphQLRequestContext<TContext>, entry: Entry) => {
    options.onLookup?.('hit');
    // As a shared HTTP cache answers: the origin's Cache-Control, and its Age.
    requestContext.overallCachePolicy.restrict({ maxAge: entry.maxAge, scope: 'PUBLIC' });
    requestContext.response.http.headers.set(
      'age',
      String(Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1_000))),
    );
    return {
      http: requestContext.response.http,
      body: { kind: 'single' as const, singleResult: { data: entry.data } },
    };
  };
  return {
    async requestDidStart() {
      let fill: { key: string; epoch: number; done: (entry: Entry | undefined) => void } | undefined;
      return {
        async responseForOperation(requestContext) {
          if (requestContext.operation?.operation !== 'query') return null;
          const key = cacheKey(requestContext as GraphQLRequestContext<BaseContext>);
          const found = await cache.lookup(key);
          if (found === 'bypass') {
            options.onLookup?.('bypass');
            return null;
          }
          if ('hit' in found) return hit(requestContext, found.hit);
          const pending = filling.get(key);
          if (pending) {
            // Waits for the first request's answer, at most until this request's own deadline.
            const deadline = requestContext.contextValue.deadline ?? Date.now() + 5_000;
            const entry = await within(pending, deadline - Date.now());
            if (entry) return hit(requestContext, entry);
            options.onLookup?.('miss');
            return null;
          }
          options.onLookup?.(found.stale ? 'stale' : 'miss');
          let done!: (entry: Entry | undefined) => void;
          filling.set(key, new Promise((resolve) => (done = resolve)));
          fill = { key, epoch: found.miss, done };
          requestContext.contextValue.filling = true;
          return null;
        },
        async willSendResponse(requestContext) {
          const fetched = requestContext.contextValue.fetchedTags;
          if (requestContext.operation?.operation === 'mutation') {
            // Before the answer leaves: no gateway serves what this write changed once the client has it.
            if (fetched?.changed.size) await cache.bump([...fetched.changed]);
            return;
          }
          if (!fill) return;
          const { key, epoch, done } = fill;
          let entry: Entry | undefined;
          try {
            const { body } = requestContext.response;
            const policy = requestContext.overallCachePolicy.policyIfCacheable();
            const storable =
              body.kind === 'single' &&
              !body.singleResult.errors?.length &&
              body.singleResult.data &&
              policy?.scope === 'PUBLIC' &&
              fetched &&
              fetched.fetches > 0 &&
              fetched.untagged === 0;
            if (storable)
              entry = await cache.fill(
                key,
                { data: body.singleResult.data!, tags: [...fetched.held], maxAgeSeconds: policy.maxAge },
                epoch,
              );
          } finally {
            filling.delete(key);
            done(entry);
          }
        },
      };
    },
  };
}
