/** The cluster at a glance: GPUs by type, jobs by team, queue and allocation over time, the newest events. */
import { useContext, useEffect, useState } from 'react';
import type { EventView } from '@tutti/client';
import { client } from '../api.ts';
import { AsyncView, Card, Link } from '../components/common.tsx';
import { Chart } from '../components/Chart.tsx';
import { LiveEventsContext, useAsync, useInterval, useLiveEvent, useNow, useThrottled } from '../hooks.ts';
import { formatRelative } from '../lib/format.ts';
import { summarizeGpusByType } from '../lib/gpus.ts';
import { jobHref } from '../lib/routes.ts';
import { clusterSeries } from '../lib/series.ts';

/** The chart of the queue and GPU allocation covers this many minutes, ending now. */
const HISTORY_MINUTES = 60;

export function OverviewPage() {
  const [nodes, reloadNodes] = useAsync(() => client.listNodes(), []);
  const [teams, reloadTeams] = useAsync(() => client.listTeams(), []);
  const [history, reloadHistory] = useAsync(() => client.getClusterHistory({ minutes: HISTORY_MINUTES }), []);
  const now = useNow(5000);
  const reload = useThrottled(() => {
    reloadNodes();
    reloadTeams();
  }, 500);
  useLiveEvent(reload);
  useInterval(reloadHistory, 5000);

  return (
    <div className="page overview">
      <h1>Overview</h1>
      <div className="grid-2">
        <Card title="GPUs by type">
          <AsyncView state={nodes} what="nodes" onRetry={reloadNodes}>
            {({ nodes: list }) => {
              const rows = summarizeGpusByType(list);
              return rows.length === 0 ? (
                <p className="muted">No GPUs: this server found none (start it with --fake-gpus to try tutti without GPUs).</p>
              ) : (
                <table className="table" data-testid="gpus-by-type">
                  <thead>
                    <tr>
                      <th scope="col">type</th>
                      <th scope="col" className="num">total</th>
                      <th scope="col" className="num">allocated</th>
                      <th scope="col" className="num">free</th>
                      <th scope="col" className="num">unhealthy</th>
                    </tr>
                  </thead>
                  <tbody>
                    {rows.map((row) => (
                      <tr key={row.type} data-gpu-type={row.type}>
                        <th scope="row">{row.type}</th>
                        <td className="num" data-field="total">{row.total}</td>
                        <td className="num" data-field="allocated">{row.allocated}</td>
                        <td className="num" data-field="free">{row.free}</td>
                        <td className={`num ${row.unhealthy > 0 ? 'warn' : ''}`} data-field="unhealthy">{row.unhealthy}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              );
            }}
          </AsyncView>
        </Card>
        <Card title="Jobs by team">
          <AsyncView state={teams} what="teams" onRetry={reloadTeams}>
            {({ teams: list }) =>
              list.length === 0 ? (
                <p className="muted">No team has running or pending jobs.</p>
              ) : (
                <table className="table" data-testid="jobs-by-team">
                  <thead>
                    <tr>
                      <th scope="col">team</th>
                      <th scope="col" className="num">running</th>
                      <th scope="col" className="num">pending</th>
                    </tr>
                  </thead>
                  <tbody>
                    {list.map((team) => (
                      <tr key={team.name} data-team={team.name}>
                        <th scope="row">
                          <Link href={`/jobs?team=${team.name}`}>{team.name}</Link>
                        </th>
                        <td className="num" data-field="running">{team.running_jobs}</td>
                        <td className="num" data-field="pending">{team.pending_jobs}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )
            }
          </AsyncView>
        </Card>
      </div>
      <Card title="Queue and GPU allocation, last hour">
        <AsyncView state={history} what="cluster history" onRetry={reloadHistory}>
          {({ samples, interval_s }) => (
            <>
              <Chart title="pending jobs, running jobs and GPUs allocated" data={clusterSeries(samples, { nowS: now / 1000, windowS: HISTORY_MINUTES * 60 })} />
              <p className="muted small">Sampled every {interval_s} s by the server (kept in its memory since it started).</p>
            </>
          )}
        </AsyncView>
      </Card>
      <RecentEvents />
    </div>
  );
}

function RecentEvents() {
  const live = useContext(LiveEventsContext);
  const [events, setEvents] = useState<EventView[]>(() => live?.recent ?? []);
  const now = useNow(5000);
  useEffect(() => setEvents(live?.recent ?? []), [live]);
  useLiveEvent(() => setEvents(live?.recent ?? []));
  return (
    <Card title="Recent events">
      {events.length === 0 ? (
        <p className="muted">No events yet. Submit a job to see it here.</p>
      ) : (
        <ol className="events" aria-live="polite" data-testid="recent-events">
          {events.slice(0, 30).map((event) => (
            <li key={event.seq}>
              <time dateTime={event.at} title={event.at}>
                {formatRelative(event.at, now)}
              </time>{' '}
              <Link href={jobHref(event.job_id)}>job {event.job_id}</Link> <span className={`event-type event-${event.type}`}>{event.type}</span> {event.message}
            </li>
          ))}
        </ol>
      )}
    </Card>
  );
}
