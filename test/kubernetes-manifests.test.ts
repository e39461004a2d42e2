// deploy/kubernetes, checked without a cluster: every manifest parses; every variant builds
// (test/helpers/kustomize.ts does what `kubectl kustomize` does with them); and inside each
// build the cross-references hold: volumes and mounts, service accounts and RBAC subjects,
// config maps, the CSI socket every sidecar and kubelet use, probes and the ports serving them,
// pinned images, and berth's own config and StorageClass parameters read by berth's parsers.
// The cluster variant also: etcd's TLS files from a Secret (paths only, nothing on a command
// line), one provisioner per node, the central controllers on any node, shared classes.
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config-load.js';
import { parseVolumeOptions } from '../core/spec.js';
import { kustomizeBuild, loadYamlDocs, type K8sObject } from './helpers/kustomize.js';

const DEPLOY = new URL('../deploy/kubernetes', import.meta.url).pathname;
const DRIVER = 'csi.berth.dev';
const VARIANTS = { 'single-node': false, attach: true, cluster: true } as const;

type Container = {
  name: string; image: string; args?: string[]; env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  ports?: Array<{ name?: string; containerPort: number }>; volumeMounts?: Array<{ name: string; mountPath: string }>;
  livenessProbe?: Probe; startupProbe?: Probe;
};
type Probe = { httpGet?: { path: string; port: number | string } };
type PodSpec = {
  containers: Container[];
  volumes?: Array<{ name: string; hostPath?: { path: string }; configMap?: { name: string }; secret?: { secretName: string; defaultMode?: number } }>;
  serviceAccountName?: string; restartPolicy?: string; nodeSelector?: Record<string, string>;
};

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return n.endsWith('.yaml') ? [p] : [];
  });
}

const podSpecs = (objs: K8sObject[]) => objs
  .filter((o) => o.kind === 'Deployment' || o.kind === 'DaemonSet')
  .map((o) => ({ owner: `${o.kind}/${o.metadata.name}`, ns: o.metadata.namespace, spec: (o as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec }));

const argValue = (c: Container, flag: string) => c.args?.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);

/** The CSI socket path a container uses, on the host: its --csi-address through its volume mounts. */
function hostSocket(pod: PodSpec, c: Container, inContainer: string): string | null {
  for (const m of c.volumeMounts ?? []) {
    if (!inContainer.startsWith(`${m.mountPath}/`)) continue;
    const host = pod.volumes?.find((v) => v.name === m.name)?.hostPath?.path;
    return host ? join(host, inContainer.slice(m.mountPath.length + 1)) : null;
  }
  return null;
}

describe('deploy/kubernetes', () => {
  it('every manifest parses, and every object names its apiVersion, kind and name', () => {
    const files = yamlFiles(DEPLOY);
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      for (const o of loadYamlDocs(f)) {
        if (f.endsWith('kustomization.yaml')) continue;
        expect([f, typeof o.apiVersion, typeof o.kind, typeof o.metadata?.name]).toEqual([f, 'string', 'string', 'string']);
      }
    }
    // No kustomization at the top: a variant has to be chosen.
    expect(readdirSync(DEPLOY)).not.toContain('kustomization.yaml');
  });

  for (const [variant, attach] of Object.entries(VARIANTS)) {
    describe(`the ${variant} variant`, () => {
      const objs = kustomizeBuild(join(DEPLOY, variant));
      const find = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);

      it(`has one CSIDriver with attachRequired: ${attach}, and the external-attacher exactly when it is true`, () => {
        const drivers = objs.filter((o) => o.kind === 'CSIDriver');
        expect(drivers.map((d) => d.metadata.name)).toEqual([DRIVER]);
        const spec = (drivers[0] as unknown as { spec: Record<string, unknown> }).spec;
        expect(spec.attachRequired).toBe(attach);
        // kubelet sends csi.storage.k8s.io/ephemeral only with podInfoOnMount.
        expect(spec).toMatchObject({ podInfoOnMount: true, volumeLifecycleModes: ['Persistent', 'Ephemeral'] });
        const names = podSpecs(objs).flatMap((p) => p.spec.containers.map((c) => c.name));
        expect(names.includes('csi-attacher')).toBe(attach);
        expect(names).toEqual(expect.arrayContaining(['berth', 'node-driver-registrar', 'liveness-probe', 'csi-provisioner', 'csi-resizer', 'csi-snapshotter']));
      });

      it('every object is unique, and every namespaced one lives in the namespace it makes', () => {
        const keys = objs.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
        expect(new Set(keys).size).toBe(keys.length);
        const namespaces = objs.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name);
        for (const o of objs) if (o.metadata.namespace) expect(namespaces).toContain(o.metadata.namespace);
      });

      it('pods: mounts name their volumes, accounts and config maps exist, images are pinned, ports are unique', () => {
        for (const { owner, ns, spec } of podSpecs(objs)) {
          const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
          const mounted = new Set(spec.containers.flatMap((c) => (c.volumeMounts ?? []).map((m) => m.name)));
          expect([owner, [...mounted].filter((m) => !volumes.has(m))]).toEqual([owner, []]);
          expect([owner, [...volumes].filter((v) => !mounted.has(v))]).toEqual([owner, []]);
          expect(find('ServiceAccount', spec.serviceAccountName ?? 'default'), `${owner} service account`).toMatchObject({ metadata: { namespace: ns } });
          for (const v of spec.volumes ?? []) if (v.configMap) expect(find('ConfigMap', v.configMap.name), `${owner} config map`).toBeDefined();
          // A sidecar that exits (external-provisioner does when its CSI connection drops) is restarted.
          expect(spec.restartPolicy ?? 'Always').toBe('Always');
          for (const c of spec.containers) {
            expect(c.image, `${owner}/${c.name} image`).toMatch(c.name === 'berth' ? /^berth:\d+\.\d+\.\d+$/ : /^registry\.k8s\.io\/sig-storage\/[a-z-]+:v\d+\.\d+\.\d+$/);
          }
          // Every container of a pod shares its network: two listeners on one port fail at start.
          const listening = spec.containers.flatMap((c) => [argValue(c, '--http-endpoint'), argValue(c, '--health-port')]).filter(Boolean).map((v) => Number(v!.replace(/^.*:/, '')));
          expect(new Set(listening).size, `${owner} listeners`).toBe(listening.length);
        }
      });

      it('every long-running container has a liveness probe, served by a port some container in the pod listens on', () => {
        for (const { owner, spec } of podSpecs(objs)) {
          const listening = new Map<number, string>();
          for (const c of spec.containers) {
            for (const a of ['--http-endpoint', '--health-port']) {
              const v = argValue(c, a);
              if (v !== undefined) listening.set(Number(v.replace(/^.*:/, '')), c.name);
            }
          }
          for (const c of spec.containers) {
            if (c.name === 'liveness-probe') continue; // it serves berth's probe; it exits when it fails
            expect(c.livenessProbe?.httpGet, `${owner}/${c.name} liveness probe`).toBeDefined();
            for (const probe of [c.livenessProbe, c.startupProbe]) {
              if (!probe?.httpGet) continue;
              const port = typeof probe.httpGet.port === 'number' ? probe.httpGet.port : c.ports?.find((p) => p.name === probe.httpGet!.port)?.containerPort;
              expect(port, `${owner}/${c.name} probe port`).toBeDefined();
              expect(listening.has(port!), `${owner}/${c.name}: nothing listens on ${port}`).toBe(true);
            }
          }
        }
      });

      it('berth, its sidecars, kubelet\'s registration and the controller all use one CSI socket on the host', () => {
        const node = podSpecs(objs).find((p) => p.owner === 'DaemonSet/berth-node')!.spec;
        const berth = node.containers.find((c) => c.name === 'berth')!;
        const endpoint = berth.env?.find((e) => e.name === 'BERTH_CSI_ENDPOINT')?.value;
        expect(endpoint).toBeDefined();
        const socket = hostSocket(node, berth, endpoint!);
        expect(socket).toBe(`/var/lib/kubelet/plugins/${DRIVER}/csi.sock`);
        const registrar = node.containers.find((c) => c.name === 'node-driver-registrar')!;
        expect(argValue(registrar, '--kubelet-registration-path')).toBe(socket);
        expect(hostSocket(node, registrar, '/registration/x')).toBe('/var/lib/kubelet/plugins_registry/x');
        for (const { owner, spec } of podSpecs(objs)) {
          for (const c of spec.containers) {
            const addr = argValue(c, '--csi-address');
            if (addr !== undefined) expect(`${owner}/${c.name} ${hostSocket(spec, c, addr)}`).toBe(`${owner}/${c.name} ${socket}`);
          }
        }
      });

      it('RBAC bindings name accounts and roles that exist', () => {
        for (const b of objs.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding') as unknown as Array<K8sObject & {
          subjects: Array<{ kind: string; name: string; namespace?: string }>; roleRef: { kind: string; name: string };
        }>) {
          for (const s of b.subjects) expect(find(s.kind, s.name), `${b.metadata.name}: ${s.kind} ${s.name}`).toBeDefined();
          expect(find(b.roleRef.kind, b.roleRef.name), `${b.metadata.name}: ${b.roleRef.name}`).toBeDefined();
        }
        if (attach) {
          const rules = (find('ClusterRole', 'berth-controller') as unknown as { rules: Array<{ resources: string[]; verbs: string[] }> }).rules;
          const va = rules.find((r) => r.resources.includes('volumeattachments'));
          expect(va?.verbs).toEqual(expect.arrayContaining(['get', 'list', 'watch', 'patch']));
        }
      });

      it('berth\'s config in the ConfigMap loads with berth\'s own loader, with the DaemonSet\'s environment', () => {
        const cm = find('ConfigMap', 'berth-config') as unknown as { data: Record<string, string> };
        const node = podSpecs(objs).find((p) => p.owner === 'DaemonSet/berth-node')!.spec;
        const berth = node.containers.find((c) => c.name === 'berth')!;
        const mount = berth.volumeMounts!.find((m) => m.name === node.volumes!.find((v) => v.configMap?.name === 'berth-config')!.name)!;
        expect(berth.args).toEqual(['serve', '--config', join(mount.mountPath, 'config.yaml')]);
        const dir = mkdtempSync(join(tmpdir(), 'berth-manifests-'));
        try {
          writeFileSync(join(dir, 'config.yaml'), cm.data['config.yaml']!);
          const env = Object.fromEntries((berth.env ?? []).map((e) => [e.name, e.value ?? 'node-from-field-ref']));
          const config = loadConfig({ file: join(dir, 'config.yaml'), env });
          expect(config.csi).toMatchObject({ enabled: true, driverName: DRIVER, endpoint: '/csi/csi.sock', ephemeral: true });
          expect(config.targets.allowedPrefixes).toContain('/var/lib/kubelet');
          // The state root is bind-mounted from the host with propagation, like kubelet's dir.
          const state = berth.volumeMounts!.find((m) => m.mountPath === config.stateRoot) as { mountPropagation?: string } | undefined;
          expect(state?.mountPropagation).toBe('Bidirectional');
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });

      it('StorageClasses name this driver and their parameters are berth volume options', () => {
        const classes = objs.filter((o) => o.kind === 'StorageClass') as unknown as Array<K8sObject & { provisioner: string; parameters: Record<string, string> }>;
        expect(classes.length).toBeGreaterThan(0);
        for (const sc of classes) {
          expect(sc.provisioner).toBe(DRIVER);
          expect(() => parseVolumeOptions(sc.parameters, 'parameters')).not.toThrow();
        }
      });
    });
  }

  for (const variant of Object.keys(VARIANTS)) {
    it(`the ${variant} variant has one provisioner setup: central (pinned to the storage node, leader-elected) or one per node`, () => {
      const pods = podSpecs(kustomizeBuild(join(DEPLOY, variant)));
      const provisioners = pods.flatMap((p) => p.spec.containers.filter((c) => c.name === 'csi-provisioner').map((c) => ({ owner: p.owner, pod: p.spec, c })));
      expect(provisioners).toHaveLength(1);
      const { owner, pod, c } = provisioners[0]!;
      expect(c.args).toEqual(expect.arrayContaining(['--feature-gates=Topology=true', '--extra-create-metadata']));
      if (variant === 'cluster') {
        // Distributed provisioning: beside berth on every node, for that node (NODE_NAME), no election.
        expect(owner).toBe('DaemonSet/berth-node');
        expect(c.args).toContain('--node-deployment');
        expect(c.args!.some((a) => a.startsWith('--leader-election'))).toBe(false);
        const nodeName = c.env?.find((e) => e.name === 'NODE_NAME');
        const berthNode = pod.containers.find((x) => x.name === 'berth')!.env?.find((e) => e.name === 'BERTH_NODE_ID');
        // The provisioner's node and berth's node id (NodeGetInfo, the topology segment) are the same name.
        expect(nodeName?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName');
        expect(berthNode?.valueFrom?.fieldRef?.fieldPath).toBe('spec.nodeName');
      } else {
        expect(owner).toBe('Deployment/berth-controller');
        expect(c.args).toEqual(expect.arrayContaining(['--leader-election', '--strict-topology']));
        expect(Object.keys(pod.nodeSelector ?? {})).toEqual(['kubernetes.io/hostname']);
      }
    });
  }

  describe('the cluster variant', () => {
    const objs = kustomizeBuild(join(DEPLOY, 'cluster'));
    const node = podSpecs(objs).find((p) => p.owner === 'DaemonSet/berth-node')!.spec;
    const berth = node.containers.find((c) => c.name === 'berth')!;
    const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'berth-config') as unknown as { data: Record<string, string> };
    const loadIt = () => {
      const dir = mkdtempSync(join(tmpdir(), 'berth-manifests-cluster-'));
      try {
        writeFileSync(join(dir, 'config.yaml'), cm.data['config.yaml']!);
        return loadConfig({ file: join(dir, 'config.yaml'), env: { BERTH_NODE_ID: 'node-1', BERTH_CSI_ENDPOINT: '/csi/csi.sock' } });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    };
    type Mount = { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string };
    /** The mount a path is under (the deepest one). */
    const mountOf = (path: string) => (berth.volumeMounts as Mount[]).filter((m) => path.startsWith(`${m.mountPath}/`))
      .sort((x, y) => y.mountPath.length - x.mountPath.length)[0];

    it('joins etcd over TLS with files from a read-only, owner-only Secret mount; nothing of it on any command line or in the environment', () => {
      const config = loadIt();
      expect(config.cluster.etcd.endpoints.length).toBeGreaterThan(0);
      expect(config.cluster.etcd.endpoints.every((e) => e.startsWith('https://'))).toBe(true);
      const files = Object.values(config.cluster.etcd.tls);
      expect(files.every((f) => typeof f === 'string')).toBe(true);
      for (const f of files as string[]) {
        const m = mountOf(f);
        const volume = node.volumes!.find((v) => v.name === m?.name);
        expect([f, volume?.secret?.secretName, m?.readOnly, volume?.secret?.defaultMode]).toEqual([f, 'berth-etcd-tls', true, 0o400]);
      }
      // Not nested in another volume's mount (the config map's is read-only: no mountpoint can be made in it).
      for (const m of berth.volumeMounts as Mount[]) {
        const nested = (berth.volumeMounts as Mount[]).filter((o) => o !== m && m.mountPath.startsWith(`${o.mountPath}/`));
        expect([m.mountPath, nested.map((o) => o.mountPath)]).toEqual([m.mountPath, []]);
      }
      const secrets = [...config.cluster.etcd.endpoints, ...(files as string[]), 'etcd'];
      for (const { owner, spec } of podSpecs(objs)) {
        for (const c of spec.containers) {
          const exposed = [...(c.args ?? []), ...(c.env ?? []).flatMap((e) => [e.name, e.value ?? ''])].join(' ').toLowerCase();
          for (const x of secrets) expect(exposed.includes(x.toLowerCase()), `${owner}/${c.name} shows ${x}`).toBe(false);
        }
      }
    });

    it('shared backends live on the shared storage the host mounts, which reaches the container; the classes name configured backends, one with preempt', () => {
      const config = loadIt();
      const shared = Object.entries(config.backends).filter(([, b]) => (b as { shared?: boolean }).shared === true);
      expect(shared.length).toBeGreaterThan(0);
      for (const [name, b] of shared) {
        const m = mountOf((b as unknown as { root: string }).root);
        const volume = node.volumes!.find((v) => v.name === m?.name);
        expect([name, volume?.hostPath?.path !== undefined, m?.mountPropagation]).toEqual([name, true, 'HostToContainer']);
      }
      const classes = objs.filter((o) => o.kind === 'StorageClass') as unknown as Array<K8sObject & { parameters: Record<string, string>; volumeBindingMode: string }>;
      for (const sc of classes) expect(Object.keys(config.backends), sc.metadata.name).toContain(sc.parameters.backend);
      const onShared = classes.filter((sc) => shared.some(([n]) => n === sc.parameters.backend));
      expect(onShared.length).toBeGreaterThan(0);
      expect(onShared.filter((sc) => sc.parameters.preempt === 'true').map((sc) => sc.metadata.name)).toEqual(['berth-shared-ext4-preempt']);
      // Node-local classes bind where the pod lands, which is where the node's provisioner makes the volume.
      for (const sc of classes) expect(sc.volumeBindingMode, sc.metadata.name).toBe('WaitForFirstConsumer');
    });

    it('the central controllers run on any node, two of them, leader-elected; the node account may provision', () => {
      const ctl = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'berth-controller') as unknown as { spec: { replicas: number; template: { spec: PodSpec } } };
      expect(ctl.spec.replicas).toBeGreaterThanOrEqual(2);
      expect(ctl.spec.template.spec.nodeSelector).toBeUndefined();
      expect(ctl.spec.template.spec.containers.map((c) => c.name).sort()).toEqual(['csi-attacher', 'csi-resizer', 'csi-snapshotter']);
      for (const c of ctl.spec.template.spec.containers) expect(c.args, c.name).toContain('--leader-election');
      const bindings = objs.filter((o) => o.kind === 'ClusterRoleBinding') as unknown as Array<{ subjects: Array<{ name: string }>; roleRef: { name: string } }>;
      expect(bindings.some((b) => b.roleRef.name === 'berth-controller' && b.subjects.some((x) => x.name === node.serviceAccountName))).toBe(true);
    });
  });

  it('the examples use a StorageClass of the build, and the ephemeral volume\'s attributes are berth volume options', () => {
    const objs = kustomizeBuild(join(DEPLOY, 'single-node'));
    const pvcs = loadYamlDocs(join(DEPLOY, 'example-pod.yaml')).filter((o) => o.kind === 'PersistentVolumeClaim') as unknown as Array<{ spec: { storageClassName: string } }>;
    for (const pvc of pvcs) expect(objs.some((o) => o.kind === 'StorageClass' && o.metadata.name === pvc.spec.storageClassName)).toBe(true);
    const [pod] = loadYamlDocs(join(DEPLOY, 'example-ephemeral-pod.yaml')) as unknown as Array<{ spec: { volumes: Array<{ csi?: { driver: string; volumeAttributes: Record<string, string> } }> } }>;
    const inline = pod!.spec.volumes.map((v) => v.csi).filter(Boolean);
    expect(inline.length).toBe(1);
    expect(inline[0]!.driver).toBe(DRIVER);
    expect(parseVolumeOptions(inline[0]!.volumeAttributes, 'volume_context')).toMatchObject({ backend: 'loop', sizeBytes: 2 ** 30 });
  });
});
