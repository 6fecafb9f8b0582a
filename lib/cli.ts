import { shutdownTracing } from './instrumentation';

/** A failure as one line for the operator: its message, never `undefined` or a bare object. */
export function describeFailure(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (error === undefined || error === null || error === '') return 'it failed without saying why (no error was given)';
  return typeof error === 'string' ? error : (JSON.stringify(error) ?? String(error));
}

const EXIT_CODES: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Runs a command-line entry point: prints a failure's message (never a stack for expected errors)
 * and exits with a status, so a lingering timer in a library cannot keep a finished script alive.
 * SIGINT/SIGTERM end it with 130/143 through `process.exit`, so `exit` hooks still run (the embedded
 * PostgreSQL's stops the database).
 */
export function runMain(main: () => Promise<void>): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(EXIT_CODES[signal]));
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(describeFailure(error));
      process.exit(1);
    },
  );
}

/**
 * Runs a long-lived server entry point: `start` resolves to a stop function, which SIGTERM or SIGINT
 * calls once (drain, then exit 0; exit 1 if draining fails); a second signal exits at once (130/143). A
 * signal that arrives while it is still starting is served as soon as it is up. A start-up failure exits 1
 * with its message.
 */
export function runServer(start: () => Promise<() => Promise<void>>): void {
  let stop: (() => Promise<void>) | undefined;
  let signalled = false;
  const drain = (stopping: () => Promise<void>) =>
    stopping()
      // Spans still buffered are sent whether draining worked or not.
      .finally(() => shutdownTracing().catch(() => undefined))
      .then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(`Stopping failed: ${describeFailure(error)}`);
          process.exit(1);
        },
      );
  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
    // A second signal while draining (or still starting) means now: exit, and `exit` hooks (the embedded
    // PostgreSQL's) still run.
    if (signalled) process.exit(EXIT_CODES[signal]);
    signalled = true;
    if (stop) void drain(stop);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  start().then(
    (started) => {
      stop = started;
      if (signalled) void drain(started);
    },
    (error: unknown) => {
      console.error(`Start-up failed: ${describeFailure(error)}`);
      void shutdownTracing()
        .catch(() => undefined)
        .finally(() => process.exit(1));
    },
  );
}
