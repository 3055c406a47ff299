/**
 * The jobs page's filters and sort order: to and from the URL (so a view can be linked and survives a reload), to
 * the API query, and when a live event should refresh what the page shows.
 */
import { JOB_SORT_KEYS } from '@tutti/client';
import type { EventView, JobSortKey, ListJobsQuery } from '@tutti/client';
import type { JobStatus } from '@tutti/model';

export const JOB_STATUS_OPTIONS: readonly JobStatus[] = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];

export interface JobsFilter {
  status?: JobStatus;
  team?: string;
  /** Who submitted it. */
  user?: string;
  /** A part of the job's name. */
  name?: string;
  sort: JobSortKey;
  order: 'asc' | 'desc';
}

export const DEFAULT_JOBS_FILTER: JobsFilter = { sort: 'id', order: 'desc' };

const NAME_PART = /^[a-z0-9-]{1,63}$/;
const TEAM = /^[a-z0-9-]{1,63}$/;
/** The user names the server accepts (`tutti-user`). */
export const USER_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

/** Unknown or malformed parameters are dropped rather than sent to the server to be refused. */
export function filterFromSearch(search: string): JobsFilter {
  const params = new URLSearchParams(search);
  const filter: JobsFilter = { ...DEFAULT_JOBS_FILTER };
  const status = params.get('status');
  if (status && (JOB_STATUS_OPTIONS as readonly string[]).includes(status)) filter.status = status as JobStatus;
  const team = params.get('team');
  if (team && TEAM.test(team)) filter.team = team;
  const user = params.get('user');
  if (user && USER_NAME.test(user)) filter.user = user;
  const name = normalizeNamePart(params.get('name') ?? '');
  if (name) filter.name = name;
  const sort = params.get('sort');
  if (sort && (JOB_SORT_KEYS as readonly string[]).includes(sort)) filter.sort = sort as JobSortKey;
  const order = params.get('order');
  if (order === 'asc' || order === 'desc') filter.order = order;
  return filter;
}

/** `?status=…&team=…` with the defaults left out ('' when everything is default). */
export function filterToSearch(filter: JobsFilter): string {
  const params = new URLSearchParams();
  if (filter.status) params.set('status', filter.status);
  if (filter.team) params.set('team', filter.team);
  if (filter.user) params.set('user', filter.user);
  if (filter.name) params.set('name', filter.name);
  if (filter.sort !== DEFAULT_JOBS_FILTER.sort) params.set('sort', filter.sort);
  if (filter.order !== DEFAULT_JOBS_FILTER.order) params.set('order', filter.order);
  const qs = params.toString();
  return qs ? `?${qs}` : '';
}

/** What a user typed in the name box as a name part the server accepts (names are lowercase, digits and '-'). */
export function normalizeNamePart(typed: string): string | undefined {
  const part = typed.trim().toLowerCase();
  return NAME_PART.test(part) ? part : undefined;
}

export function toListQuery(filter: JobsFilter, cursor: string | undefined, limit: number): ListJobsQuery {
  return {
    ...(filter.status ? { status: filter.status } : {}),
    ...(filter.team ? { team: filter.team } : {}),
    ...(filter.user ? { user: filter.user } : {}),
    ...(filter.name ? { name: filter.name } : {}),
    sort: filter.sort,
    order: filter.order,
    limit,
    ...(cursor !== undefined ? { cursor } : {}),
  };
}

/** A click on a column header: that column, descending first for id and priority, ascending for text; again: reversed. */
export function toggleSort(filter: JobsFilter, key: JobSortKey): JobsFilter {
  if (filter.sort === key) return { ...filter, order: filter.order === 'asc' ? 'desc' : 'asc' };
  return { ...filter, sort: key, order: key === 'id' || key === 'priority' ? 'desc' : 'asc' };
}

/**
 * Whether an event changes the page being shown: it concerns a job on it, or it is a new submission and the page
 * is the first one (where a new job would appear in submission order; in other orders it may land anywhere).
 */
export function eventTouchesPage(event: EventView, visibleIds: ReadonlySet<string>, isFirstPage: boolean): boolean {
  if (visibleIds.has(event.job_id)) return true;
  return event.type === 'submitted' && isFirstPage;
}
