/** A rank's backend in words: one wording for the dashboard and the CLI. */
import type { TaskBackendView } from './api-types.ts';

/**
 * "local: pid 4242, host gpu-box": the backend's kind and its details as it gives them, in its order; undefined for a
 * rank not launched yet (no backend).
 */
export function formatRankBackend(backend: TaskBackendView | null): string | undefined {
  if (backend === null) return undefined;
  const details = Object.entries(backend.details).map(([key, value]) => `${key} ${value}`);
  return details.length === 0 ? backend.kind : `${backend.kind}: ${details.join(', ')}`;
}
