import { performance } from 'node:perf_hooks';
import { printTable } from '../bench-kit';
import type { LoadGenerator, Sample } from './open-loop';
import { duration, rate, summarise, type Summary } from './stats';

/**
 * Finds the sustainable rate R: a short closed-loop run estimates the saturated throughput X, then
 * open-loop steps at growing fractions of X run until one fails (a refusal, timeout, connection error or
 * other status, or accepted p99 over `p99LimitMs`). R is the fastest step that passed. Each step's
 * answers are awaited before the next starts, so a step is judged on all of its requests.
 */

export interface ProbeStep {
  rate: number;
  summary: Summary;
  passed: boolean;
}

export interface Capacity {
  /** Closed loop: requests outstanding and the 200s per second it got. */
  closedLoop: { concurrency: number; seconds: number; throughput: number; summary: Summary };
  steps: ProbeStep[];
  stepSeconds: number;
  /** The fastest step that passed. */
  rate: number;
}

const UP = [0.5, 0.65, 0.8, 0.95, 1.1, 1.25, 1.4, 1.6, 1.8, 2, 2.3, 2.6, 3];
const DOWN = [0.35, 0.25, 0.15, 0.1, 0.05];

export async function probeCapacity(
  generator: LoadGenerator,
  options: { stepSeconds: number; closedSeconds: number; concurrency: number; p99LimitMs: number; deadlineMs: number },
  log: (line: string) => void,
): Promise<Capacity> {
  const closed: Sample[] = [];
  await generator.closedLoop(options.concurrency, options.closedSeconds, closed);
  const closedSummary = summarise(closed, options.deadlineMs);
  const throughput = closedSummary.ok / options.closedSeconds;
  log(`closed loop, ${options.concurrency} outstanding for ${options.closedSeconds} s: ${throughput.toFixed(1)} ok/s`);
  if (closedSummary.ok === 0)
    throw new Error(
      `The closed-loop probe got no 200 (${JSON.stringify(closedSummary)}); the service does not answer.`,
    );

  const steps: ProbeStep[] = [];
  const step = async (factor: number): Promise<ProbeStep> => {
    const rate = Math.max(0.5, Math.round(throughput * factor * 10) / 10);
    const samples: Sample[] = [];
    await generator.openLoop(rate, options.stepSeconds, performance.now() + 20, samples);
    await generator.drain();
    const summary = summarise(samples, options.deadlineMs);
    const passed = summary.ok === summary.total && (summary.okP99 ?? Infinity) <= options.p99LimitMs;
    log(
      `open loop ${rate} rps for ${options.stepSeconds} s: ${summary.ok}/${summary.total} ok, p99 ${summary.okP99?.toFixed(0) ?? '–'} ms: ${passed ? 'passed' : 'failed'}`,
    );
    const result = { rate, summary, passed };
    steps.push(result);
    return result;
  };

  let best: number | undefined;
  for (const factor of UP) {
    const result = await step(factor);
    if (!result.passed) break;
    best = result.rate;
  }
  if (best === undefined)
    for (const factor of DOWN) {
      const result = await step(factor);
      if (result.passed) {
        best = result.rate;
        break;
      }
    }
  if (best === undefined)
    throw new Error('No probe rate kept p99 under the limit without refusals or errors; pass --rate to force one.');
  return {
    closedLoop: {
      concurrency: options.concurrency,
      seconds: options.closedSeconds,
      throughput,
      summary: closedSummary,
    },
    steps,
    stepSeconds: options.stepSeconds,
    rate: best,
  };
}

/** The probe's closed loop and steps, and R; or that R was given (`capacity` undefined). */
export function printCapacity(capacity: Capacity | undefined, sustainable: number) {
  if (!capacity) {
    console.log(`Capacity: R = ${rate(sustainable)} rps, given with --rate (no probe).\n`);
    return;
  }
  const closed = capacity.closedLoop;
  console.log(
    `Capacity probe: closed loop with ${closed.concurrency} requests outstanding for ${closed.seconds} s answered ` +
      `${closed.throughput.toFixed(1)} pages/s (p50 ${duration(closed.summary.okP50)}, p99 ${duration(closed.summary.okP99)}); ` +
      `then open-loop steps of ${capacity.stepSeconds} s, ` +
      `passing while every request gets 200 and accepted p99 stays ≤ 1 s:\n`,
  );
  printTable(
    ['rate', 'requests', '200', 'refused', 'timeout/error/other', 'p50', 'p99', 'max', 'verdict'],
    capacity.steps.map(({ rate: stepRate, summary, passed }) => [
      `${rate(stepRate)} rps`,
      String(summary.total),
      String(summary.ok),
      String(summary.tooMany + summary.overloaded),
      String(summary.timeout + summary.error + summary.other),
      duration(summary.okP50),
      duration(summary.okP99),
      duration(summary.anyMax),
      passed ? 'passed' : 'failed',
    ]),
  );
  console.log(`\nR = ${rate(sustainable)} rps (the fastest step that passed).\n`);
}
