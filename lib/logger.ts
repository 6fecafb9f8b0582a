import pino, { type Logger } from 'pino';

export type { Logger };

/** One JSON logger per process; `name` tells the gateway and each subgraph apart. */
export function createLogger(name: string, level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { service: name }, redact: ['req.headers.authorization', 'req.headers.cookie'] });
}
