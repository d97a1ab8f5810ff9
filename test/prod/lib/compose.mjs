// `docker-compose config` of the project's compose files (Debian's
// docker-compose 1.29: parses and validates, no Docker engine needed), as JSON.
//
// It runs in a throw-away project directory that links to the repository's
// files but holds .env.prod and .env.prod.db made from the tracked *.example
// files, as an operator makes them (the real ones are never in git, and a
// developer's own copies must not decide the test).
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './paths.mjs'

export const OPERATOR_FILES = ['.env.prod', '.env.prod.db']

function projectFromExamples () {
  const dir = mkdtempSync(join(tmpdir(), 'invsys-compose-'))
  for (const name of readdirSync(ROOT)) {
    if (!OPERATOR_FILES.includes(name)) symlinkSync(join(ROOT, name), join(dir, name))
  }
  for (const name of OPERATOR_FILES) {
    if (existsSync(join(ROOT, `${name}.example`))) copyFileSync(join(ROOT, `${name}.example`), join(dir, name))
  }
  return dir
}

export function composeConfig (file) {
  const cwd = projectFromExamples()
  try {
    const r = spawnSync('docker-compose', ['-f', file, 'config'], { cwd, encoding: 'utf8', timeout: 60_000 })
    if (r.status !== 0) return { error: `${r.stderr}${r.stdout}` }
    // docker-compose prints YAML; Debian's docker-compose depends on python3-yaml.
    const p = spawnSync('/usr/bin/python3', ['-c', 'import sys,json,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], {
      input: r.stdout,
      encoding: 'utf8',
    })
    if (p.status !== 0) return { error: p.stderr, yaml: r.stdout }
    // Paths into the throw-away directory are paths into the repository (it links to it).
    return { config: JSON.parse(p.stdout.replaceAll(cwd, ROOT)), warnings: r.stderr }
  } finally {
    rmSync(cwd, { recursive: true, force: true })
  }
}
