import type { RequestHandler, Response } from 'express';
import { ErrorCode } from '../lib/errors';

/** Why a request was refused at admission. */
export type AdmissionRefusal = 'overloaded' | 'event_loop' | 'background';

export interface AdmissionOptions {
  /** The most requests executing at once: the ceiling of the adaptive limit (MAX_IN_FLIGHT). Defaults to 512. */
  maxInFlight?: number;
  /** The fewest the adaptive limit may shrink to. Defaults to 4. */
  minInFlight?: number;
  /** The adaptive limit a gateway starts with: low, so a flood at start-up is not all let in. Defaults to 8 (or maxInFlight, if lower). */
  initialInFlight?: number;
  /** The longest a request waits for a slot before it is refused with 503 (ADMISSION_QUEUE_MS). Defaults to 100 ms. */
  maxQueueMs?: number;
  /**
   * The latency the limit keeps admitted requests under (ADMISSION_TARGET_MS): a request that takes longer
   * from admission to its answer shrinks the limit; answers faster than it let the limit grow. Defaults to 300 ms.
   */
  targetLatencyMs?: number;
  /**
   * How late the gateway's event loop may run, summed over the last second, before new requests are refused
   * at once (MAX_EVENT_LOOP_DELAY_MS): 250 means it spent a quarter of that second behind, late on at least
   * three of its checks. One pause, however long (a garbage collection, a cold start's first query plan),
   * is not saturation; a loop late again and again is. Defaults to 250 ms.
   */
  maxEventLoopDelayMs?: number;
  /**
   * Whether a request is background work (a job's page, sent as its owner by a jobs worker). Background work
   * runs only on spare capacity: it never waits for a slot, never takes more than half of them, and is refused
   * (503 OVERLOADED, reason `background`) while anything waits or the event loop runs more than half of
   * `maxEventLoopDelayMs` late; the worker waits and sends the page again. Defaults to none: every request is foreground.
   */
  isBackground?: (res: Response) => boolean;
  /** Told of every refusal (metrics). Defaults to none. */
  onRefuse?: (reason: AdmissionRefusal) => void;
}

export interface Admission {
  /**
   * Express middleware for the very start of a request, before its credentials are checked or its body
   * read: refuses it at once when the gateway is already shedding (its event loop lags, or as many
   * requests wait for a slot as hold one), so that under a flood refusing costs next to nothing.
   */
  shedEarly: RequestHandler;
  /** Express middleware once the body has arrived: admits the request (a slot until its response closes), queues it briefly, or refuses it. */
  middleware: RequestHandler;
  /** The current adaptive limit, requests executing and waiting, and the event loop's lateness over the last second. */
  state(): { limit: number; inFlight: number; queued: number; eventLoopDelayMs: number };
  close(): void;
}

/** How often the event loop's delay is measured, and how long a lag seen keeps new requests out. */
const LOOP_TICK_MS = 50;
const LOOP_WINDOW_MS = 1_000;
/** A tick this late counts as late; this many late ticks in the window (with the total over the threshold) is saturation. */
const LATE_TICK_MS = 20;
const LATE_TICKS = 3;
/** The limit shrinks at most once per this long, so one burst of slow answers costs one step. */
const BACKOFF_INTERVAL_MS = 250;
const BACKOFF_RATIO = 0.9;

/**
 * Admission control for the gateway: every request needs one of `limit` slots to run, and `limit`
 * adapts to what the service behind it can take, so that under overload the excess is refused at once
 * with 503 OVERLOADED and Retry-After while admitted requests keep a bounded latency, instead of all
 * of them waiting longer and longer (see admission.md).
 *
 * - The limit moves by AIMD, as Netflix's concurrency-limits AIMDLimit does: an answer slower than
 *   `targetLatencyMs` multiplies it by 0.9, a lagging event loop by 0.5 (either at most every 250 ms); a
 *   fast answer while the limit is in use adds 1/limit (one slot per round of requests).
 * - A request that finds every slot taken waits at most `maxQueueMs`, first come first served; then 503.
 *   The queue holds at most as many requests as there are slots; past that, and while the event loop
 *   lags, requests are refused before their credentials are checked or their body read (`shedEarly`).
 * - While the gateway's own event loop ran more than `maxEventLoopDelayMs` late over the last second,
 *   new requests are refused at once.
 */
export function useAdmission(options: AdmissionOptions = {}): Admission {
  const maxInFlight = options.maxInFlight ?? 512;
  const minInFlight = Math.min(options.minInFlight ?? 4, maxInFlight);
  const maxQueueMs = options.maxQueueMs ?? 100;
  const targetLatencyMs = options.targetLatencyMs ?? 300;
  const maxEventLoopDelayMs = options.maxEventLoopDelayMs ?? 250;
  let limit = Math.min(options.initialInFlight ?? 8, maxInFlight);
  let inFlight = 0;
  let lastBackoff = 0;
  const queue: Array<{ admit(): void; timer: NodeJS.Timeout }> = [];

  // A timer that should fire every LOOP_TICK_MS: how late it fires is how long the loop was blocked (as
  // toobusy-js measures it). The callback due during a stall runs right after it, so the lag counts at once.
  let expectedTick = performance.now() + LOOP_TICK_MS;
  const lags: Array<{ at: number; lag: number }> = [];
  let eventLoopDelayMs = 0;
  let saturated = false;
  const sampler = setInterval(() => {
    const now = performance.now();
    lags.push({ at: now, lag: Math.max(0, now - expectedTick) });
    expectedTick = now + LOOP_TICK_MS;
    while (lags.length && now - lags[0]!.at > LOOP_WINDOW_MS) lags.shift();
    eventLoopDelayMs = lags.reduce((total, tick) => total + tick.lag, 0);
    // Saturated is late again and again; one long pause (a cold start's first query plan, a garbage
    // collection) is not, however long.
    saturated =
      eventLoopDelayMs > maxEventLoopDelayMs && lags.filter((tick) => tick.lag >= LATE_TICK_MS).length >= LATE_TICKS;
    // A saturated loop with requests running is the gateway itself overloaded: the strongest signal to admit fewer.
    if (saturated && inFlight > 0) backOff(0.5);
  }, LOOP_TICK_MS);
  sampler.unref();
  // Lag without requests running is not load (a cold start's first requests): nothing to shed then.
  const lagging = () => saturated && inFlight > 0;

  const refuse = (res: Response, reason: AdmissionRefusal) => {
    options.onRefuse?.(reason);
    res
      .status(503)
      .set('retry-after', '1')
      .json({
        errors: [{ message: 'The service is at capacity; retry shortly.', extensions: { code: ErrorCode.OVERLOADED } }],
      });
  };

  const finished = (admittedAt: number) => {
    inFlight -= 1;
    const latency = performance.now() - admittedAt;
    if (latency > targetLatencyMs) {
      backOff(BACKOFF_RATIO);
    } else if (inFlight + 1 >= limit / 2) {
      // Grow only while the limit is what holds requests back, not while it sits mostly unused.
      limit = Math.min(maxInFlight, limit + 1 / Math.max(1, Math.floor(limit)));
    }
    while (queue.length && inFlight < Math.floor(limit)) {
      const next = queue.shift()!;
      clearTimeout(next.timer);
      next.admit();
    }
  };

  function backOff(ratio: number) {
    const now = performance.now();
    if (now - lastBackoff < BACKOFF_INTERVAL_MS) return;
    limit = Math.max(minInFlight, Math.floor(limit * ratio));
    lastBackoff = now;
  }

  const run = (res: Response, next: () => void) => {
    inFlight += 1;
    const admittedAt = performance.now();
    res.once('close', () => finished(admittedAt));
    next();
  };

  // A request that would queue behind as many others as there are slots would not get one in time.
  const queueFull = () => queue.length >= Math.max(1, Math.floor(limit));
  const shedEarly: RequestHandler = (_req, res, next) => {
    if (lagging()) return refuse(res, 'event_loop');
    if (queueFull()) return refuse(res, 'overloaded');
    next();
  };

  const middleware: RequestHandler = (_req, res, next) => {
    if (lagging()) return refuse(res, 'event_loop');
    if (options.isBackground?.(res)) {
      const spare =
        queue.length === 0 && inFlight < Math.floor(limit / 2) && eventLoopDelayMs <= maxEventLoopDelayMs / 2;
      return spare ? run(res, next) : refuse(res, 'background');
    }
    if (inFlight < Math.floor(limit) && queue.length === 0) return run(res, next);
    if (maxQueueMs <= 0 || queueFull()) return refuse(res, 'overloaded');
    const waiter = {
      admit: () => run(res, next),
      timer: setTimeout(() => {
        queue.splice(queue.indexOf(waiter), 1);
        refuse(res, 'overloaded');
      }, maxQueueMs),
    };
    queue.push(waiter);
    // A client that gives up while waiting leaves the queue.
    res.once('close', () => {
      const index = queue.indexOf(waiter);
      if (index < 0) return;
      queue.splice(index, 1);
      clearTimeout(waiter.timer);
    });
  };

  return {
    shedEarly,
    middleware,
    state: () => ({ limit: Math.floor(limit), inFlight, queued: queue.length, eventLoopDelayMs }),
    close: () => {
      clearInterval(sampler);
      for (const waiter of queue.splice(0)) clearTimeout(waiter.timer);
    },
  };
}
