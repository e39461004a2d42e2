/**
 * The part of `kubectl kustomize` deploy/kubernetes uses, so its variants can be built and
 * checked without kubectl: `resources` (files and directories), `components` (kind:
 * Component) and `patches` with a `path` (strategic merge: the patch names its target by
 * apiVersion, kind and name; maps merge, lists of objects with a `name` merge by name, other
 * values and lists are replaced). Anything else in a kustomization.yaml is refused, so a new
 * feature there cannot be skipped silently.
 *
 * @example const objects = kustomizeBuild('deploy/kubernetes/attach');
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };

/** Every YAML document of a file; throws on any parse error or warning, naming the file. */
export function loadYamlDocs(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: K8sObject[] = [];
  for (const doc of docs) {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length) throw new Error(`${file}: ${problems.map((p) => p.message).join('; ')}`);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null) out.push(value);
  }
  return out;
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const named = (l: unknown[]) => l.every((x) => isMap(x) && typeof x.name === 'string');

/** Strategic merge of `patch` into `base` (a new value; neither argument changes). */
export function strategicMerge(base: unknown, patch: unknown): unknown {
  if (isMap(base) && isMap(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? strategicMerge(base[k], v) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch) && base.length && patch.length && named(base) && named(patch)) {
    const out = base.map((b) => {
      const p = patch.find((x) => (x as { name: string }).name === (b as { name: string }).name);
      return p ? strategicMerge(b, p) : b;
    });
    for (const p of patch) if (!base.some((b) => (b as { name: string }).name === (p as { name: string }).name)) out.push(p);
    return out;
  }
  return patch;
}

const KNOWN_KEYS = new Set(['apiVersion', 'kind', 'resources', 'components', 'patches']);
const sameObject = (a: K8sObject, b: K8sObject) =>
  a.apiVersion === b.apiVersion && a.kind === b.kind && a.metadata.name === b.metadata.name && (a.metadata.namespace ?? '') === (b.metadata.namespace ?? '');

function applyKustomization(dir: string, objects: K8sObject[], expectKind: 'Kustomization' | 'Component'): K8sObject[] {
  const [k] = loadYamlDocs(join(dir, 'kustomization.yaml')) as unknown as [Record<string, unknown>];
  const unknown = Object.keys(k).filter((key) => !KNOWN_KEYS.has(key));
  if (unknown.length) throw new Error(`${dir}/kustomization.yaml: not supported here: ${unknown.join(', ')}`);
  if (k.kind !== expectKind) throw new Error(`${dir}/kustomization.yaml: kind ${String(k.kind)}, expected ${expectKind}`);
  let out = [...objects];
  for (const r of (k.resources ?? []) as string[]) {
    const p = resolve(dir, r);
    out.push(...(statSync(p).isDirectory() ? kustomizeBuild(p) : loadYamlDocs(p)));
  }
  for (const c of (k.components ?? []) as string[]) out = applyKustomization(resolve(dir, c), out, 'Component');
  for (const patch of (k.patches ?? []) as Array<{ path?: string }>) {
    if (!patch.path) throw new Error(`${dir}/kustomization.yaml: only patches with a path are supported`);
    for (const p of loadYamlDocs(resolve(dir, patch.path))) {
      const i = out.findIndex((o) => sameObject(o, p));
      if (i < 0) throw new Error(`${dir}/${patch.path}: no ${p.kind} ${p.metadata.name} to patch`);
      out[i] = strategicMerge(out[i], p) as K8sObject;
    }
  }
  return out;
}

/** Builds the kustomization in `dir` into its list of objects. */
export function kustomizeBuild(dir: string): K8sObject[] {
  return applyKustomization(dir, [], 'Kustomization');
}
