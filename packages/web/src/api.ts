/** The one client the dashboard talks to the server through: the server the page came from. */
import { TuttiClient } from '@tutti/client';

export const client = new TuttiClient({ baseUrl: window.location.origin });
