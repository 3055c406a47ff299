/**
 * A job's GPU gauges (`GET /v1/jobs/:id/gpu-metrics`). A server without that route (an older one) answers 404
 * `not_found`: that is reported as "not available" rather than as an error, so a page can say so and go on.
 */
import type { GpuMetricSampleView } from './api-types.ts';
import { ApiError } from './client.ts';
import type { TuttiClient } from './client.ts';

export type JobGpuMetrics = { available: true; samples: GpuMetricSampleView[] } | { available: false };

export async function getJobGpuMetrics(client: TuttiClient, jobId: string): Promise<JobGpuMetrics> {
  try {
    const { samples } = await client.getJson<{ samples: GpuMetricSampleView[] }>(`/v1/jobs/${encodeURIComponent(jobId)}/gpu-metrics`);
    return { available: true, samples };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && error.code === 'not_found') return { available: false };
    throw error;
  }
}
