// `docker-compose config` of the project's compose files (Debian's
// docker-compose 1.29: parses and validates, no Docker engine needed), as JSON.
import { spawnSync } from 'node:child_process';
import { ROOT } from './paths.mjs';

export function composeConfig(file, { cwd = ROOT } = {}) {
  const r = spawnSync('docker-compose', ['-f', file, 'config'], { cwd, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return { error: `${r.stderr}${r.stdout}` };
  // docker-compose prints YAML; Debian's docker-compose depends on python3-yaml.
  const p = spawnSync('/usr/bin/python3', ['-c', 'import sys,json,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], {
    input: r.stdout,
    encoding: 'utf8',
  });
  return p.status === 0 ? { config: JSON.parse(p.stdout), warnings: r.stderr } : { error: p.stderr, yaml: r.stdout };
}
