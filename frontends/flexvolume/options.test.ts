import { describe, expect, it } from 'vitest';
import { normalizeSize, parseFlexOptions, PV_LABEL } from './options.js';

// The exact bytes kubelet sends for the contract's example (flexvolume.md §6, JM).
const JM =
  '{"kubernetes.io/fsType":"ext4","kubernetes.io/mounterArgs.FsGroup":"2000","kubernetes.io/pod.name":"web-0","kubernetes.io/pod.namespace":"default","kubernetes.io/pod.uid":"6b1e2c3d-0000-4000-8000-123456789abc","kubernetes.io/pvOrVolumeName":"pv-data1","kubernetes.io/readwrite":"rw","kubernetes.io/secret/password":"czNjcjN0","kubernetes.io/secret/username":"YWRtaW4=","kubernetes.io/serviceAccount.name":"default","size":"10Gi","volumeID":"vol-123"}';

describe('FlexVolume option JSON', () => {
  it('splits kubelet keys, pod info, the volume ref and the create request; secrets never reach it', () => {
    const o = parseFlexOptions(JM);
    expect(o.ref).toBe('vol-123');
    expect(o.pvName).toBe('pv-data1');
    expect(o.fsType).toBe('ext4');
    expect(o.readOnly).toBe(false);
    expect(o.fsGroup).toBe(2000);
    expect(o.pod).toEqual({ name: 'web-0', namespace: 'default', uid: '6b1e2c3d-0000-4000-8000-123456789abc', serviceAccount: 'default' });
    expect(o.create).toEqual({ name: 'vol-123', size: '10GiB', fs: 'ext4', labels: { [PV_LABEL]: 'pv-data1' } });
    expect(JSON.stringify(o.create)).not.toContain('czNjcjN0');
  });

  it('defaults the volume to the PV name and routes backend options', () => {
    const o = parseFlexOptions('{"backend":"loop","kubernetes.io/fsType":"","kubernetes.io/pvOrVolumeName":"pv1","kubernetes.io/readwrite":"ro","label.team":"a","mode":"filesystem","noatime":"true"}');
    expect(o.ref).toBe('pv1');
    expect(o.readOnly).toBe(true);
    expect(o.fsType).toBeNull();
    expect(o.create).toEqual({ name: 'pv1', backend: 'loop', mode: 'filesystem', labels: { team: 'a', [PV_LABEL]: 'pv1' }, options: { noatime: 'true' } });
  });

  it('names the bad field', () => {
    expect(() => parseFlexOptions('not json', 'mount options JSON')).toThrow(/^mount options JSON: not valid JSON/);
    expect(() => parseFlexOptions('[]')).toThrow(/expected a JSON object/);
    expect(() => parseFlexOptions('{}')).toThrow(/options.volumeName: no volume given/);
    expect(() => parseFlexOptions('{"volumeName":"a","kubernetes.io/readwrite":"rx"}')).toThrow(/kubernetes.io\/readwrite/);
    expect(() => parseFlexOptions('{"volumeName":"a","create":"perhaps"}')).toThrow(/options.create: expected true or false/);
    expect(() => parseFlexOptions('{"volumeName":"a","fs":"xfs","kubernetes.io/fsType":"ext4"}')).toThrow(/disagrees/);
    expect(() => parseFlexOptions('{"volumeName":"a","x":{}}')).toThrow(/options.x: expected a string value/);
  });

  it('keeps an option or label keyed __proto__ as data for the daemon to refuse by name, never dropping it', () => {
    const o = parseFlexOptions('{"volumeName":"a","__proto__":"x","label.__proto__":"y","toString":"z"}');
    expect(Object.keys(o.create.options!)).toEqual(['__proto__', 'toString']);
    expect(Object.keys(o.create.labels!)).toEqual(['__proto__']);
    expect(JSON.parse(JSON.stringify(o.create))).toEqual(JSON.parse('{"name":"a","labels":{"__proto__":"y"},"options":{"__proto__":"x","toString":"z"}}'));
  });

  it('reads Kubernetes quantities as berth sizes', () => {
    expect(normalizeSize('10Gi')).toBe('10GiB');
    expect(normalizeSize('512Mi')).toBe('512MiB');
    expect(normalizeSize('10G')).toBe('10G');
    expect(normalizeSize('1073741824')).toBe('1073741824');
  });
});
