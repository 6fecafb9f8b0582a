import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { LRUCache } from 'lru-cache';
import type { Caller } from '../lib/authorization';
import { laterLsn, parseLsn, READ_PRIMARY, WRITE_LSN_EXTENSION } from '../lib/read-replicas';
import type { RedisConnection, RedisGuard } from '../lib/redis';
import type { GatewayGraphQLResponse } from './subgraph-data-source';

/**
 * The gateway's side of read-your-writes over the subgraphs' read replicas (lib/read-replicas.md): it
 * remembers the WAL position each caller's last mutation reached (its subgraphs report it) and sends it,
 * signed, with that caller's fetches, so their reads wait for a standby that has it or go to the primary.
 * Only signed-in callers are followed: every mutation needs one.
 */

/** What a request carries for it (GatewayContext). */
export interface ReadYourWritesContext {
  /** Where this request's fetches must read (READ_AFTER_HEADER): the caller's last write, or `primary`. Set before it runs. */
  readAfter?: string;
  /** The primary's WAL position after this request's own mutation fetches. */
  wroteAt?: string;
}

export interface CallerWritesOptions {
  /** Shares callers' positions between gateways. Defaults to none: this gateway's memory only. */
  redis?: RedisConnection;
  /** Prefix of its Redis keys (REDIS_NAMESPACE). Defaults to storefront. */
  namespace?: string;
  /**
   * How long a caller's last write is remembered: their reads wait for it this long at most, so a replica
   * lagging further serves them older data. Defaults to 30000 ms.
   */
  ttlMs?: number;
  /** Callers remembered in memory at most (the least recent are forgotten first). Defaults to 100000. */
  maxCallers?: number;
}

/** A WAL position as 16 hex digits: Redis compares two as strings. */
const sortable = (lsn: string) => (parseLsn(lsn) ?? 0n).toString(16).padStart(16, '0');
const printable = (stored: string) => {
  const value = BigInt(`0x${stored}`);
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
};

/** Keeps the later of the stored position and ARGV[1], for ARGV[2] ms. */
const REMEMBER_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current and current >= ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])`;

/** Each signed-in caller's last write position: in memory, and in Redis when the gateway has it. */
export class CallerWrites {
  private readonly local: LRUCache<string, string>;
  private readonly guard: RedisGuard | undefined;
  private readonly namespace: string;
  private readonly ttlMs: number;

  constructor(options: CallerWritesOptions = {}) {
    this.ttlMs = options.ttlMs ?? 30_000;
    this.namespace = options.namespace ?? 'storefront';
    this.local = new LRUCache({ max: options.maxCallers ?? 100_000, ttl: this.ttlMs });
    this.guard = options.redis?.guard(
      'read-your-writes',
      "a caller's reads after a write through another gateway may miss it while replicas lag",
    );
  }

  private key(callerId: string): string {
    return `${this.namespace}:read-after:${callerId}`;
  }

  /** The caller's last write position, or undefined (none within the TTL). */
  async latest(callerId: string): Promise<string | undefined> {
    const here = this.local.get(callerId);
    const shared = await this.guard?.attempt((client) => client.get(this.key(callerId)));
    return laterLsn(here, shared ? printable(shared) : undefined);
  }

  /** The caller wrote up to `lsn`: remembered before their answer leaves, so their next request has it. */
  async remember(callerId: string, lsn: string): Promise<void> {
    this.local.set(callerId, laterLsn(this.local.get(callerId), lsn)!);
    await this.guard?.attempt((client) =>
      client.eval(REMEMBER_SCRIPT, { keys: [this.key(callerId)], arguments: [sortable(lsn), String(this.ttlMs)] }),
    );
  }
}

/** What the data sources do with each subgraph answer (SubgraphDataSource's `didReceive`): a mutation's position. */
export function collectWriteLsn(
  operation: string | undefined,
  response: GatewayGraphQLResponse,
  context: ReadYourWritesContext,
): void {
  if (operation !== 'mutation') return;
  const lsn = (response.extensions as Record<string, unknown> | undefined)?.[WRITE_LSN_EXTENSION];
  if (typeof lsn === 'string' && parseLsn(lsn) !== undefined) context.wroteAt = laterLsn(context.wroteAt, lsn);
}

/** Where a fetch of this request must read: after the caller's writes (this request's own first), or the primary. */
export function readAfterOf(context: Partial<ReadYourWritesContext>): string | undefined {
  if (context.readAfter === READ_PRIMARY) return READ_PRIMARY;
  return laterLsn(context.readAfter, context.wroteAt);
}

/**
 * Before a request runs (after the response cache had its say): where its fetches must read — the primary
 * when it fills the response cache (`filling`: what is stored is served to everyone, so it must not come
 * from a lagging replica), else after the caller's last write. After a mutation: its position, remembered
 * before the answer leaves.
 */
export function useReadYourWrites<
  TContext extends BaseContext & Partial<Caller> & ReadYourWritesContext & { filling?: boolean },
>(writes: CallerWrites): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async executionDidStart({ contextValue }) {
          if (contextValue.filling) contextValue.readAfter = READ_PRIMARY;
          else if (contextValue.callerId) contextValue.readAfter = await writes.latest(contextValue.callerId);
        },
        async willSendResponse({ contextValue }) {
          if (contextValue.wroteAt && contextValue.callerId)
            await writes.remember(contextValue.callerId, contextValue.wroteAt);
        },
      };
    },
  };
}
