/**
 * CSI Identity service: GetPluginInfo, GetPluginCapabilities, Probe.
 */
import type { VolumeService } from '../../core/index.js';
import { featuresOf } from './features.js';

export interface IdentityDeps {
  readonly service: VolumeService;
  readonly driverName: string;
  readonly version: string;
  /** The controller service is served by this endpoint (config csi.mode controller|both). */
  readonly controller: boolean;
}

/** @example server.addService(services.Identity, wrap(createIdentityHandlers(deps))) */
export function createIdentityHandlers(d: IdentityDeps) {
  return {
    async GetPluginInfo() {
      return { name: d.driverName, vendor_version: d.version, manifest: {} };
    },

    async GetPluginCapabilities() {
      const f = featuresOf(d.service.backends());
      const caps: object[] = [];
      if (d.controller) caps.push({ service: { type: 'CONTROLLER_SERVICE' } });
      // Always: every node reports its segment (topology.ts), whatever its backends.
      caps.push({ service: { type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' } });
      if (f.expansion === 'online') caps.push({ volume_expansion: { type: 'ONLINE' } });
      else if (f.expansion === 'offline') caps.push({ volume_expansion: { type: 'OFFLINE' } });
      return { capabilities: caps };
    },

    /** Ready only when the core says so (store open, backends built, reconcile done). */
    async Probe() {
      return { ready: { value: d.service.status().ready } };
    },
  };
}
