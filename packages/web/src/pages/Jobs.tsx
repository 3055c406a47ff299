/**
 * Jobs, a page at a time from the server (keyset pages: as fast at page 2,000 as at page 1), filtered by status,
 * team and name, sorted by a column; rows change live as events arrive.
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import type { JobSortKey, JobSummaryView } from '@tutti/client';
import { totalJobGpus } from '@tutti/client';
import { client } from '../api.ts';
import { AsyncView, Card, Link, StatusBadge } from '../components/common.tsx';
import { navigate, useAsync, useLiveEvent, useNow, useThrottled } from '../hooks.ts';
import { formatTime, jobDuration } from '../lib/format.ts';
import { eventTouchesPage, filterFromSearch, filterToSearch, JOB_STATUS_OPTIONS, normalizeNamePart, toggleSort, toListQuery, USER_NAME } from '../lib/jobs-query.ts';
import type { JobsFilter } from '../lib/jobs-query.ts';
import { jobHref } from '../lib/routes.ts';

const PAGE_SIZES = [25, 50, 100, 200];

export function JobsPage({ search }: { search: string }) {
  const filter = useMemo(() => filterFromSearch(search), [search]);
  const [pageSize, setPageSize] = useState(50);
  // The cursors of the pages before this one (keyset pages have no numbers: "previous" pops one).
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  const filterKey = filterToSearch(filter);
  useEffect(() => setCursors([undefined]), [filterKey, pageSize]);

  const [page, reload] = useAsync(() => client.listJobs(toListQuery(filter, cursor, pageSize)), [filterKey, cursor, pageSize]);
  const visibleIds = useMemo(() => new Set(page.status === 'ready' ? page.data.jobs.map((j) => j.id) : []), [page]);
  const reloadSoon = useThrottled(reload, 400);
  useLiveEvent((event) => {
    if (eventTouchesPage(event, visibleIds, cursors.length === 1)) reloadSoon();
  });

  const marked = useRef(false);
  useEffect(() => {
    if (page.status === 'ready' && !marked.current) {
      marked.current = true;
      performance.mark('tutti:jobs-page-rendered');
    }
  }, [page]);

  const setFilter = (next: JobsFilter) => navigate(`/jobs${filterToSearch(next)}`, { replace: true });

  return (
    <div className="page jobs">
      <h1>Jobs</h1>
      <Filters filter={filter} onChange={setFilter} />
      <Card
        title="Job list"
        actions={
          <label className="inline">
            per page{' '}
            <select value={pageSize} onChange={(e) => setPageSize(Number(e.target.value))} aria-label="jobs per page">
              {PAGE_SIZES.map((n) => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
            </select>
          </label>
        }
      >
        <AsyncView state={page} what="jobs" onRetry={reload}>
          {({ jobs, next_cursor }) => (
            <>
              <JobTable jobs={jobs} filter={filter} onSort={(key) => setFilter(toggleSort(filter, key))} />
              <nav className="pager" aria-label="pages of jobs">
                <button type="button" disabled={cursors.length === 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
                  ← Previous
                </button>
                <span aria-live="polite">
                  page {cursors.length}
                  {jobs.length > 0 ? ` · ${jobs.length} job${jobs.length === 1 ? '' : 's'}` : ''}
                </span>
                <button type="button" disabled={!next_cursor} onClick={() => next_cursor && setCursors((c) => [...c, next_cursor])}>
                  Next →
                </button>
              </nav>
            </>
          )}
        </AsyncView>
      </Card>
    </div>
  );
}

function Filters({ filter, onChange }: { filter: JobsFilter; onChange: (filter: JobsFilter) => void }) {
  const [team, setTeam] = useState(filter.team ?? '');
  const [name, setName] = useState(filter.name ?? '');
  const [user, setUser] = useState(filter.user ?? '');
  useEffect(() => setTeam(filter.team ?? ''), [filter.team]);
  useEffect(() => setUser(filter.user ?? ''), [filter.user]);
  const userValid = user === '' || USER_NAME.test(user);
  useEffect(() => setName(filter.name ?? ''), [filter.name]);
  const teamValid = team === '' || /^[a-z0-9-]{1,63}$/.test(team);
  const nameValid = name.trim() === '' || normalizeNamePart(name) !== undefined;

  // Typing settles for a moment before the list reloads.
  useEffect(() => {
    const id = setTimeout(() => {
      const nextTeam = team === '' ? undefined : teamValid ? team : filter.team;
      const nextName = name.trim() === '' ? undefined : (normalizeNamePart(name) ?? filter.name);
      const nextUser = user === '' ? undefined : userValid ? user : filter.user;
      if (nextTeam !== filter.team || nextName !== filter.name || nextUser !== filter.user) {
        const { team: _t, name: _n, user: _u, ...rest } = filter;
        onChange({ ...rest, ...(nextTeam ? { team: nextTeam } : {}), ...(nextUser ? { user: nextUser } : {}), ...(nextName ? { name: nextName } : {}) });
      }
    }, 300);
    return () => clearTimeout(id);
  }, [team, name, user]);

  return (
    <form className="filters" role="search" aria-label="filter jobs" onSubmit={(e) => e.preventDefault()}>
      <label>
        Status
        <select
          aria-label="Status"
          value={filter.status ?? ''}
          onChange={(e) => {
            const { status: _s, ...rest } = filter;
            onChange(e.target.value ? { ...rest, status: e.target.value as JobsFilter['status'] & string } : rest);
          }}
        >
          <option value="">any</option>
          {JOB_STATUS_OPTIONS.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        Team
        <input type="search" aria-label="Team" value={team} onChange={(e) => setTeam(e.target.value)} placeholder="any team" aria-invalid={!teamValid} spellCheck={false} />
      </label>
      <label>
        User
        <input type="search" aria-label="User" value={user} onChange={(e) => setUser(e.target.value)} placeholder="any user" aria-invalid={!userValid} spellCheck={false} />
      </label>
      <label>
        Name contains
        <input type="search" aria-label="Name contains" value={name} onChange={(e) => setName(e.target.value)} placeholder="part of a name" aria-invalid={!nameValid} spellCheck={false} />
      </label>
      {(!teamValid || !nameValid || !userValid) && (
        <p className="field-hint" role="alert">
          Team names and job names are lowercase letters, digits and “-”; user names are letters, digits, “.”, “_”, “@” and “-”.
        </p>
      )}
    </form>
  );
}

const COLUMNS: { key: JobSortKey | undefined; label: string; numeric?: boolean }[] = [
  { key: 'id', label: 'id', numeric: true },
  { key: 'name', label: 'name' },
  { key: 'team', label: 'team' },
  { key: undefined, label: 'user' },
  { key: 'status', label: 'status' },
  { key: 'priority', label: 'priority', numeric: true },
  { key: undefined, label: 'GPUs', numeric: true },
  { key: undefined, label: 'submitted' },
  { key: undefined, label: 'duration' },
  { key: undefined, label: 'reason' },
];

function JobTable({ jobs, filter, onSort }: { jobs: JobSummaryView[]; filter: JobsFilter; onSort: (key: JobSortKey) => void }) {
  const now = useNow(5000);
  if (jobs.length === 0) return <p className="muted">No jobs match. Submit one on the Submit page, or change the filters.</p>;
  return (
    <table className="table jobs-table" data-testid="jobs-table">
      <thead>
        <tr>
          {COLUMNS.map((column) => {
            const sorted = column.key !== undefined && filter.sort === column.key;
            return (
              <th key={column.label} scope="col" className={column.numeric ? 'num' : undefined} aria-sort={sorted ? (filter.order === 'asc' ? 'ascending' : 'descending') : undefined}>
                {column.key ? (
                  <button type="button" className="sort" onClick={() => onSort(column.key!)} aria-label={`sort by ${column.label}`}>
                    {column.label}
                    <span aria-hidden="true">{sorted ? (filter.order === 'asc' ? ' ▲' : ' ▼') : ''}</span>
                  </button>
                ) : (
                  column.label
                )}
              </th>
            );
          })}
        </tr>
      </thead>
      <tbody>
        {jobs.map((job) => (
          <tr key={job.id} data-job-id={job.id}>
            <td className="num">
              <Link href={jobHref(job.id)}>{job.id}</Link>
            </td>
            <td>
              <Link href={jobHref(job.id)}>{job.name}</Link>
            </td>
            <td>{job.team}</td>
            <td>{job.user ?? '—'}</td>
            <td>
              <StatusBadge status={job.status} />
            </td>
            <td className="num">{job.priority}</td>
            <td className="num" data-field="gpus">{totalJobGpus(job)}</td>
            <td>
              <time dateTime={job.created_at}>{formatTime(job.created_at)}</time>
            </td>
            <td>{jobDuration(job, now)}</td>
            <td className="reason">{job.pending_reason ?? job.end_reason ?? ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
