/** The server's log lines. Tests pass a silent logger; `tutti up` prints to stderr. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string, error?: unknown): void;
}

export function createConsoleLogger(): Logger {
  const stamp = () => new Date().toISOString();
  return {
    info: (message) => console.error(`${stamp()} info  ${message}`),
    warn: (message) => console.error(`${stamp()} warn  ${message}`),
    error: (message, error) => console.error(`${stamp()} error ${message}${error ? `: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}` : ''}`),
  };
}

export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };
