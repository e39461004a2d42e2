/**
 * Field checks of service requests that need no store or backend: they run before any lock
 * is taken, so bad input is refused (InvalidArgument naming the field) before anything changes.
 */
import type { CheckedCreate } from './create-ops.js';
import { refuseEphemeralLabel } from './ephemeral.js';
import { invalidArgument } from './errors.js';
import { PREEMPT_LABEL } from './fencing.js';
import type { CreateVolumeRequest } from './service.js';
import {
  parseAccessMode, parseBool, parseFsType, parseSize, parseVolumeMode, validateLabels, validateOptions, validateStringValue, validateVolumeName,
} from './spec.js';

export function requireRef(ref: unknown, field = 'ref'): string {
  if (typeof ref !== 'string' || ref.length === 0) throw invalidArgument(field, 'must be a volume name or id');
  if (ref.includes('\0') || Buffer.byteLength(ref) > 256) throw invalidArgument(field, 'is not a valid volume name or id');
  return ref;
}

export function requireConsumer(consumer: unknown): string {
  if (typeof consumer !== 'string' || consumer.length === 0) throw invalidArgument('consumer', 'must be a non-empty string');
  if (consumer.includes('\0') || Buffer.byteLength(consumer) > 4200) throw invalidArgument('consumer', 'is not a valid consumer reference');
  return consumer;
}

export function requireNode(node: unknown, fallback: string): string {
  if (node === undefined || node === null || node === '') return fallback;
  if (typeof node !== 'string' || node.includes('\0') || Buffer.byteLength(node) > 256) throw invalidArgument('node', 'must be a node id');
  return node;
}

/** Field checks of a create request: everything that needs no store or backend. */
export function checkCreate(req: CreateVolumeRequest): CheckedCreate {
  if (!req || typeof req !== 'object') throw invalidArgument('request', 'must be an object');
  const name = validateVolumeName(req.name, 'name');
  const out: { -readonly [K in keyof CheckedCreate]: CheckedCreate[K] } = {
    name,
    labels: validateLabels(req.labels, 'labels'),
    options: validateOptions(req.options, 'options'),
  };
  refuseEphemeralLabel(out.labels);
  if (Object.hasOwn(out.labels, PREEMPT_LABEL)) {
    throw invalidArgument(`labels.${PREEMPT_LABEL}`, 'is set by berth for volumes created with preempt; give preempt: true instead');
  }
  if (req.backend !== undefined) out.backend = validateStringValue(req.backend, 'backend');
  if (req.sizeBytes !== undefined) out.sizeBytes = parseSize(req.sizeBytes, 'size');
  if (req.fsType !== undefined && req.fsType !== null) out.fsType = parseFsType(req.fsType, 'fs');
  if (req.volumeMode !== undefined) out.volumeMode = parseVolumeMode(req.volumeMode, 'mode');
  if (req.accessMode !== undefined) out.accessMode = parseAccessMode(req.accessMode, 'accessMode');
  if (req.preempt !== undefined && req.preempt !== null) out.preempt = parseBool(req.preempt, 'preempt');
  if (req.source !== undefined && req.source !== null) {
    const field = req.source.kind === 'snapshot' ? 'fromSnapshot' : 'fromVolume';
    if (req.source.kind !== 'snapshot' && req.source.kind !== 'volume') throw invalidArgument('source.kind', 'must be "snapshot" or "volume"');
    out.source = { kind: req.source.kind, ref: requireRef(req.source.ref, field) };
  }
  if (req.nodes !== undefined && req.nodes !== null) out.nodes = checkNodes(req.nodes);
  return out;
}

/** At most this many nodes in a create's placement (a CSI requisite lists every node of a cluster). */
const MAX_PLACEMENT_NODES = 4096;

function checkNodes(nodes: unknown): string[] {
  if (!Array.isArray(nodes) || nodes.length === 0) throw invalidArgument('nodes', 'must be a non-empty list of node ids');
  if (nodes.length > MAX_PLACEMENT_NODES) throw invalidArgument('nodes', `lists ${nodes.length} nodes; at most ${MAX_PLACEMENT_NODES}`);
  return nodes.map((n: unknown, i) => {
    if (typeof n !== 'string' || n === '' || n.includes('\0') || Buffer.byteLength(n) > 256) throw invalidArgument(`nodes[${i}]`, 'must be a node id');
    return n;
  });
}
