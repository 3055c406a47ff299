/** The dashboard's frame: navigation, the live-connection indicator, and the page the URL names. */
import { useEffect } from 'react';
import { Link } from './components/common.tsx';
import { useLiveStatus, useRoute } from './hooks.ts';
import type { Route } from './lib/routes.ts';
import { JobPage } from './pages/Job.tsx';
import { JobsPage } from './pages/Jobs.tsx';
import { NodesPage } from './pages/Nodes.tsx';
import { OverviewPage } from './pages/Overview.tsx';
import { SubmitPage } from './pages/Submit.tsx';
import { TeamsPage } from './pages/Teams.tsx';

const NAV: { page: Route['page']; href: string; label: string }[] = [
  { page: 'overview', href: '/', label: 'Overview' },
  { page: 'jobs', href: '/jobs', label: 'Jobs' },
  { page: 'nodes', href: '/nodes', label: 'Nodes' },
  { page: 'teams', href: '/teams', label: 'Teams' },
  { page: 'submit', href: '/submit', label: 'Submit' },
];

function titleOf(route: Route): string {
  switch (route.page) {
    case 'job':
      return `job ${route.id}`;
    case 'not-found':
      return 'not found';
    default:
      return NAV.find((n) => n.page === route.page)?.label ?? 'tutti';
  }
}

export function App() {
  const route = useRoute();
  const live = useLiveStatus();
  useEffect(() => {
    document.title = `${titleOf(route)} · tutti`;
  }, [route.page, route.page === 'job' ? route.id : '']);
  const current = route.page === 'job' ? 'jobs' : route.page;
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">tutti</span>
        <nav aria-label="pages">
          <ul>
            {NAV.map((item) => (
              <li key={item.page}>
                <Link href={item.href} aria-current={current === item.page ? 'page' : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <span className={`live live-${live}`} role="status" aria-live="polite" title="the event stream from the server">
          {live === 'live' ? '● live' : live === 'connecting' ? '○ connecting' : '○ reconnecting…'}
        </span>
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={route} />
      </main>
    </>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'overview':
      return <OverviewPage />;
    case 'jobs':
      return <JobsPage search={route.search} />;
    case 'job':
      return <JobPage key={route.id} id={route.id} />;
    case 'nodes':
      return <NodesPage />;
    case 'teams':
      return <TeamsPage />;
    case 'submit':
      return <SubmitPage />;
    case 'not-found':
      return (
        <div className="page">
          <h1>Not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>. <Link href="/">Go to the overview</Link>.
          </p>
        </div>
      );
  }
}
