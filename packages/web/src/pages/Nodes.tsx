/**
 * Every node and GPU as a grid, each GPU coloured by the job holding it; hovering or focusing a GPU tells the job,
 * its team and the GPU's utilisation. Nodes group by rack, by node, or by NVLink domain within nodes.
 */
import { useMemo, useState } from 'react';
import type { GpuView, JobSummaryView, NodeView } from '@tutti/client';
import { client } from '../api.ts';
import { AsyncView, Card, Link } from '../components/common.tsx';
import { navigate, useAsync, useInterval, useLiveEvent, useThrottled } from '../hooks.ts';
import { formatMiB } from '../lib/format.ts';
import { groupTopology, jobColor } from '../lib/gpus.ts';
import type { TopologyLevel } from '../lib/gpus.ts';
import { jobHref } from '../lib/routes.ts';

interface ClusterView {
  nodes: NodeView[];
  /** Running jobs by id (for names and teams). */
  jobs: Map<string, JobSummaryView>;
  /** Whether any GPU reports gauges (real GPUs do; fake ones do not). */
  gaugesAvailable: boolean;
}

async function loadCluster(): Promise<ClusterView> {
  const [{ nodes }, { jobs }] = await Promise.all([client.listNodes(), client.listJobs({ status: 'running', limit: 1000 })]);
  const gaugesAvailable = nodes.some((node) => node.gpus.some((gpu) => gpu.metrics?.utilization_pct != null));
  return { nodes, jobs: new Map(jobs.map((job) => [job.id, job])), gaugesAvailable };
}

export function NodesPage() {
  const [cluster, reload] = useAsync(loadCluster, []);
  const reloadSoon = useThrottled(reload, 500);
  useLiveEvent((event) => ['scheduled', 'started', 'succeeded', 'failed', 'cancelled', 'requeued', 'restarting', 'preempted'].includes(event.type) && reloadSoon());
  // Utilisation changes without events.
  useInterval(reload, 10_000, cluster.status === 'ready' && cluster.data.gaugesAvailable);
  const [level, setLevel] = useState<TopologyLevel>('rack');

  return (
    <div className="page nodes">
      <h1>Nodes</h1>
      <div className="toolbar">
        <label>
          Group by
          <select aria-label="Group by" value={level} onChange={(e) => setLevel(e.target.value as TopologyLevel)}>
            <option value="rack">rack</option>
            <option value="node">node</option>
            <option value="nvlink">NVLink domain</option>
          </select>
        </label>
      </div>
      <AsyncView state={cluster} what="nodes" onRetry={reload}>
        {(data) => <ClusterGrid cluster={data} level={level} />}
      </AsyncView>
    </div>
  );
}

function ClusterGrid({ cluster, level }: { cluster: ClusterView; level: TopologyLevel }) {
  const groups = useMemo(() => groupTopology(cluster.nodes, level), [cluster, level]);
  const holders = useMemo(() => [...new Set(cluster.nodes.flatMap((n) => n.gpus.map((g) => g.job_id)).filter((id): id is string => id !== null))], [cluster]);
  if (cluster.nodes.length === 0) return <p className="muted">No nodes.</p>;
  return (
    <>
      <Card title="Jobs holding GPUs">
        {holders.length === 0 ? (
          <p className="muted">Every GPU is free.</p>
        ) : (
          <ul className="legend">
            {holders.map((id) => {
              const job = cluster.jobs.get(id);
              return (
                <li key={id}>
                  <span className="swatch" style={{ background: jobColor(id) }} aria-hidden="true" />
                  <Link href={jobHref(id)}>
                    job {id}
                    {job ? ` ${job.name} (${job.team})` : ''}
                  </Link>
                </li>
              );
            })}
          </ul>
        )}
        {!cluster.gaugesAvailable && holders.length > 0 && <p className="muted small">Utilisation: no GPU metrics (fake GPUs).</p>}
      </Card>
      {groups.map((group) => (
        <section key={group.label} className="topology-group" aria-label={group.label}>
          {level === 'rack' && <h2>{group.label}</h2>}
          <div className="node-grid">
            {group.nodes.map(({ node, gpuGroups }) => (
              <article key={node.name} className={`node-card node-${node.state}`} aria-label={`node ${node.name}`}>
                <header>
                  <h3>{node.name}</h3>
                  <span className={`badge badge-node-${node.state}`}>{node.state}</span>
                </header>
                <p className="muted small">
                  {node.gpus.length} GPU{node.gpus.length === 1 ? '' : 's'} · {node.cpus} CPUs · {formatMiB(node.memory_mib)}
                  {node.labels.rack ? ` · rack ${node.labels.rack}` : ''}
                  {node.labels.zone ? ` · zone ${node.labels.zone}` : ''}
                  {node.state_reason !== null ? ` · ${node.state}: ${node.state_reason}` : ''}
                </p>
                {gpuGroups.map((gpus, i) => (
                  <div key={i} className={`gpu-row ${level === 'nvlink' ? 'nvlink-domain' : ''}`} role="list" aria-label={level === 'nvlink' ? `NVLink domain ${i + 1} of ${node.name}` : `GPUs of ${node.name}`}>
                    {gpus.map((gpu) => (
                      <GpuCell key={gpu.index} node={node} gpu={gpu} jobs={cluster.jobs} />
                    ))}
                  </div>
                ))}
              </article>
            ))}
          </div>
        </section>
      ))}
    </>
  );
}

function GpuCell({ node, gpu, jobs }: { node: NodeView; gpu: GpuView; jobs: ReadonlyMap<string, JobSummaryView> }) {
  const held = gpu.job_id !== null;
  const job = gpu.job_id ? jobs.get(gpu.job_id) : undefined;
  const utilization = gpu.metrics?.utilization_pct ?? undefined;
  const util = utilization === undefined ? 'utilization n/a' : `utilization ${utilization}%`;
  const memory = gpu.metrics?.memory_used_mib != null ? `, memory ${formatMiB(gpu.metrics.memory_used_mib)} of ${formatMiB(gpu.memory_mib)}` : '';
  const shared = (gpu.shares?.length ?? 0) > 0 ? ` (${gpu.shares.length > 1 ? 'shared' : 'a share'}: ${gpu.shares.map((s) => `job ${s.job_id} ${Math.round(s.fraction * 100)}%`).join(', ')})` : '';
  const description = held
    ? `GPU ${gpu.index} of ${node.name} (${gpu.type}): job ${gpu.job_id}${job ? ` ${job.name}, team ${job.team}` : ''}${shared}, ${util}${memory}`
    : `GPU ${gpu.index} of ${node.name} (${gpu.type}): free${node.state !== 'ready' ? `, node ${node.state}` : ''}`;
  return (
    <div
      role="listitem"
      className={`gpu ${held ? 'held' : 'free'} ${node.state !== 'ready' ? 'unhealthy' : ''}`}
      style={held ? { background: jobColor(gpu.job_id!) } : undefined}
      tabIndex={0}
      aria-label={description}
      data-gpu={`${node.name}/${gpu.index}`}
      data-job-id={gpu.job_id ?? ''}
      onClick={() => held && navigate(jobHref(gpu.job_id!))}
      onKeyDown={(e) => held && (e.key === 'Enter' || e.key === ' ') && (e.preventDefault(), navigate(jobHref(gpu.job_id!)))}
    >
      <span className="gpu-index">{gpu.index}</span>
      <span className="tooltip" role="tooltip">
        <strong>
          GPU {gpu.index} · {node.name}
        </strong>
        <br />
        {gpu.product || gpu.type} · {formatMiB(gpu.memory_mib)}
        <br />
        {held ? (
          <>
            job {gpu.job_id}
            {job ? ` ${job.name}` : ''}
            <br />
            team {job?.team ?? '?'}
            {shared && (
              <>
                <br />
                {shared.trim()}
              </>
            )}
            <br />
            {util}
            {memory}
          </>
        ) : (
          'free'
        )}
      </span>
    </div>
  );
}
