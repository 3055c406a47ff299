// Implemented in the job-spec work item: parseJobSpecYaml, parseJobSpecObject, serializeJobSpec, jobSpecJsonSchema.
export {};
