import type { Logger } from "pino";
import type { Authenticator } from "./auth/authenticator.js";
import type { RouteDef } from "./http/router.js";
import type { Migration } from "./storage/types.js";

/**
 * One platform service as the composition root (`server.ts`) sees it. A service keeps its logic in
 * `service.ts` (no HTTP), its persistence in `store.ts`, its HTTP binding in `routes.ts`, and exports
 * a `createXxxModule(deps)` that returns this.
 */
export interface PlatformModule {
  readonly name: string;
  readonly migrations?: readonly Migration[];
  readonly routes?: readonly RouteDef[];
  /** Request authenticators this module contributes (e.g. JWT-SVID bearer tokens). */
  readonly authenticators?: readonly Authenticator[];
  /** Called after migrations, before the HTTP server listens. */
  start?(): Promise<void>;
  /** Called at shutdown, in reverse order of start, after the HTTP server drained. */
  stop?(): Promise<void>;
  /** For /readyz: false while the module cannot serve. */
  ready?(): boolean;
}

export interface ModuleDeps {
  log: Logger;
}
