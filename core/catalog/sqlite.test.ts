// The catalog conformance suite against the embedded SQLite catalog (one node, one handle).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { SqliteCatalog } from './sqlite.js';
import { runCatalogConformance } from '../../test/conformance/catalog.case.js';

runCatalogConformance('sqlite', {
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'berth-catalog-sqlite-'));
    const path = join(dir, 'state.db');
    let store: Store = openStore(path);
    let catalog = new SqliteCatalog(store);
    return {
      get nodes() {
        return [catalog];
      },
      async reopen() {
        store.close();
        store = openStore(path);
        catalog = new SqliteCatalog(store);
        return catalog;
      },
      loseLock: null,
      async cleanup() {
        store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
});
