import { performance } from 'node:perf_hooks';
import { cpuTicks, rssBytes, type Service } from './processes';

/** RSS and CPU time of every service process, read from /proc: once a second in the background, and on demand at phase edges. */

export interface Reading {
  /** performance.now() (ms). */
  at: number;
  /** By service name: resident set size in bytes. */
  rss: Record<string, number | undefined>;
  /** By service name: CPU ticks used so far. */
  ticks: Record<string, number | undefined>;
  /** The benchmark process's own CPU time so far (µs, user + system). */
  benchCpu: number;
}

export class ResourceSampler {
  readonly samples: Reading[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly services: Service[]) {}

  read(): Reading {
    const rss: Record<string, number | undefined> = {};
    const ticks: Record<string, number | undefined> = {};
    for (const service of this.services) {
      rss[service.name] = service.child.pid === undefined ? undefined : rssBytes(service.child.pid);
      ticks[service.name] = service.child.pid === undefined ? undefined : cpuTicks(service.child.pid);
    }
    const cpu = process.cpuUsage();
    return { at: performance.now(), rss, ticks, benchCpu: cpu.user + cpu.system };
  }

  start(intervalMs = 1_000): void {
    this.timer = setInterval(() => this.samples.push(this.read()), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Background readings taken between `from` and `to` (performance.now() ms). */
  between(from: number, to: number): Reading[] {
    return this.samples.filter((reading) => reading.at >= from && reading.at <= to);
  }
}
