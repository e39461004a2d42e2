/**
 * kubelet and kube-controller-manager driving a FlexVolume driver the way they really do
 * (pkg/volume/flexvolume attacher.go, detacher.go, mounter.go, unmounter.go, util.go and the
 * operation generator; flexvolume.md §5 "Caller-side behaviour"): each step decides with the
 * kubelet's own mount-point rule (kubelet-mount.ts) whether to call the driver at all, and
 * makes and removes the directories the kubelet makes and removes. A directory the kubelet
 * cannot remove fails the step, as it fails (and is retried forever) in a real kubelet.
 *
 *   const k = new FlexKubelet(strictKubeletCall(exe));
 *   const device = await k.attach(J, node);            // controller-manager
 *   await k.mountDevice(dm, await k.waitForAttach(device, J), J);
 *   await k.setUp(pd, JM);  ...  await k.tearDown(pd); await k.unmountDevice(dm); await k.detach(pv, node);
 *   expect(k.log).toContain(`Path: ${dm} already unmounted`);
 */
import { mkdirSync } from 'node:fs';
import type { FlexResult } from './callers.js';
import { getMountRefs, hasMountRefs, isLikelyNotMountPoint, pathExists, removeIfPresent } from './kubelet-mount.js';

type Reply = FlexResult['reply'];
export type FlexCall = (...args: string[]) => Promise<Reply>;

/** The error a failed driver call is to kubelet (driver-call.go handleCmdResponse). */
function checked(cmd: string, r: Reply): Reply {
  if (r.status === 'Success') return r;
  if (r.status === 'Not supported') throw Object.assign(new Error('Not supported'), { notSupported: true });
  throw new Error(`${cmd} command failed, status: ${r.status}, reason: ${r.message ?? ''}`);
}

const isNotSupported = (err: unknown) => (err as { notSupported?: boolean }).notSupported === true;

/** Not mounted when missing, as flexvolume util.go isNotMounted treats a missing path. */
function notMounted(path: string): boolean {
  return !pathExists(path) || isLikelyNotMountPoint(path);
}

export class FlexKubelet {
  /** What kubelet logged about its decisions (skipped calls, removed directories). */
  readonly log: string[] = [];
  readonly #call: FlexCall;

  constructor(call: FlexCall) {
    this.#call = call;
  }

  async #run(cmd: string, ...args: string[]): Promise<Reply> {
    return checked(cmd, await this.#call(cmd, ...args));
  }

  /** controller-manager: attach <json> <node>; its `device` goes to the node status. */
  async attach(json: string, node: string): Promise<string> {
    return (await this.#run('attach', json, node)).device ?? '';
  }

  async isAttached(json: string, node: string): Promise<boolean> {
    return (await this.#run('isattached', json, node)).attached === true;
  }

  /** controller-manager, once the node reports the volume no longer in use. */
  async detach(volumeName: string, node: string): Promise<void> {
    await this.#run('detach', volumeName, node);
  }

  /** kubelet: the `device` of the reply becomes mountdevice's devicePath ("" when omitted). */
  async waitForAttach(devicePath: string, json: string): Promise<string> {
    try {
      return (await this.#run('waitforattach', devicePath, json)).device ?? '';
    } catch (err) {
      if (isNotSupported(err)) return devicePath;
      throw err;
    }
  }

  /** attacher.go MountDevice: skipped when the path looks mounted, else created (0750) and called. */
  async mountDevice(deviceMountPath: string, devicePath: string, json: string): Promise<void> {
    if (!notMounted(deviceMountPath)) {
      this.log.push(`MountDevice skipped: ${deviceMountPath} already mounted`);
      return;
    }
    mkdirSync(deviceMountPath, { recursive: true, mode: 0o750 });
    try {
      await this.#run('mountdevice', deviceMountPath, devicePath, json);
    } catch (err) {
      // The default (kubelet formats and mounts devicePath itself) is not modelled: berth supports mountdevice.
      if (isNotSupported(err) && devicePath === '') return;
      throw err;
    }
  }

  /** mounter.go SetUpAt: skipped when the pod dir looks mounted, else created (0750) and mount called; removed on failure. */
  async setUp(podDir: string, json: string): Promise<void> {
    if (!notMounted(podDir)) {
      this.log.push(`SetUp skipped: ${podDir} already mounted`);
      return;
    }
    mkdirSync(podDir, { recursive: true, mode: 0o750 });
    try {
      await this.#run('mount', podDir, json);
    } catch (err) {
      removeIfPresent(podDir);
      throw err;
    }
  }

  /** unmounter.go TearDownAt: skipped when the dir is missing, unmount called even if it looks unmounted, then the dir removed. */
  async tearDown(podDir: string): Promise<void> {
    if (!pathExists(podDir)) {
      this.log.push(`TearDown skipped: ${podDir} does not exist`);
      return;
    }
    await this.#run('unmount', podDir);
    removeIfPresent(podDir);
    this.log.push(`removed ${podDir}`);
  }

  /**
   * The operation generator's UnmountDevice, then detacher.go: refused while the device mount
   * has references outside the plugin's tree; skipped when the path is missing; unmountdevice
   * called only when the path looks mounted ("Path: ... already unmounted" otherwise); then
   * the directory removed, which throws (EBUSY) if a mount is still there.
   */
  async unmountDevice(deviceMountPath: string): Promise<void> {
    const refs = getMountRefs(deviceMountPath);
    if (hasMountRefs(deviceMountPath, refs)) {
      throw new Error(`UnmountDevice failed: the device is in use when it was no longer expected to be in use (${refs.join(', ')})`);
    }
    if (!pathExists(deviceMountPath)) {
      this.log.push(`Unmount skipped because path does not exist: ${deviceMountPath}`);
      return;
    }
    if (isLikelyNotMountPoint(deviceMountPath)) {
      this.log.push(`Path: ${deviceMountPath} already unmounted`);
    } else {
      await this.#run('unmountdevice', deviceMountPath);
    }
    removeIfPresent(deviceMountPath);
    this.log.push(`removed ${deviceMountPath}`);
  }
}
