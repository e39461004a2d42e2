// A consumer that writes on a node while the tests fail it over (issue 11): appends numbered,
// fixed-width records to one file, fsyncs after each, and reports on stdout
//   "synced N"        after record N was written and fsync returned (N counts from 1);
//   "failed N CODE"   when writing or syncing record N failed (it tries N again next time).
// It never stops on its own: the test kills it. Usage: node record-writer.mjs FILE [PAUSE_MS]
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';

const [file, pauseArg] = process.argv.slice(2);
const pause = Number(pauseArg ?? 5);
const fd = openSync(file, 'a');
let n = 1;
const record = (i) => `record ${String(i).padStart(8, '0')}\n`;
const step = () => {
  try {
    writeSync(fd, record(n));
    fsyncSync(fd);
    process.stdout.write(`synced ${n}\n`);
    n++;
  } catch (err) {
    process.stdout.write(`failed ${n} ${err.code ?? err.message}\n`);
  }
  setTimeout(step, pause);
};
process.on('SIGTERM', () => {
  try {
    closeSync(fd);
  } catch {
    // a shut-down filesystem may refuse even this
  }
  process.exit(0);
});
step();
