/** The dashboard's URLs (path-based; the server answers index.html for each) and what page each one shows. */
export type Route =
  | { page: 'overview' }
  | { page: 'jobs'; search: string }
  | { page: 'job'; id: string }
  | { page: 'nodes' }
  | { page: 'teams' }
  | { page: 'submit' }
  | { page: 'not-found'; path: string };

export function parseRoute(pathname: string, search = ''): Route {
  const path = pathname.replace(/\/+$/, '') || '/';
  if (path === '/') return { page: 'overview' };
  if (path === '/jobs') return { page: 'jobs', search };
  const job = /^\/jobs\/([1-9][0-9]{0,17})$/.exec(path);
  if (job) return { page: 'job', id: job[1]! };
  if (path === '/nodes') return { page: 'nodes' };
  if (path === '/teams') return { page: 'teams' };
  if (path === '/submit') return { page: 'submit' };
  return { page: 'not-found', path };
}

export function routeHref(route: Route): string {
  switch (route.page) {
    case 'overview':
      return '/';
    case 'jobs':
      return `/jobs${route.search}`;
    case 'job':
      return `/jobs/${route.id}`;
    case 'not-found':
      return route.path;
    default:
      return `/${route.page}`;
  }
}

export const jobHref = (id: string) => `/jobs/${id}`;
