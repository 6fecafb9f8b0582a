import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

/**
 * An open-loop load generator (as wrk2 and k6's constant-arrival-rate executor are): request i of a
 * phase is scheduled at start + i / rate and sent then whatever is still outstanding, and its latency
 * runs from that scheduled time, so a server that stalls is charged for every request it kept waiting
 * (no coordinated omission), including time spent queued in the client when every connection is busy.
 *
 * Why not autocannon: it is closed-loop per connection (each connection waits for its response before
 * sending again, `pipelining` at most), so when the server slows down the arrival rate drops with it and
 * the overload a spike should cause never reaches the server; its `--overallRate` only caps the rate, and
 * its coordinated-omission correction back-fills the histogram with synthetic samples rather than
 * sending the requests. That hides what the issue asks about: how many requests the gateway refuses at
 * once, how long the rest wait, and when it is back to normal. (It is also not a dependency here.)
 */

/** HTTP status, or a request that got no response: `timeout` (the client gave up) or `error` (connection failed). */
export type Outcome = number | 'timeout' | 'error';

export interface Sample {
  /** When it was meant to be sent (performance.now(), ms). */
  scheduled: number;
  /** How late the generator sent it after `scheduled` (ms): the generator's own lag. */
  sendLag: number;
  /** From `scheduled` until the whole response was read, or until it failed (ms). */
  latency: number;
  outcome: Outcome;
  /** A 200 whose body has a top-level `errors` (partial data: a subgraph failed). */
  graphqlErrors: boolean;
  /** What failed, for `error`. */
  error?: string;
}

export interface Target {
  /**
   * Gateway origin, `http://127.0.0.1:<port>`; or several (gateway processes), taken in turn: request n
   * goes to origin n mod length, each origin with its own pool of `connections` / length connections.
   */
  origin: string | readonly string[];
  /** The request body (JSON), the same for every request. */
  body: string;
  /** Bearer tokens, one per user; request n uses token n mod length (round robin). */
  tokens: string[];
  /** Connections the pool may open (over all origins). */
  connections: number;
  /** Client timeout of one request, from when it is handed to the pool (ms). */
  timeoutMs: number;
}

// `"errors":[` is only ever a key: inside a JSON string its quotes would be escaped.
const ERRORS_KEY = '"errors":[';

export class LoadGenerator {
  private readonly pools: Pool[];
  private readonly pending = new Set<Promise<Sample>>();
  private next = 0;
  private nextPool = 0;
  /** Most requests outstanding at once since the last `resetPeak()`. */
  peakOutstanding = 0;
  /** Failures by code (`error` outcomes), over the whole run. */
  readonly errors = new Map<string, number>();

  constructor(private readonly target: Target) {
    const origins = typeof target.origin === 'string' ? [target.origin] : target.origin;
    if (!origins.length) throw new Error('The load generator needs an origin');
    this.pools = origins.map(
      (origin) =>
        new Pool(origin, {
          connections: Math.ceil(target.connections / origins.length),
          pipelining: 1,
          // The client timeout below is the only limit: undici's own would count idle time instead.
          headersTimeout: 0,
          bodyTimeout: 0,
        }),
    );
  }

  get outstanding(): number {
    return this.pending.size;
  }

  resetPeak(): void {
    this.peakOutstanding = this.pending.size;
  }

  /** One request, scheduled at `scheduled`; its sample is pushed to `into` once it has ended, and resolved. */
  private fire(scheduled: number, into: Sample[]): Promise<Sample> {
    const token = this.target.tokens[this.next++ % this.target.tokens.length]!;
    const pool = this.pools[this.nextPool++ % this.pools.length]!;
    const sent = performance.now();
    const signal = AbortSignal.timeout(this.target.timeoutMs);
    const done = (async () => {
      const sample: Sample = {
        scheduled,
        sendLag: sent - scheduled,
        latency: 0,
        outcome: 'error',
        graphqlErrors: false,
      };
      try {
        const response = await pool.request({
          path: '/graphql',
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: this.target.body,
          signal,
        });
        const text = await response.body.text();
        sample.outcome = response.statusCode;
        sample.graphqlErrors = response.statusCode === 200 && text.includes(ERRORS_KEY);
      } catch (error) {
        if (signal.aborted) sample.outcome = 'timeout';
        else {
          const code = (error as { code?: string }).code ?? (error as Error).name ?? 'unknown';
          sample.error = code;
          this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
        }
      }
      sample.latency = performance.now() - scheduled;
      into.push(sample);
      return sample;
    })();
    this.pending.add(done);
    if (this.pending.size > this.peakOutstanding) this.peakOutstanding = this.pending.size;
    void done.finally(() => this.pending.delete(done));
    return done;
  }

  /**
   * Open loop: `rate` requests per second for `seconds` from `start` (performance.now() ms; pass the
   * previous phase's end so phases abut), sent on schedule without waiting for answers. Resolves when the
   * last one has been sent (not answered), with the time it was.
   */
  async openLoop(rate: number, seconds: number, start: number, into: Sample[]): Promise<number> {
    const count = Math.max(1, Math.round(rate * seconds));
    const interval = 1000 / rate;
    let lastSend = start;
    for (let i = 0; i < count;) {
      const now = performance.now();
      // Everything due by now goes out, late ones included (their latency still counts from schedule).
      while (i < count && start + i * interval <= now) {
        void this.fire(start + i * interval, into);
        lastSend = performance.now();
        i += 1;
      }
      if (i < count) await sleep(Math.max(0, start + i * interval - performance.now()));
    }
    return lastSend;
  }

  /**
   * Closed loop: `concurrency` requests kept outstanding for `seconds` (latency from each send). Resolves
   * when all have ended. With `refusalPauseMs`, a worker whose request was refused (429, 503) waits that
   * long before its next one, as a client honouring a refusal would, instead of retrying at once: an
   * instant refusal would otherwise come back at once, over and over, and the refusals would be most of
   * what the service spends its CPU on.
   */
  async closedLoop(concurrency: number, seconds: number, into: Sample[], refusalPauseMs = 0): Promise<void> {
    const end = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          const { outcome } = await this.fire(performance.now(), into);
          if (refusalPauseMs > 0 && (outcome === 429 || outcome === 503))
            await sleep(Math.min(refusalPauseMs, Math.max(0, end - performance.now())));
        }
      }),
    );
  }

  /** Waits until every request sent so far has ended (each ends by its client timeout at the latest). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((pool) => pool.destroy()));
  }
}
