/** Small React hooks: async data with loading and error states, the live event stream, the clock, the route. */
import { createContext, useCallback, useContext, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { EventView } from '@tutti/client';
import type { LiveEvents, LiveStatus } from './live-events.ts';
import { parseRoute } from './lib/routes.ts';
import type { Route } from './lib/routes.ts';

export type AsyncState<T> = { status: 'loading' } | { status: 'error'; error: Error } | { status: 'ready'; data: T; refreshing: boolean };

/**
 * Loads with `load` when `deps` change; `reload()` fetches again keeping the old data on screen meanwhile. A
 * response that arrives after newer deps is dropped.
 */
export function useAsync<T>(load: () => Promise<T>, deps: readonly unknown[]): [AsyncState<T>, () => void] {
  const [state, setState] = useState<AsyncState<T>>({ status: 'loading' });
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const run = useCallback((keep: boolean) => {
    const mine = ++generation.current;
    setState((previous) => (keep && previous.status === 'ready' ? { ...previous, refreshing: true } : { status: 'loading' }));
    loadRef.current().then(
      (data) => mine === generation.current && setState({ status: 'ready', data, refreshing: false }),
      (error: unknown) => mine === generation.current && setState({ status: 'error', error: error instanceof Error ? error : new Error(String(error)) }),
    );
  }, []);
  useEffect(() => run(false), deps);
  return [state, useCallback(() => run(true), [run])];
}

export const LiveEventsContext = createContext<LiveEvents | undefined>(undefined);

/** Calls `onEvent` for every live event while the component is mounted. */
export function useLiveEvent(onEvent: (event: EventView) => void): void {
  const live = useContext(LiveEventsContext);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => live?.subscribe((event) => handler.current(event)), [live]);
}

export function useLiveStatus(): LiveStatus {
  const live = useContext(LiveEventsContext);
  return useSyncExternalStore(
    (notify) => live?.onStatus(notify) ?? (() => undefined),
    () => live?.status ?? 'connecting',
  );
}

/** Calls `fn` at most once per `ms`, trailing: a burst of events becomes one reload. */
export function useThrottled(fn: () => void, ms: number): () => void {
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current !== undefined) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      latest.current();
    }, ms);
  }, [ms]);
}

/** Re-renders every `ms` (for relative times) and returns the time. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}

/** Runs `fn` every `ms` while mounted and `enabled`. */
export function useInterval(fn: () => void, ms: number, enabled = true): void {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    if (!enabled) return;
    const id = setInterval(() => latest.current(), ms);
    return () => clearInterval(id);
  }, [ms, enabled]);
}

const NAVIGATE = 'tutti:navigate';

export function navigate(href: string, options: { replace?: boolean } = {}): void {
  if (options.replace) window.history.replaceState(null, '', href);
  else window.history.pushState(null, '', href);
  window.dispatchEvent(new Event(NAVIGATE));
}

function subscribeLocation(notify: () => void): () => void {
  window.addEventListener('popstate', notify);
  window.addEventListener(NAVIGATE, notify);
  return () => {
    window.removeEventListener('popstate', notify);
    window.removeEventListener(NAVIGATE, notify);
  };
}

export function useRoute(): Route {
  const location = useSyncExternalStore(subscribeLocation, () => `${window.location.pathname}${window.location.search}`);
  const queryAt = location.indexOf('?');
  return parseRoute(queryAt < 0 ? location : location.slice(0, queryAt), queryAt < 0 ? '' : location.slice(queryAt));
}
