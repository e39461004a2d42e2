/**
 * Group names to gids, from /etc/group (read, no process: config loading is synchronous).
 * Groups that only a directory service knows (LDAP, sssd) are not in the file: the
 * operator gives those by numeric gid.
 */
import { readFileSync } from 'node:fs';

export const GROUP_FILE = '/etc/group';

/** Pure parser: the gid of `name` in group(5) text, null when no line names it. */
export function parseGroupId(text: string, name: string): number | null {
  for (const line of text.split('\n')) {
    const [n, , gid] = line.split(':');
    if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return null;
}

/**
 * @example lookupGroupId('adm') // 4 on Debian
 */
export function lookupGroupId(name: string, file = GROUP_FILE): number | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  return parseGroupId(text, name);
}
