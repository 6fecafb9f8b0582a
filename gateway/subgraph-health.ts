import type { Logger } from '../lib/logger';
import type { BreakerState } from './subgraph-data-source';

/** A subgraph as the health monitor sees it: where it is, and its breaker. */
export interface MonitoredSubgraph {
  readonly subgraph: string;
  /** Its GraphQL endpoint; its readiness check is /readyz beside it. */
  readonly url: string;
  /** Every replica's endpoint when it has several (SUBGRAPH_<NAME>_URL listing them): ready while any one is. Defaults to `url` alone. */
  readonly urls?: readonly string[];
  breakerState(): BreakerState;
  closeBreaker(): void;
}

export type SubgraphReadiness = 'ready' | 'not_ready' | 'unreachable' | 'unknown';

export interface SubgraphHealthOptions {
  /** How often each subgraph's /readyz is asked while all is well. Defaults to 1000 ms. */
  intervalMs?: number;
  /** How often while a subgraph is not ready or its breaker is open, so its return is seen at once. Defaults to 250 ms. */
  recoveryIntervalMs?: number;
  /** How long one check may take. Defaults to 500 ms. */
  timeoutMs?: number;
  /**
   * Subgraphs the gateway cannot serve its pages without (READINESS_SUBGRAPHS): its /readyz is 503 while
   * one of them is not ready. With none, it is 503 only while no subgraph is ready. Defaults to none.
   */
  required?: readonly string[];
  logger: Logger;
}

/**
 * Asks every subgraph's /readyz on a short interval, for two things:
 * - the gateway's own /readyz (see `ready()`): ready while every required subgraph is, and at least one is;
 * - faster recovery: when a subgraph that was down answers ready again, its open breaker closes at once
 *   instead of waiting out the breaker's reset timeout. A breaker that opened while the subgraph said it
 *   was ready (failing calls, not a down subgraph) is left to its own timeout, so a flood is never let
 *   through on a readiness check that proves nothing.
 */
export class SubgraphHealth {
  private readonly states = new Map<string, { readiness: SubgraphReadiness; wasDown: boolean }>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly subgraphs: () => readonly MonitoredSubgraph[],
    private readonly options: SubgraphHealthOptions,
  ) {}

  start(): void {
    void this.tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Each subgraph's last known readiness. */
  readiness(): Record<string, SubgraphReadiness> {
    return Object.fromEntries(
      this.subgraphs().map(({ subgraph }) => [subgraph, this.states.get(subgraph)?.readiness ?? 'unknown']),
    );
  }

  /** Whether the gateway can serve its pages: every required subgraph ready, and at least one ready. */
  ready(): boolean {
    const readiness = this.readiness();
    const ready = (name: string) => readiness[name] === 'ready' || readiness[name] === 'unknown';
    const names = Object.keys(readiness);
    return names.some(ready) && (this.options.required ?? []).every((name) => !names.includes(name) || ready(name));
  }

  private async tick(): Promise<void> {
    const subgraphs = this.subgraphs();
    await Promise.all(subgraphs.map((subgraph) => this.check(subgraph)));
    if (this.stopped) return;
    const recovering = subgraphs.some(
      (monitored) =>
        this.states.get(monitored.subgraph)?.readiness !== 'ready' || monitored.breakerState() !== 'closed',
    );
    this.timer = setTimeout(
      () => void this.tick(),
      recovering ? (this.options.recoveryIntervalMs ?? 250) : (this.options.intervalMs ?? 1_000),
    );
    this.timer.unref();
  }

  private async check(subgraph: MonitoredSubgraph): Promise<void> {
    // With replicas, the subgraph is as ready as its readiest one: calls pass over a dead replica.
    const answers = await Promise.all((subgraph.urls ?? [subgraph.url]).map((url) => this.readinessOf(url)));
    const readiness: SubgraphReadiness = answers.includes('ready')
      ? 'ready'
      : answers.includes('not_ready')
        ? 'not_ready'
        : 'unreachable';
    const previous = this.states.get(subgraph.subgraph);
    const wasDown = readiness !== 'ready' || (previous?.wasDown ?? false);
    if (previous && previous.readiness !== readiness) {
      const log = { subgraph: subgraph.subgraph, readiness, was: previous.readiness };
      if (readiness === 'ready') this.options.logger.info(log, 'subgraph ready again');
      else this.options.logger.warn(log, 'subgraph not ready');
    }
    if (readiness === 'ready' && wasDown && subgraph.breakerState() !== 'closed') subgraph.closeBreaker();
    // "Was down" lasts until the breaker has closed after it came back.
    this.states.set(subgraph.subgraph, {
      readiness,
      wasDown: readiness !== 'ready' || (wasDown && subgraph.breakerState() !== 'closed'),
    });
  }

  private async readinessOf(url: string): Promise<SubgraphReadiness> {
    try {
      const response = await fetch(new URL('/readyz', url), {
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 500),
      });
      await response.body?.cancel();
      return response.ok ? 'ready' : 'not_ready';
    } catch {
      return 'unreachable';
    }
  }
}
