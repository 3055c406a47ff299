/** Building blocks every page uses: links that route without reloading, status badges, loading and error states. */
import type { AnchorHTMLAttributes, ReactNode } from 'react';
import { ApiError, ServerUnreachableError } from '@tutti/client';
import type { JobStatus } from '@tutti/model';
import { navigate } from '../hooks.ts';
import type { AsyncState } from '../hooks.ts';

export function Link({ href, children, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  return (
    <a
      href={href}
      {...rest}
      onClick={(event) => {
        rest.onClick?.(event);
        // Let the browser handle new tabs, downloads and modified clicks.
        if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(href);
      }}
    >
      {children}
    </a>
  );
}

export function StatusBadge({ status }: { status: JobStatus | string }) {
  return <span className={`badge badge-${status}`}>{status}</span>;
}

export function describeError(error: Error): string {
  if (error instanceof ServerUnreachableError) return 'The tutti server does not answer. Is it still running?';
  if (error instanceof ApiError) return `${error.message} (${error.status} ${error.code})`;
  return error.message;
}

export function ErrorBox({ error, onRetry }: { error: Error; onRetry?: () => void }) {
  return (
    <div className="error-box" role="alert">
      <strong>Could not load this:</strong> {describeError(error)}
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="loading" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

/** Draws `children(data)` once loaded; a loading line or an error with a retry before. */
export function AsyncView<T>({ state, what, onRetry, children }: { state: AsyncState<T>; what: string; onRetry?: () => void; children: (data: T) => ReactNode }) {
  if (state.status === 'loading') return <Loading what={what} />;
  if (state.status === 'error') return <ErrorBox error={state.error} {...(onRetry ? { onRetry } : {})} />;
  return <>{children(state.data)}</>;
}

export function Card({ title, children, className, actions }: { title: string; children: ReactNode; className?: string; actions?: ReactNode }) {
  const id = `card-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return (
    <section className={`card ${className ?? ''}`} aria-labelledby={id}>
      <header className="card-header">
        <h2 id={id}>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}
