/** The browser entry point: one event stream for the page's lifetime, then the app. */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { client } from './api.ts';
import { App } from './App.tsx';
import { LiveEventsContext } from './hooks.ts';
import { LiveEvents } from './live-events.ts';
import './styles.css';

const live = new LiveEvents(client);
live.start();

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <LiveEventsContext.Provider value={live}>
      <App />
    </LiveEventsContext.Provider>
  </StrictMode>,
);
