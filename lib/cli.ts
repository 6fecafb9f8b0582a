import { shutdownTracing } from './instrumentation';
/**
 * Runs a command-line entry point: prints a failure's message (never a stack for expected errors)
 * and exits with a status, so a lingering timer in a library cannot keep a finished script alive.
 */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    },
  );
}

/**
 * Runs a long-lived server entry point: `start` resolves to a stop function, which SIGTERM or SIGINT
 * calls once (drain, then exit 0; exit 1 if draining fails). A start-up failure exits 1 with its message.
 */
export function runServer(start: () => Promise<() => Promise<void>>): void {
  start().then(
    (stop) => {
      let stopping = false;
      const shutdown = () => {
        if (stopping) return;
        stopping = true;
        // Spans still buffered are sent whether draining worked or not.
        stop()
          .finally(() => shutdownTracing().catch(() => undefined))
          .then(
          () => process.exit(0),
          (error: unknown) => {
            console.error(error);
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    },
    (error: unknown) => {
      console.error(error instanceof Error ? `Start-up failed: ${error.message}` : error);
      void shutdownTracing()
        .catch(() => undefined)
        .finally(() => process.exit(1));
    },
  );
}
