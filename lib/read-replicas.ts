import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { Prisma } from '../generated/prisma/client';
import {
  currentWalLsn,
  replayedWalLsn,
  ROUTED_QUERY,
  type DatabaseClient,
  type PrismaClient,
  type RoutedQuery,
} from './db';
import { isDatabaseUnavailable } from './dependency-outage';
import type { EntityCache, EntityTypeCache } from './entity-cache';
import { IDENTITY_HEADER } from './identity';

/**
 * Read replicas with read-your-writes (DATABASE_REPLICA_URLS): why it is built this way is in
 * read-replicas.md. In short: a subgraph reads from a streaming standby and writes to the primary; after a
 * mutation it reports the primary's WAL position (WRITE_LSN_EXTENSION); the gateway remembers it per caller
 * (gateway/read-your-writes.ts) and sends it back, signed, with that caller's next requests
 * (READ_AFTER_HEADER); a subgraph reads such a request from a standby only once the standby has replayed
 * that far, else from the primary. Without replicas none of this runs.
 */

/** Header in which the gateway says where a request must read: `<lsn>~<mac>`, or `primary~<mac>`. */
export const READ_AFTER_HEADER = 'x-storefront-read-after';
/** `extensions` field of a subgraph's mutation answer: the primary's WAL position after its writes. */
export const WRITE_LSN_EXTENSION = 'writeLsn';
/** READ_AFTER_HEADER's value for a request that must see everything committed (it fills the response cache). */
export const READ_PRIMARY = 'primary';

/** Where a request must read: after this WAL position, or from the primary. */
export type ReadAfter = bigint | typeof READ_PRIMARY;

const LSN = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i;

/** A WAL position as PostgreSQL prints it (`16/B374D848`: the high and low 32 bits in hex); undefined if it is not one. */
export function parseLsn(text: string): bigint | undefined {
  const match = LSN.exec(text);
  return match ? (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`) : undefined;
}

/** The later of two WAL positions (either may be missing). */
export function laterLsn(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  return (parseLsn(a) ?? 0n) >= (parseLsn(b) ?? 0n) ? a : b;
}

const MAC_SEPARATOR = '~';
/** Its own key, derived from the identity secret, so this MAC never passes for an identity's. */
const keyOf = (secret: string): KeyObject =>
  createSecretKey(Buffer.from(hkdfSync('sha256', secret, '', 'storefront read-after', 32)));
/** Over the value and the request's identity header, itself bound to the request's body: replayed with no other request. */
const macOf = (key: KeyObject, value: string, identity: string) =>
  createHmac('sha256', key).update(value).update('\n').update(identity).digest();

/** Signs READ_AFTER_HEADER's value for the request carrying `identity` (its IDENTITY_HEADER). */
export function createReadAfterSigner(secret: string) {
  const key = keyOf(secret);
  return (value: string, identity: string): string =>
    `${value}${MAC_SEPARATOR}${macOf(key, value, identity).toString('base64url')}`;
}

export type ReadAfterSigner = ReturnType<typeof createReadAfterSigner>;

/**
 * Reads READ_AFTER_HEADER from a subgraph request: undefined when there is none, or it is malformed or
 * not signed for this request (it can only send reads to the primary, so a bad one is ignored, not refused).
 */
export function createReadAfterVerifier(secret: string) {
  const key = keyOf(secret);
  return (headers: IncomingHttpHeaders): ReadAfter | undefined => {
    const header = headers[READ_AFTER_HEADER];
    const identity = headers[IDENTITY_HEADER];
    if (typeof header !== 'string' || typeof identity !== 'string') return undefined;
    const separator = header.lastIndexOf(MAC_SEPARATOR);
    if (separator < 0) return undefined;
    const value = header.slice(0, separator);
    const presented = Buffer.from(header.slice(separator + 1), 'base64url');
    const expected = macOf(key, value, identity);
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return undefined;
    return value === READ_PRIMARY ? READ_PRIMARY : parseLsn(value);
  };
}

export type ReadAfterVerifier = ReturnType<typeof createReadAfterVerifier>;

/** Prisma model operations that only read: a request's view sends them to its standby. */
const READ_OPERATIONS = new Set([
  'findFirst',
  'findFirstOrThrow',
  'findMany',
  'findUnique',
  'findUniqueOrThrow',
  'count',
  'aggregate',
  'groupBy',
]);
/** Client methods that write or open a transaction: they pin the request to the primary. */
const PINNING_METHODS = new Set(['$transaction', '$executeRaw', '$executeRawUnsafe']);
/** The client's model properties (`product`, `webhookSubscription`…). */
const MODELS = new Set(Object.values(Prisma.ModelName).map((name) => name[0]!.toLowerCase() + name.slice(1)));

type Delegate = Record<string, (...args: unknown[]) => unknown>;

/**
 * Whether a standby cancelled a read that conflicted with the WAL it replays (SQLSTATE 40001, which a
 * standby's reads cannot get otherwise): pg's own error, or Prisma's with the driver adapter's underneath.
 */
function isRecoveryConflict(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 4) return false;
  const { code, originalCode, meta, cause } = error as {
    code?: unknown;
    originalCode?: unknown;
    meta?: { driverAdapterError?: unknown };
    cause?: unknown;
  };
  if (code === '40001' || originalCode === '40001') return true;
  return isRecoveryConflict(meta?.driverAdapterError, depth + 1) || isRecoveryConflict(cause, depth + 1);
}

/** The subset of a pino Logger the router uses. */
export interface ReadRouterLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface ReadRouterOptions {
  /** Where a standby's outage is logged (once when it goes, once when it returns). Required; there is no default. */
  logger: ReadRouterLogger;
  /** How long a standby's replayed WAL position is trusted before it is asked again. Defaults to 5 ms. */
  replayCacheMs?: number;
  /** How often a standby that failed is tried again (in the background; reads use the primary meanwhile). Defaults to 1000 ms. */
  probeIntervalMs?: number;
}

/** One read replica: its client, whether it answers, how far it has replayed, and its read-only views. */
class Standby {
  available = true;
  private replayed: { lsn: bigint | null; at: number } | undefined;
  private asking: Promise<void> | undefined;
  private probe: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly stopWatching: () => void;
  /** Per model: the primary's delegate with its read operations sent here (falling back to the primary). */
  private readonly models = new Map<string, Delegate>();

  constructor(
    readonly index: number,
    private readonly client: DatabaseClient,
    private readonly primary: DatabaseClient,
    private readonly options: Required<ReadRouterOptions>,
  ) {
    // Any statement's connection failing (a restart drops the idle ones too) sends reads to the primary at once.
    this.stopWatching = client.watch({ unreachable: (error) => this.lost(error), answered: () => {} });
  }

  /** A model's delegate whose reads run here while this standby answers, and on the primary when it does not. */
  model(key: string): Delegate {
    let model = this.models.get(key);
    if (!model) {
      const onPrimary = (this.primary.prisma as unknown as Record<string, Delegate>)[key]!;
      const here = (this.client.prisma as unknown as Record<string, Delegate>)[key]!;
      const operations = new Map<string | symbol, unknown>();
      model = new Proxy(onPrimary, {
        get: (target, operation) => {
          let method = operations.get(operation);
          if (method === undefined) {
            method =
              typeof operation === 'string' && READ_OPERATIONS.has(operation)
                ? (...args: unknown[]) =>
                    this.orPrimary(
                      () => here[operation]!(...args) as Promise<unknown>,
                      () => target[operation]!(...args) as Promise<unknown>,
                    )
                : typeof target[operation as string] === 'function'
                  ? target[operation as string]!.bind(target)
                  : target[operation as string];
            operations.set(operation, method);
          }
          return method;
        },
      });
      this.models.set(key, model);
    }
    return model;
  }

  /** queryRows here, or on the primary when this standby does not answer. */
  readonly query: RoutedQuery = (text, values) =>
    this.orPrimary(
      () => this.client.pool.query(text, values),
      () => this.primary.pool.query(text, values),
    );

  /**
   * A read here; the same read on the primary if this standby cannot be reached (now or meanwhile), or
   * cancelled it for a conflict with its replay.
   */
  private async orPrimary<T>(here: () => Promise<T>, onPrimary: () => Promise<T>): Promise<T> {
    if (!this.available) return onPrimary();
    try {
      return await here();
    } catch (error) {
      if (isRecoveryConflict(error)) return onPrimary();
      if (this.available && !isDatabaseUnavailable(error)) throw error;
      this.lost(error);
      return onPrimary();
    }
  }

  /** Whether this standby has replayed the primary's WAL up to `lsn` (asked at most every replayCacheMs). */
  async hasReplayed(lsn: bigint): Promise<boolean> {
    // A standby's replay position only moves forward: once past `lsn`, no need to ask again.
    if ((this.replayed?.lsn ?? -1n) >= lsn) return true;
    if (!this.replayed || Date.now() - this.replayed.at >= this.options.replayCacheMs) await this.askReplayed();
    return this.available && (this.replayed?.lsn ?? -1n) >= lsn;
  }

  /** One question at a time, shared by the requests that need the answer meanwhile. */
  private askReplayed(): Promise<void> {
    this.asking ??= replayedWalLsn(this.client)
      .then(
        (text) => {
          // NULL: not a standby (promoted, or not one at all): nothing to compare, so no caller is sent to it after a write.
          this.replayed = { lsn: text === null ? null : (parseLsn(text) ?? null), at: Date.now() };
        },
        (error: unknown) => {
          if (isDatabaseUnavailable(error)) this.lost(error);
        },
      )
      .finally(() => (this.asking = undefined));
    return this.asking;
  }

  /** This standby failed: reads go to the primary, and it is probed in the background until it answers. */
  private lost(error: unknown): void {
    if (!this.available || this.closed) return;
    this.available = false;
    this.replayed = undefined;
    const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
    this.options.logger.warn(
      {
        dependency: 'database replica',
        replica: this.index,
        code: typeof code === 'string' ? code : null,
        reason: String(message),
      },
      'read replica unavailable: its reads go to the primary until it is back',
    );
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    const since = Date.now();
    const back = () => {
      if (this.closed) return;
      this.available = true;
      this.options.logger.info(
        { dependency: 'database replica', replica: this.index, downMs: Date.now() - since },
        'read replica is back: reads go to it again',
      );
    };
    const attempt = () => {
      if (this.closed) return;
      this.probe = setTimeout(() => void replayedWalLsn(this.client).then(back, attempt), this.options.probeIntervalMs);
      this.probe.unref();
    };
    attempt();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.probe);
    this.stopWatching();
  }
}

/**
 * Where a subgraph's requests read: one per subgraph server over its DatabaseClient with replicas. Each
 * request gets a ReadSession: a standby (round robin among those that answer, and for a caller after a
 * write, that have replayed it), or the primary.
 */
export class ReadRouter {
  private readonly standbys: Standby[];
  private next = 0;

  constructor(
    private readonly database: DatabaseClient,
    options: ReadRouterOptions,
  ) {
    const settings = { replayCacheMs: 5, probeIntervalMs: 1_000, ...options };
    this.standbys = database.replicas.map((replica, index) => new Standby(index, replica, database, settings));
  }

  /** Whether each standby answers (by index), for metrics. */
  availability(): boolean[] {
    return this.standbys.map((standby) => standby.available);
  }

  /** Where a request reads, given its verified READ_AFTER_HEADER. */
  async session(readAfter: ReadAfter | undefined): Promise<ReadSession> {
    if (readAfter !== READ_PRIMARY) {
      for (let tried = 0; tried < this.standbys.length; tried += 1) {
        const standby = this.standbys[this.next]!;
        this.next = (this.next + 1) % this.standbys.length;
        if (!standby.available) continue;
        if (readAfter === undefined || (await standby.hasReplayed(readAfter)))
          return new ReadSession(this.database, standby);
      }
    }
    return new ReadSession(this.database, undefined);
  }

  /** The primary's WAL position now: reported after a mutation, so its caller's next reads include it. */
  writeLsn(): Promise<string> {
    return currentWalLsn(this.database);
  }

  close(): void {
    for (const standby of this.standbys) standby.close();
  }
}

/**
 * One request's way to the database: `db` is the request's Prisma client (the loaders' and resolvers'), which
 * sends each model read to the request's standby and everything else to the primary. The route is chosen
 * when `db.<model>` is read (so while a query is built, synchronously), from:
 * - pinned: the request reads the primary from then on (a mutation, from before it runs; a `$transaction` or
 *   raw write through `db`; or no standby could serve it);
 * - filling: a cross-request cache is being filled (see cache()).
 */
export class ReadSession {
  /** The request's Prisma client. */
  readonly db: PrismaClient;
  private pinned: boolean;
  private filling = 0;

  constructor(
    private readonly primary: DatabaseClient,
    private readonly standby: Standby | undefined,
  ) {
    this.pinned = standby === undefined;
    const query: RoutedQuery = (text, values) =>
      this.standbyNow ? this.standby!.query(text, values) : this.primary.pool.query(text, values);
    this.db = new Proxy(primary.prisma, {
      get: (target, key) => {
        if (key === ROUTED_QUERY) return query;
        if (typeof key === 'string' && MODELS.has(key))
          return this.standbyNow ? this.standby!.model(key) : Reflect.get(target, key, target);
        if (typeof key === 'string' && PINNING_METHODS.has(key)) this.pin();
        const value = Reflect.get(target, key, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  /** Whether a read built now goes to the standby. */
  private get standbyNow(): boolean {
    return !this.pinned && this.filling === 0 && this.standby!.available;
  }

  /** Reads the primary for the rest of the request. */
  pin(): void {
    this.pinned = true;
  }

  /**
   * The entity cache as this request's loaders see it: what they load to fill it is read from the primary.
   * The cache's invalidation is exact only for rows read after the write (a tombstone, then a fresh load):
   * a standby still behind a write would store the old row as current, for every caller, until its TTL.
   * The view turns to the primary while the cache calls a loader's load, which builds its statement
   * before its first await (keyedLoader's and the reviews' slices do).
   */
  cache(cache: EntityCache | null): EntityCache | null {
    if (!cache || this.pinned) return cache;
    const types = new Map<EntityTypeCache<unknown>, EntityTypeCache<unknown>>();
    const fillOnPrimary = (typeCache: EntityTypeCache<unknown>) =>
      new Proxy(typeCache, {
        get: (target, key) => {
          if (key === 'load')
            return (ids: readonly string[], loadMissing: (ids: string[]) => Promise<Map<string, unknown>>) =>
              target.load(ids, (missing) => this.onPrimary(() => loadMissing(missing)));
          const value = Reflect.get(target, key, target) as unknown;
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
    return new Proxy(cache, {
      get: (target, key) => {
        const value = Reflect.get(target, key, target) as unknown;
        if (key !== 'type') return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
        return (spec: Parameters<EntityCache['type']>[0]) => {
          const typeCache = target.type<unknown>(spec);
          let wrapped = types.get(typeCache);
          if (!wrapped) types.set(typeCache, (wrapped = fillOnPrimary(typeCache)));
          return wrapped;
        };
      },
    });
  }

  /** Runs `build` (which builds statements: they are sent when awaited) with this request's reads on the primary. */
  private onPrimary<T>(build: () => T): T {
    this.filling += 1;
    try {
      return build();
    } finally {
      this.filling -= 1;
    }
  }
}

/** A subgraph request's context with its ReadSession (lib/subgraph.ts puts it there when there are replicas). */
export interface ReadsContext {
  reads?: ReadSession;
}

/**
 * The subgraph's side of read-your-writes: a mutation reads the primary from before it runs (its checks
 * must see what is committed), and its answer reports the primary's WAL position after it
 * (WRITE_LSN_EXTENSION), which the gateway sends back with the caller's next requests.
 */
export function useReadReplicas<TContext extends BaseContext & ReadsContext>(
  router: ReadRouter,
): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ operation, contextValue }) {
          if (operation?.operation === 'mutation') contextValue.reads?.pin();
        },
        async willSendResponse({ operation, response }) {
          if (operation?.operation !== 'mutation' || response.body.kind !== 'single') return;
          let lsn: string;
          try {
            lsn = await router.writeLsn();
          } catch {
            // The primary is unreachable: the mutation's own answer says so.
            return;
          }
          const result = response.body.singleResult;
          result.extensions = { ...result.extensions, [WRITE_LSN_EXTENSION]: lsn };
        },
      };
    },
  };
}
