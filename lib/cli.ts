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
