// The target path rules are pure: these tests only call functions, nothing here touches a
// path on disk (never aim a probe at a real system directory).
import { describe, expect, it } from 'vitest';
import { checkAllowedPrefix, checkTarget, DEFAULT_ALLOWED_PREFIXES, isWithin, systemPathReason, validateTarget } from './target-policy.js';

const policy = { stateRoot: '/var/lib/berth', allowedPrefixes: DEFAULT_ALLOWED_PREFIXES };

describe('validateTarget', () => {
  it('accepts absolute normalized paths and strips a trailing slash', () => {
    expect(validateTarget('/var/lib/kubelet/pods/x/mount')).toBe('/var/lib/kubelet/pods/x/mount');
    expect(validateTarget('/a/b/')).toBe('/a/b');
  });
  it.each(['', 'rel', '/a/../b', '/a/./b', '/a//b', '/', '/a\0b'])('refuses %j naming the field', (t) => {
    expect(() => validateTarget(t)).toThrow(expect.objectContaining({ kind: 'InvalidArgument', field: 'target' }));
  });
});

describe('checkTarget', () => {
  it('accepts paths strictly below an allowed prefix', () => {
    for (const t of [
      '/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pv/mount',
      '/var/lib/kubelet/plugins/kubernetes.io/csi/csi.berth.dev/abc/globalmount',
      '/var/lib/mesos/slaves/s/frameworks/f/executors/e/runs/r/data',
      '/var/lib/nomad/alloc/a/v',
      '/opt/nomad/data/x',
      '/mnt/data',
      '/media/usb/',
    ]) expect(checkTarget(t, policy)).toBe(t.replace(/\/$/, ''));
  });

  it.each([
    ['/', /must not be \//],
    ['/proc', /"\/proc" is a system directory/],
    ['/proc/1/root', /under \/proc, a system directory/],
    ['/sys/fs/cgroup', /under \/sys/],
    ['/dev/shm', /under \/dev/],
    ['/etc', /system directory/],
    ['/etc/kubernetes/x', /under \/etc/],
    ['/boot/efi', /under \/boot/],
    ['/usr/local/data', /under \/usr/],
    ['/lib64/x', /under \/lib64/],
    ['/run', /system directory/],
    ['/var', /system directory/],
    ['/var/lib', /system directory/],
    ['/root', /system directory/],
    ['/home', /system directory/],
    ['/tmp', /system directory/],
  ])('refuses the system path %s before anything else', (t, why) => {
    expect(() => checkTarget(t, { stateRoot: '/s', allowedPrefixes: ['/'] }))
      .toThrow(expect.objectContaining({ kind: 'InvalidArgument', field: 'target', message: expect.stringMatching(why) }));
  });

  it('refuses the state root, anything inside it, and anything that would cover it', () => {
    const p = { stateRoot: '/srv/berth/state', allowedPrefixes: ['/srv'] };
    for (const t of ['/srv/berth/state', '/srv/berth/state/mounts/vol-1/data']) {
      expect(() => checkTarget(t, p)).toThrow(expect.objectContaining({ field: 'target', message: expect.stringMatching(/inside berth's state root/) }));
    }
    expect(() => checkTarget('/srv/berth', p)).toThrow(expect.objectContaining({ message: expect.stringMatching(/cover berth's state root/) }));
    expect(checkTarget('/srv/berth-other', p)).toBe('/srv/berth-other');
  });

  it('refuses a path outside the allow-list, and the prefix itself, naming the caller\'s field and the list', () => {
    expect(() => checkTarget('/srv/data', policy, 'target_path')).toThrow(expect.objectContaining({
      kind: 'InvalidArgument', field: 'target_path',
      message: expect.stringMatching(/^target_path: "\/srv\/data" is not below an allowed target directory: .*targets.allowedPrefixes.*\/var\/lib\/kubelet/),
    }));
    expect(() => checkTarget('/var/lib/kubelet', policy)).toThrow(expect.objectContaining({ field: 'target' }));
    expect(() => checkTarget('/mntx/a', policy)).toThrow(expect.objectContaining({ field: 'target' }));
    expect(() => checkTarget('/mnt/a', { ...policy, allowedPrefixes: [] })).toThrow(expect.objectContaining({ message: expect.stringMatching(/nowhere/) }));
  });
});

describe('checkAllowedPrefix / helpers', () => {
  it('normalizes a good prefix and refuses bad ones with a reason', () => {
    expect(checkAllowedPrefix('/srv/pods/', 'p', '/var/lib/berth')).toBe('/srv/pods');
    expect(() => checkAllowedPrefix('pods', 'p', '/s')).toThrow(/absolute/);
    expect(() => checkAllowedPrefix('/usr/share', 'p', '/s')).toThrow(/under \/usr/);
    expect(() => checkAllowedPrefix('/var/lib', 'p', '/s')).toThrow(/system directory/);
    expect(() => checkAllowedPrefix('/s/x', 'p', '/s')).toThrow(/state root/);
  });

  it('isWithin compares whole components', () => {
    expect(isWithin('/a/b', '/a')).toBe(true);
    expect(isWithin('/a', '/a')).toBe(true);
    expect(isWithin('/ab', '/a')).toBe(false);
    expect(isWithin('/x', '/')).toBe(true);
    expect(systemPathReason('/procx')).toBeNull();
    expect(systemPathReason('/var/lib/kubelet')).toBeNull();
  });
});
