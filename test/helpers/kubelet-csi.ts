/**
 * kubelet's CSI volume plugin (v1.26 pkg/volume/csi: csi_attacher.go, csi_mounter.go,
 * csi_block.go, and the operation generator around them) driving a CSI node service the way
 * it really does: the directories kubelet makes before a call and removes after it, the
 * volume_context it sends (pod info, `csi.storage.k8s.io/ephemeral`), which errors make it
 * clean up (a "final" gRPC code) and the mount-point rule it cleans up by
 * (kubelet-mount.ts). A directory kubelet cannot remove, or keeps because it still looks
 * mounted, is reported in `log`, so a test can fail on what would stay behind on a real node.
 *
 *   const k = new CsiKubelet(client, root.path('kubelet'), 'csi.berth.dev');
 *   const staging = await k.mountDevice(volumeId, 'pv-1', mountCap());
 *   const target = await k.setUp({ volumeId, pvName: 'pv-1', cap: mountCap(), staging }, podUid);
 *   await k.tearDown(volumeId, target); await k.unmountDevice(volumeId, staging);
 *   expect(k.log.filter((l) => l.startsWith('kept'))).toEqual([]);
 *
 * Not modelled: attach (the external-attacher), fsGroup ownership, SELinux, and MapBlockVolume
 * (kubelet's own bind and loop device on the published block file).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { CsiClient } from './csi-client.js';
import { getMountRefs, hasMountRefs, pathExists, removeIfPresent, removeMountDir } from './kubelet-mount.js';

/** csi_client.go isFinalError: codes after which kubelet knows the operation is over and cleans up. */
export function isFinalError(err: unknown): boolean {
  const code = (err as { code?: number }).code;
  if (typeof code !== 'number') return false;
  return ![status.CANCELLED, status.DEADLINE_EXCEEDED, status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.ABORTED].includes(code);
}

/** csi_mounter.go makeVolumeHandle: the volume_id of an ephemeral inline volume. */
export const ephemeralVolumeHandle = (podUid: string, volumeName: string): string =>
  `csi-${createHash('sha256').update(`${podUid}${volumeName}`).digest('hex')}`;

export interface PersistentSpec {
  readonly volumeId: string;
  /** The PV's name (kubelet's spec name). */
  readonly pvName: string;
  readonly cap: object;
  readonly readOnly?: boolean;
  /** The PV's volumeAttributes: CreateVolume's volume_context. */
  readonly context?: Record<string, string>;
}

export interface Pod {
  readonly uid: string;
  readonly name?: string;
  readonly namespace?: string;
}

export class CsiKubelet {
  readonly log: string[] = [];
  readonly #c: CsiClient;
  readonly #root: string;
  readonly #driver: string;
  /** CSIDriver podInfoOnMount: pod attributes (and the ephemeral flag) go into volume_context. */
  readonly #podInfoOnMount: boolean;
  /** kubelet before v1.20 made the target directory itself (MkdirAll(dir)) before NodePublish. */
  readonly #createsTarget: boolean;

  constructor(client: CsiClient, kubeletRoot: string, driver: string, o: { podInfoOnMount?: boolean; createsTarget?: boolean } = {}) {
    this.#c = client;
    this.#root = kubeletRoot;
    this.#driver = driver;
    this.#podInfoOnMount = o.podInfoOnMount ?? true;
    this.#createsTarget = o.createsTarget ?? false;
  }

  /** Device mount path (pv/<name>/globalmount; newer kubelets use a hash of the handle instead of the PV name). */
  stagingPath(pvName: string): string {
    return join(this.#root, 'plugins', 'kubernetes.io', 'csi', 'pv', pvName, 'globalmount');
  }

  /** GetPath: pods/<uid>/volumes/kubernetes.io~csi/<spec name>/mount. */
  targetPath(podUid: string, specName: string): string {
    return join(this.#root, 'pods', podUid, 'volumes', 'kubernetes.io~csi', specName, 'mount');
  }

  #podAttributes(pod: Pod, ephemeral: boolean): Record<string, string> {
    if (!this.#podInfoOnMount) return {};
    return {
      'csi.storage.k8s.io/pod.name': pod.name ?? 'pod', 'csi.storage.k8s.io/pod.namespace': pod.namespace ?? 'default',
      'csi.storage.k8s.io/pod.uid': pod.uid, 'csi.storage.k8s.io/serviceAccount.name': 'default',
      'csi.storage.k8s.io/ephemeral': String(ephemeral),
    };
  }

  /** csi_attacher.go MountDevice: creates the staging dir (0750) and vol_data.json beside it, then NodeStage; a final error removes them. */
  async mountDevice(spec: PersistentSpec): Promise<string> {
    const staging = this.stagingPath(spec.pvName);
    mkdirSync(staging, { recursive: true, mode: 0o750 });
    writeFileSync(join(dirname(staging), 'vol_data.json'), JSON.stringify({ volumeHandle: spec.volumeId, driverName: this.#driver }));
    try {
      await this.#c.node('NodeStageVolume', {
        volume_id: spec.volumeId, staging_target_path: staging, volume_capability: spec.cap, volume_context: spec.context ?? {},
      });
    } catch (err) {
      if (isFinalError(err)) this.#removeMountDir(staging);
      throw err;
    }
    return staging;
  }

  /** The operation generator's UnmountDevice: refused while references outside the plugin tree exist; NodeUnstage; removeMountDir. */
  async unmountDevice(volumeId: string, staging: string): Promise<void> {
    const refs = getMountRefs(staging);
    if (hasMountRefs(staging, refs)) throw new Error(`UnmountDevice failed: the device is in use (${refs.join(', ')})`);
    await this.#c.node('NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging });
    this.#removeMountDir(staging);
  }

  /** csi_mounter.go SetUpAt for a PV: creates the target's parent (not the target), NodePublish; a final error runs removeMountDir. */
  async setUp(spec: PersistentSpec & { staging: string }, pod: Pod): Promise<string> {
    const target = this.targetPath(pod.uid, spec.pvName);
    await this.#publish(target, {
      volume_id: spec.volumeId, staging_target_path: spec.staging, target_path: target, volume_capability: spec.cap,
      readonly: spec.readOnly ?? false, volume_context: { ...spec.context, ...this.#podAttributes(pod, false) },
    });
    return target;
  }

  /**
   * SetUpAt for an ephemeral inline volume (`csi:` in the pod spec): no staging, the handle
   * made from the pod's uid and the volume's name, the volumeAttributes plus the pod's.
   */
  async setUpEphemeral(pod: Pod, volumeName: string, attributes: Record<string, string>, o: { fsType?: string; readOnly?: boolean } = {}) {
    const volumeId = ephemeralVolumeHandle(pod.uid, volumeName);
    const target = this.targetPath(pod.uid, volumeName);
    await this.#publish(target, {
      volume_id: volumeId, staging_target_path: '', target_path: target, readonly: o.readOnly ?? false,
      volume_capability: { mount: { fs_type: o.fsType ?? '', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      volume_context: { ...attributes, ...this.#podAttributes(pod, true) },
    });
    return { volumeId, target };
  }

  async #publish(target: string, req: Record<string, unknown>): Promise<void> {
    // NewMounter: the parent dir with vol_data.json; SetUpAt: MkdirAll(parent, 0750).
    mkdirSync(dirname(target), { recursive: true, mode: 0o750 });
    writeFileSync(join(dirname(target), 'vol_data.json'), JSON.stringify({ volumeHandle: req.volume_id, driverName: this.#driver }));
    if (this.#createsTarget) mkdirSync(target, { mode: 0o750 });
    try {
      await this.#c.node('NodePublishVolume', req);
    } catch (err) {
      if (isFinalError(err)) this.#removeMountDir(target);
      throw err;
    }
  }

  /** csi_mounter.go TearDownAt: NodeUnpublish, then removeMountDir (which keeps a dir that still looks mounted). */
  async tearDown(volumeId: string, target: string): Promise<void> {
    await this.#c.node('NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
    this.#removeMountDir(target);
  }

  #removeMountDir(path: string): void {
    const outcome = removeMountDir(path);
    this.log.push(outcome === 'removed' ? `removed ${path}` : `kept ${path}: still looks mounted`);
  }

  /** csi_block.go paths: volumeDevices/staging/<pv> and volumeDevices/publish/<pv>/<pod uid>. */
  blockPaths(pvName: string, podUid: string) {
    const base = join(this.#root, 'plugins', 'kubernetes.io', 'csi', 'volumeDevices');
    return { staging: join(base, 'staging', pvName), publish: join(base, 'publish', pvName, podUid), volumeDir: join(base, pvName) };
  }

  /** SetUpDevice + MapPodDevice: MkdirAll(staging) and NodeStage, then MkdirAll(publish's parent) and NodePublish; the plugin makes the file. */
  async mapBlock(spec: PersistentSpec, pod: Pod): Promise<{ staging: string; publish: string }> {
    const { staging, publish } = this.blockPaths(spec.pvName, pod.uid);
    mkdirSync(staging, { recursive: true, mode: 0o750 });
    await this.#c.node('NodeStageVolume', { volume_id: spec.volumeId, staging_target_path: staging, volume_capability: spec.cap });
    mkdirSync(dirname(publish), { recursive: true, mode: 0o750 });
    await this.#c.node('NodePublishVolume', {
      volume_id: spec.volumeId, staging_target_path: staging, target_path: publish, volume_capability: spec.cap, readonly: spec.readOnly ?? false,
    });
    if (!statSync(publish).isBlockDevice()) throw new Error(`NodePublish left no block device at ${publish}`);
    return { staging, publish };
  }

  /**
   * UnmapPodDevice + TearDownDevice: NodeUnpublish (even when the file is gone), NodeUnstage
   * when the staging dir exists, RemoveAll(staging), then cleanupOrphanDeviceFiles: os.Remove
   * of the publish dir (the plugin must have removed its file) and of the staging dir.
   */
  async unmapBlock(volumeId: string, pvName: string, podUid: string): Promise<void> {
    const { staging, publish, volumeDir } = this.blockPaths(pvName, podUid);
    await this.#c.node('NodeUnpublishVolume', { volume_id: volumeId, target_path: publish });
    if (pathExists(staging)) {
      await this.#c.node('NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging });
      rmSync(staging, { recursive: true, force: true });
    }
    for (const dir of [dirname(publish), staging, volumeDir]) {
      if (!pathExists(dir)) continue;
      try {
        removeIfPresent(dir);
        this.log.push(`removed ${dir}`);
      } catch (err) {
        this.log.push(`kept ${dir}: ${(err as Error).message}`);
      }
    }
  }
}
