import { describe, expect, it } from 'vitest';
import { addVolumeOpts, parseArgs } from './args.js';
import { UsageError } from './errors.js';

describe('dvdcli argv', () => {
  it('parses the exact argv the Mesos docker/volume isolator builds', () => {
    const a = parseArgs(['mount', '--volumedriver=rexray', '--volumename=volume2', '--volumeopts=size=5', '--volumeopts=iops=150']);
    expect(a).toEqual({ command: 'mount', help: false, volumeDriver: 'rexray', volumeName: 'volume2', volumeOpts: { size: '5', iops: '150' }, explicitCreate: false });
  });

  it('accepts persistent flags before the subcommand and space-separated values', () => {
    const a = parseArgs(['--volumedriver', 'berth', '--volumename', 'v1', 'unmount']);
    expect(a.command).toBe('unmount');
    expect(a.volumeDriver).toBe('berth');
    expect(a.volumeName).toBe('v1');
  });

  it('splits --volumeopts on commas, keeps everything after the first =, last key wins', () => {
    const opts: Record<string, string> = {};
    addVolumeOpts(opts, 'a=1,b=x=y');
    addVolumeOpts(opts, 'a=2');
    expect(opts).toEqual({ a: '2', b: 'x=y' });
  });

  it('keeps a key "__proto__" as an option (sent on, for the plugin to refuse by name)', () => {
    const a = parseArgs(['create', '--volumename=v', '--volumeopts=__proto__=x,size=1GiB']);
    expect(Object.keys(a.volumeOpts)).toEqual(['__proto__', 'size']);
    expect(JSON.stringify(a.volumeOpts)).toBe('{"__proto__":"x","size":"1GiB"}');
  });

  it('rejects an option without = with a clear UsageError (dvdcli panics)', () => {
    expect(() => parseArgs(['mount', '--volumedriver=x', '--volumename=v', '--volumeopts=justkey'])).toThrow(UsageError);
    expect(() => parseArgs(['mount', '--volumeopts=justkey'])).toThrow(/invalid --volumeopts element "justkey": expected key=value/);
    expect(() => parseArgs(['create', '--volumeopts==v'])).toThrow(/key is empty/);
  });

  it('accepts --explicitcreate and the camelCase --explicitCreate=true mesos-module-dvdi sends', () => {
    expect(parseArgs(['mount', '--explicitcreate']).explicitCreate).toBe(true);
    expect(parseArgs(['mount', '--explicitCreate=true']).explicitCreate).toBe(true);
    expect(parseArgs(['mount', '--explicitcreate=false']).explicitCreate).toBe(false);
    expect(() => parseArgs(['mount', '--explicitcreate=maybe'])).toThrow(/expected true or false/);
  });

  it('refuses subcommand-local flags on other subcommands, unknown flags and commands', () => {
    expect(() => parseArgs(['unmount', '--volumeopts=a=b'])).toThrow(/unknown flag: --volumeopts/);
    expect(() => parseArgs(['create', '--explicitcreate'])).toThrow(/unknown flag: --explicitcreate/);
    expect(() => parseArgs(['mount', '--volumeDriver=x'])).toThrow(/unknown flag: --volumeDriver/);
    expect(() => parseArgs(['frobnicate'])).toThrow(/unknown command "frobnicate"/);
    expect(() => parseArgs(['mount', '--volumename'])).toThrow(/flag needs an argument/);
  });

  it('no subcommand or --help means usage', () => {
    expect(parseArgs([]).command).toBeNull();
    expect(parseArgs(['mount', '--help']).help).toBe(true);
    expect(parseArgs(['help']).help).toBe(true);
  });
});
