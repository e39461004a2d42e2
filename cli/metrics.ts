/**
 * Prometheus metrics for the daemon on its own prom-client Registry (never the global
 * default one, so several daemons or tests in one process do not share counters).
 * Fed by the core's OpObserver: one record per service operation from any frontend.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { OpObserver } from '../core/observe.js';

export interface DaemonMetrics {
  readonly observe: OpObserver;
  /** Exposition for GET /metrics. */
  render(): Promise<{ contentType: string; body: string }>;
}

/**
 * Builds the registry and its metrics.
 * @example const m = createMetrics({ volumes: () => service.status().volumes }); observer = m.observe;
 */
export function createMetrics(o: { volumes: () => number }): DaemonMetrics {
  const registry = new Registry();
  const ops = new Counter({
    name: 'berth_operations_total',
    help: 'Volume service operations by frontend, operation and outcome (ok or error kind)',
    labelNames: ['frontend', 'op', 'outcome'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'berth_operation_duration_seconds',
    help: 'Volume service operation duration by frontend, operation and outcome',
    labelNames: ['frontend', 'op', 'outcome'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  new Gauge({
    name: 'berth_volumes',
    help: 'Volumes in the store',
    registers: [registry],
    collect() {
      this.set(o.volumes());
    },
  });
  return {
    observe(rec) {
      const labels = { frontend: rec.frontend, op: rec.op, outcome: rec.outcome };
      ops.inc(labels);
      duration.observe(labels, rec.durationMs / 1000);
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
