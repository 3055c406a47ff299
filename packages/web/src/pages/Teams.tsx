/** Teams and queues: quota, what each uses and borrows, the order fair share would serve them in, what waits. */
import { client } from '../api.ts';
import { AsyncView, Card, Link } from '../components/common.tsx';
import { useAsync, useLiveEvent, useThrottled } from '../hooks.ts';
import { formatPerType } from '../lib/format.ts';
import { fairShareOrder, isBorrowing } from '../lib/teams.ts';

export function TeamsPage() {
  const [teams, reload] = useAsync(() => client.listTeams(), []);
  const reloadSoon = useThrottled(reload, 500);
  useLiveEvent(reloadSoon);
  return (
    <div className="page teams">
      <h1>Teams and queues</h1>
      <Card title="Teams">
        <AsyncView state={teams} what="teams" onRetry={reload}>
          {({ teams: list }) =>
            list.length === 0 ? (
              <p className="muted">No teams configured and none has jobs. Teams and quotas come from `tutti up --config`.</p>
            ) : (
              <>
                <table className="table" data-testid="teams-table">
                  <thead>
                    <tr>
                      <th scope="col" className="num">
                        order
                      </th>
                      <th scope="col">team</th>
                      <th scope="col" className="num">weight</th>
                      <th scope="col" className="num">recent use (GPU-h, decayed)</th>
                      <th scope="col" className="num">share</th>
                      <th scope="col">quota</th>
                      <th scope="col">used</th>
                      <th scope="col">borrowed</th>
                      <th scope="col">borrowing limit</th>
                      <th scope="col">lending limit</th>
                      <th scope="col" className="num">running</th>
                      <th scope="col" className="num">pending</th>
                    </tr>
                  </thead>
                  <tbody>
                    {fairShareOrder(list).map(({ team }, i) => (
                      <tr key={team.name} data-team={team.name}>
                        <td className="num">{i + 1}</td>
                        <th scope="row">{team.name}</th>
                        <td className="num">{team.weight}</td>
                        <td className="num">{team.fair_share.decayed_gpu_hours.toFixed(2)}</td>
                        <td className="num">{team.fair_share.share.toFixed(2)}</td>
                        <td>{Object.keys(team.quota).length === 0 ? 'none' : formatPerType(team.quota)}</td>
                        <td>{formatPerType(team.used)}</td>
                        <td className={isBorrowing(team) ? 'warn' : undefined}>{formatPerType(team.borrowed)}</td>
                        <td>{team.borrowing_limit ? formatPerType(team.borrowing_limit) : 'none'}</td>
                        <td>{team.lending_limit ? formatPerType(team.lending_limit) : 'none'}</td>
                        <td className="num">
                          <Link href={`/jobs?team=${team.name}&status=running`}>{team.running_jobs}</Link>
                        </td>
                        <td className="num" data-field="pending">
                          <Link href={`/jobs?team=${team.name}&status=pending`}>{team.pending_jobs}</Link>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
                <p className="muted small">
                  Order: the order fair share serves teams next — share = (GPUs in use + recent use ÷ half-life) ÷ weight, lowest first. Borrowed
                  GPUs are beyond the quota and can be reclaimed by the teams that lent them.
                </p>
              </>
            )
          }
        </AsyncView>
      </Card>
    </div>
  );
}
