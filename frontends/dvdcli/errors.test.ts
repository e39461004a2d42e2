import { describe, expect, it } from 'vitest';
import { logLine, rfc3339 } from './errors.js';

describe('dvdcli log lines (logrus text format)', () => {
  it('quotes values that need it, leaves bare ones and empty ones bare, ends with a space and newline', () => {
    const d = new Date('2024-05-06T07:08:09Z');
    const line = logLine('info', 'Missing volume driver name', { volumeDriver: '' }, d);
    expect(line).toBe(`time="${rfc3339(d)}" level=info msg="Missing volume driver name" volumeDriver= \n`);
    expect(logLine('error', 'volume not found', { volumeName: 'nosuch' }, d)).toMatch(/ level=error msg="volume not found" volumeName=nosuch \n$/);
    expect(logLine('info', '/var/lib/x/data', {}, d)).toMatch(/ msg="\/var\/lib\/x\/data" \n$/);
  });

  it('formats time like Go RFC3339 (no fraction, Z or ±hh:mm)', () => {
    expect(rfc3339(new Date())).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/);
  });
});
