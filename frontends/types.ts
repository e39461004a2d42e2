/**
 * The lifecycle every protocol frontend implements. The composition root (cli/daemon.ts)
 * is the only place that builds frontends and the only place they meet.
 */
export interface FrontendServer {
  readonly name: string;
  /** Starts listening (creates its socket, removing a stale one first). */
  start(): Promise<void>;
  /** Stops listening and removes its socket. Safe to call twice. */
  stop(): Promise<void>;
}
