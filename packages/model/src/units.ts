// Implemented in the job-spec work item: parseMemorySize, parseDuration, formatDuration, formatMemory.
export {};
