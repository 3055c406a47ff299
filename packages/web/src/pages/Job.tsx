/**
 * One job: what it is (spec), where it stands (status, pending reason, ranks, attempts, history), what it does
 * (logs per rank, progress and GPU charts), and a cancel button. Everything refreshes as the job's events arrive.
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import type { ReactNode } from 'react';
import { ApiError, describeEstimatedStart, formatGpuCount, formatRankBackend, getJobGpuMetrics } from '@tutti/client';
import type { JobGpuMetrics, JobView, ProgressView, TaskView } from '@tutti/client';
import { client } from '../api.ts';
import { AsyncView, Card, describeError, ErrorBox, Loading, StatusBadge } from '../components/common.tsx';
import { Chart } from '../components/Chart.tsx';
import { useAsync, useInterval, useLiveEvent, useNow, useThrottled } from '../hooks.ts';
import { formatTime, isTerminalStatus, jobDuration } from '../lib/format.ts';
import { LogBuffer, searchLines } from '../lib/logs.ts';
import { gpuSeries, progressSeries } from '../lib/series.ts';
import { toYaml } from '../lib/yaml.ts';
import type { JsonValue } from '../lib/yaml.ts';

export function JobPage({ id }: { id: string }) {
  const [job, reload] = useAsync(() => client.getJob(id), [id]);
  const reloadSoon = useThrottled(reload, 300);
  useLiveEvent((event) => event.job_id === id && reloadSoon());
  // A pending job's reason and queue position change without events: look again now and then.
  const waiting = job.status === 'ready' && job.data.status === 'pending';
  useInterval(reload, 3000, waiting);

  const marked = useRef(false);
  useEffect(() => {
    if (job.status === 'ready' && !marked.current) {
      marked.current = true;
      performance.mark('tutti:job-page-rendered');
    }
  }, [job]);

  if (job.status === 'error' && job.error instanceof ApiError && job.error.status === 404) {
    return (
      <div className="page">
        <h1>Job {id}</h1>
        <p role="alert">There is no job {id} on this server.</p>
      </div>
    );
  }
  return (
    <div className="page job">
      <AsyncView state={job} what={`job ${id}`} onRetry={reload}>
        {(data) => <JobDetail job={data} onChanged={reload} />}
      </AsyncView>
    </div>
  );
}

function JobDetail({ job, onChanged }: { job: JobView; onChanged: () => void }) {
  const now = useNow(1000);
  const terminal = isTerminalStatus(job.status);
  return (
    <>
      <header className="job-header">
        <h1>
          {job.name} <span className="muted">#{job.id}</span> <StatusBadge status={job.status} />
        </h1>
        <p className="muted">
          team <strong>{job.team}</strong>{job.user ? <> · submitted by <strong>{job.user}</strong></> : null} · priority {job.priority} · <span data-testid="job-gpus">{formatGpuCount(job.gpus_per_node)}</span> × {job.num_nodes} node{job.num_nodes === 1 ? '' : 's'} · {jobDuration(job, now)}
        </p>
        {!terminal && <CancelButton job={job} onCancelled={onChanged} />}
      </header>

      {job.status === 'pending' && <PendingReason job={job} now={now} />}

      <div className="grid-2">
        <Card title="Status">
          <dl className="facts">
            <dt>submitted</dt>
            <dd>{formatTime(job.created_at)}</dd>
            <dt>started</dt>
            <dd>{formatTime(job.started_at)}</dd>
            <dt>finished</dt>
            <dd>{formatTime(job.finished_at)}</dd>
            <dt>exit code</dt>
            <dd>{job.exit_code ?? '–'}</dd>
            <dt>end reason</dt>
            <dd data-testid="end-reason">{job.end_reason ?? '–'}</dd>
            <dt>attempt</dt>
            <dd>
              {job.attempt} (restarts {job.restarts} of {job.max_restarts})
            </dd>
            {job.usage && (
              <>
                <dt>GPU hours</dt>
                <dd>
                  {job.usage.gpu_hours.toFixed(3)}
                  {job.usage.energy_wh !== null ? ` · ${job.usage.energy_wh.toFixed(1)} Wh` : ''}
                </dd>
              </>
            )}
            <dt>last checkpoint</dt>
            <dd className="mono">{job.last_checkpoint ?? '–'}</dd>
            {job.cancel_requested_at && (
              <>
                <dt>cancel requested</dt>
                <dd>{formatTime(job.cancel_requested_at)}</dd>
              </>
            )}
          </dl>
        </Card>
        <Card title="Spec">
          <pre className="code spec-yaml" tabIndex={0} aria-label="job spec as YAML">
            {toYaml(job.spec as JsonValue)}
          </pre>
        </Card>
      </div>

      <Card title="Ranks">
        <RankTable tasks={job.tasks ?? []} testId="ranks" />
      </Card>

      {(job.attempts?.length ?? 0) > 0 && (
        <Card title="Attempts">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">attempt</th>
                <th scope="col">started</th>
                <th scope="col">finished</th>
                <th scope="col" className="num">exit code</th>
                <th scope="col">reason</th>
                <th scope="col">ranks</th>
              </tr>
            </thead>
            <tbody>
              {job.attempts!.map((attempt) => (
                <tr key={attempt.attempt}>
                  <td>{attempt.attempt}</td>
                  <td>{formatTime(attempt.started_at)}</td>
                  <td>{attempt.finished_at ? formatTime(attempt.finished_at) : 'running'}</td>
                  <td className="num">{attempt.exit_code ?? '–'}</td>
                  <td>{attempt.reason ?? ''}</td>
                  <td>
                    <details>
                      <summary>{attempt.tasks.length} ranks</summary>
                      <RankTable tasks={attempt.tasks} />
                    </details>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Card>
      )}

      <Logs job={job} />
      <ProgressCharts job={job} />
      <GpuCharts job={job} />
      <History job={job} />
    </>
  );
}

function PendingReason({ job, now }: { job: JobView; now: number }) {
  const diagnosis = job.pending_diagnosis;
  return (
    <section className="pending-reason" aria-labelledby="pending-title" data-testid="pending-reason">
      <h2 id="pending-title">Why it waits</h2>
      <p className="reason-text">{job.pending_reason}</p>
      {diagnosis && (
        <dl className="facts">
          <dt>reason code</dt>
          <dd className="mono">
            {diagnosis.code} <span className="muted">({diagnosis.plugin})</span>
          </dd>
          {diagnosis.position && (
            <>
              <dt>queue position</dt>
              <dd>
                {diagnosis.position.index} of {diagnosis.position.of} in team {diagnosis.position.team}
              </dd>
            </>
          )}
          <dt>estimated start</dt>
          <dd data-testid="estimated-start">
            {diagnosis.estimated_start_at
              ? `${describeEstimatedStart(diagnosis, now) ?? ''} (around ${formatTime(diagnosis.estimated_start_at).slice(0, -3)})`
              : 'not estimated: no reservation yet, or the jobs it waits for have no max_duration to go by'}
          </dd>
        </dl>
      )}
      {job.not_before && <p>Not started before {formatTime(job.not_before)} (restart backoff).</p>}
    </section>
  );
}

function CancelButton({ job, onCancelled }: { job: JobView; onCancelled: () => void }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | undefined>();
  if (job.cancel_requested_at) return <p className="muted">Stopping: cancel requested at {formatTime(job.cancel_requested_at)}.</p>;
  const cancel = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await client.cancelJob(job.id);
      onCancelled();
    } catch (e) {
      setError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      setBusy(false);
      setConfirming(false);
    }
  };
  return (
    <div className="cancel">
      {!confirming ? (
        <button type="button" className="danger" onClick={() => setConfirming(true)}>
          Cancel job…
        </button>
      ) : (
        <span role="group" aria-label="confirm cancel">
          {job.status === 'running' ? 'Stop every rank (SIGTERM, then SIGKILL after the grace period)? ' : 'Remove it from the queue? '}
          <button type="button" className="danger" disabled={busy} onClick={() => void cancel()} autoFocus>
            Yes, cancel job {job.id}
          </button>{' '}
          <button type="button" onClick={() => setConfirming(false)}>
            Keep it
          </button>
        </span>
      )}
      {error && <p role="alert">Cancel failed: {describeError(error)}</p>}
    </div>
  );
}

function RankTable({ tasks, testId }: { tasks: readonly TaskView[]; testId?: string }) {
  if (tasks.length === 0) return <p className="muted">No ranks yet: they are created when the job is placed.</p>;
  return (
    <table className="table" data-testid={testId}>
      <thead>
        <tr>
          <th scope="col" className="num">rank</th>
          <th scope="col">node</th>
          <th scope="col">GPUs</th>
          <th scope="col">backend</th>
          <th scope="col">status</th>
          <th scope="col" className="num">exit code</th>
        </tr>
      </thead>
      <tbody>
        {tasks.map((task) => (
          <tr key={task.rank}>
            <td className="num">{task.rank}</td>
            <td>{task.node}</td>
            <td className="mono">{task.gpus.join(', ')}</td>
            <td className="mono">{formatRankBackend(task.backend) ?? '–'}</td>
            <td>
              <StatusBadge status={task.status} />
            </td>
            <td className="num">{task.exit_code ?? '–'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const SHOWN_LINES = 5000;

function Logs({ job }: { job: JobView }) {
  const ranks = Math.max(1, job.gpus_per_node) * job.num_nodes;
  const [rank, setRank] = useState(0);
  const [attempt, setAttempt] = useState<number | undefined>(undefined);
  const [follow, setFollow] = useState(true);
  const [query, setQuery] = useState('');
  const [version, setVersion] = useState(0);
  const [state, setState] = useState<'idle' | 'streaming' | 'ended' | Error>('idle');
  const buffer = useRef(new LogBuffer());
  const pre = useRef<HTMLPreElement>(null);
  const terminal = isTerminalStatus(job.status);
  const pastAttempt = attempt !== undefined && attempt !== job.attempt;

  useEffect(() => {
    buffer.current = new LogBuffer();
    setVersion((v) => v + 1);
    const abort = new AbortController();
    let frame = 0;
    const redraw = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVersion((v) => v + 1);
      });
    };
    setState('streaming');
    void (async () => {
      try {
        const options = { rank, follow: follow && !terminal && !pastAttempt, signal: abort.signal, ...(pastAttempt ? { attempt } : {}) };
        for await (const chunk of client.logs(job.id, options)) {
          buffer.current.append(chunk);
          redraw();
        }
        setState('ended');
      } catch (error) {
        if (!abort.signal.aborted) setState(error instanceof Error ? error : new Error(String(error)));
      }
    })();
    return () => {
      abort.abort();
      cancelAnimationFrame(frame);
    };
    // A new attempt has a new log; an ended job's log is read once more in full.
  }, [job.id, rank, attempt, follow, job.attempt, terminal, pastAttempt]);

  const lines = useMemo(() => buffer.current.lines(), [version]);
  const shown = useMemo(() => searchLines(lines, query), [lines, query]);
  const visible = shown.slice(-SHOWN_LINES);

  useEffect(() => {
    const element = pre.current;
    if (element && follow && query === '') element.scrollTop = element.scrollHeight;
  }, [visible, follow, query]);

  const attempts = job.attempts?.map((a) => a.attempt) ?? [];
  return (
    <Card title="Logs">
      <div className="toolbar" role="toolbar" aria-label="log controls">
        <label>
          Rank
          <select aria-label="Rank" value={rank} onChange={(e) => setRank(Number(e.target.value))}>
            {Array.from({ length: ranks }, (_, r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        {attempts.length > 1 && (
          <label>
            Attempt
            <select aria-label="Attempt" value={attempt ?? job.attempt} onChange={(e) => setAttempt(Number(e.target.value))}>
              {attempts.map((a) => (
                <option key={a} value={a}>
                  {a}
                  {a === job.attempt ? ' (latest)' : ''}
                </option>
              ))}
            </select>
          </label>
        )}
        <label className="inline">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow
        </label>
        <label>
          Search
          <input type="search" aria-label="Search" value={query} onChange={(e) => setQuery(e.target.value)} placeholder="text in the log" spellCheck={false} />
        </label>
        <span className="muted small" aria-live="polite">
          {query ? `${shown.length} of ${lines.length} lines match` : `${lines.length} lines`}
          {state === 'streaming' && follow && !terminal ? ' · following' : ''}
          {buffer.current.dropped > 0 ? ` · ${buffer.current.dropped} older lines dropped` : ''}
        </span>
      </div>
      {state instanceof Error && <ErrorBox error={state} />}
      <pre className="code log" ref={pre} tabIndex={0} aria-label={`log of rank ${rank}`} data-testid="log">
        {visible.length === 0 ? (
          <span className="muted">{job.status === 'pending' ? 'The job has not started: its log appears here when it does.' : query ? 'No line matches.' : 'Nothing printed yet.'}</span>
        ) : (
          visible.map((line) => (
            <div key={line.n} className="log-line">
              <span className="line-no" aria-hidden="true">
                {line.n}
              </span>
              <span className="log-text">
                <Highlighted text={line.text} query={query} />
              </span>
            </div>
          ))
        )}
      </pre>
    </Card>
  );
}

function Highlighted({ text, query }: { text: string; query: string }) {
  const needle = query.trim().toLowerCase();
  if (!needle) return <>{text}</>;
  const parts: ReactNode[] = [];
  const lower = text.toLowerCase();
  let from = 0;
  for (let at = lower.indexOf(needle); at >= 0; at = lower.indexOf(needle, from)) {
    parts.push(text.slice(from, at), <mark key={at}>{text.slice(at, at + needle.length)}</mark>);
    from = at + needle.length;
  }
  parts.push(text.slice(from));
  return <>{parts}</>;
}

function ProgressCharts({ job }: { job: JobView }) {
  const [records, setRecords] = useState<ProgressView[]>([]);
  const [error, setError] = useState<Error | undefined>();
  const lastSeq = useRef<number | undefined>(undefined);
  const running = job.status === 'running';

  const poll = async () => {
    try {
      const { records: fresh } = await client.getJobMetrics(job.id, lastSeq.current === undefined ? { last: 5000 } : { after: lastSeq.current });
      if (fresh.length > 0) {
        lastSeq.current = fresh[fresh.length - 1]!.seq;
        setRecords((old) => [...old, ...fresh].slice(-20_000));
      }
      setError(undefined);
    } catch (e) {
      setError(e instanceof Error ? e : new Error(String(e)));
    }
  };
  useEffect(() => {
    lastSeq.current = undefined;
    setRecords([]);
    void poll();
  }, [job.id]);
  // Progress records produce no events: read what is new every 2 s while the job runs.
  useInterval(() => void poll(), 2000, running);
  useEffect(() => {
    if (!running) void poll();
  }, [job.status]);

  const { loss, throughput } = useMemo(() => progressSeries(records), [records]);
  return (
    <Card title="Progress">
      {error && <ErrorBox error={error} />}
      {records.length === 0 ? (
        <p className="muted">No progress records. A rank reports them by printing lines like {'{"tutti": {"step": 10, "loss": 2.3}}'}.</p>
      ) : (
        <div className="grid-2">
          <Chart title="loss" data={loss} />
          {throughput.series.length > 0 ? <Chart title="throughput" data={throughput} /> : <p className="muted">No throughput gauge reported (a value named like samples_per_s).</p>}
        </div>
      )}
    </Card>
  );
}

function GpuCharts({ job }: { job: JobView }) {
  const [metrics, setMetrics] = useState<JobGpuMetrics | undefined>();
  const [error, setError] = useState<Error | undefined>();
  const poll = async () => {
    try {
      setMetrics(await getJobGpuMetrics(client, job.id));
      setError(undefined);
    } catch (e) {
      setError(e instanceof Error ? e : new Error(String(e)));
    }
  };
  useEffect(() => {
    setMetrics(undefined);
    void poll();
  }, [job.id, job.status]);
  useInterval(() => void poll(), 5000, job.status === 'running' && metrics?.available !== false);

  const series = useMemo(() => (metrics?.available ? gpuSeries(metrics.samples) : undefined), [metrics]);
  return (
    <Card title="GPU metrics">
      {error && <ErrorBox error={error} />}
      {metrics === undefined && !error && <Loading what="GPU metrics" />}
      {metrics?.available === false && <p className="muted" data-testid="no-gpu-metrics">no GPU metrics (fake GPUs)</p>}
      {series && metrics?.available && metrics.samples.length === 0 && (
        <p className="muted" data-testid="no-gpu-metrics">
          no GPU metrics (fake GPUs, or none sampled yet)
        </p>
      )}
      {series && metrics?.available && metrics.samples.length > 0 && (
        <div className="grid-2">
          <Chart title="GPU utilization (%)" data={series.utilization} />
          <Chart title="GPU memory used (%)" data={series.memory} />
        </div>
      )}
    </Card>
  );
}

function History({ job }: { job: JobView }) {
  const [events, reload] = useAsync(() => client.listJobEvents(job.id), [job.id]);
  const reloadSoon = useThrottled(reload, 300);
  useLiveEvent((event) => event.job_id === job.id && reloadSoon());
  return (
    <Card title="Status history">
      <AsyncView state={events} what="history" onRetry={reload}>
        {({ events: list }) => (
          <ol className="events" data-testid="history">
            {list.map((event) => (
              <li key={event.seq}>
                <time dateTime={event.at}>{formatTime(event.at)}</time> <span className={`event-type event-${event.type}`}>{event.type}</span> {event.message}
              </li>
            ))}
          </ol>
        )}
      </AsyncView>
    </Card>
  );
}
