/**
 * The rows of `GET /v1/export/history` (a trace CSV: job_id,submit_time_s,duration_s,num_gpus,gpu_type,user,queue,
 * status) as objects, for scripts that want JSON (`tutti export history --json`) rather than the CSV `tutti sim`
 * replays.
 */

export interface HistoryTraceRow {
  job_id: string;
  /** Seconds from the first exported job's submission. */
  submit_time_s: number;
  /** Run time of the job's last attempt, seconds. */
  duration_s: number;
  /** GPUs per node × nodes (a fraction for a job that shares one GPU). */
  num_gpus: number;
  /** '' for any type. */
  gpu_type: string;
  /** '' when the submitter did not say. */
  user: string;
  /** The job's team. */
  queue: string;
  status: string;
}

const NUMERIC_COLUMNS = new Set(['submit_time_s', 'duration_s', 'num_gpus']);

/** Parses the export's CSV (quoted fields may hold commas, quotes and newlines). Columns are found by name. */
export function parseHistoryTrace(csv: string): HistoryTraceRow[] {
  const [header, ...records] = parseCsv(csv);
  if (!header) return [];
  return records.map((fields) => {
    const row: Record<string, string | number> = {};
    header.forEach((column, i) => {
      const value = fields[i] ?? '';
      row[column] = NUMERIC_COLUMNS.has(column) ? Number(value) : value;
    });
    return row as unknown as HistoryTraceRow;
  });
}

function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      fields.push(field);
      field = '';
    } else if (c === '\n') {
      fields.push(field);
      records.push(fields);
      fields = [];
      field = '';
    } else if (c !== '\r') field += c;
  }
  if (field !== '' || fields.length > 0) records.push([...fields, field]);
  return records;
}
