// The Debian tools the prod test uses, installed with apt-get when missing
// (CI runs as root on a fresh machine). Run once before the test files, by
// tap's --before (test/prod/install-tools.mjs), so that parallel test files
// never run apt-get at the same time.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import process from 'node:process'

export const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0

export const nginxBinary = () => (have('nginx') ? 'nginx' : '/usr/sbin/nginx')

/** The major version of Debian's pg_dump, and the matching server binaries (package postgresql). */
export function debianPostgres () {
  const v = spawnSync('pg_dump', ['--version'], { encoding: 'utf8' }).stdout ?? ''
  const major = Number(v.match(/\(PostgreSQL\) (\d+)/)?.[1])
  const bin = `/usr/lib/postgresql/${major}/bin`
  return { major, bin, server: existsSync(`${bin}/initdb`) && existsSync(`${bin}/pg_ctl`) }
}

// command (or test) -> Debian package
const TOOLS = [
  ['nginx', 'nginx', () => have('nginx') || existsSync('/usr/sbin/nginx')],
  ['docker-compose', 'docker-compose', () => have('docker-compose')],
  ['psql, pg_dump, pg_restore', 'postgresql-client', () => have('psql') && have('pg_dump') && have('pg_restore')],
  // The backup test's server: Debian's pg_dump refuses a newer server than itself,
  // so scripts/backup.sh is exercised against Debian's PostgreSQL of the same major.
  ['PostgreSQL server binaries (backup test)', 'postgresql', () => debianPostgres().server],
  ['openssl', 'openssl', () => have('openssl')],
  ['curl', 'curl', () => have('curl')],
  ['unshare', 'util-linux', () => have('unshare')],
]

export function missingTools () {
  return TOOLS.filter(([, , present]) => !present())
}

export function installMissing (log = () => {}) {
  const missing = missingTools()
  if (missing.length === 0) return []
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))]
  if (process.getuid?.() !== 0) throw new Error(`missing: ${missing.map(([c]) => c).join(', ')}; as root: apt-get install -y ${pkgs.join(' ')}`)
  log(`installing ${pkgs.join(' ')} (apt-get) for ${missing.map(([c]) => c).join(', ')}`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_SUSPEND: '1' }
  const lists = existsSync('/var/lib/apt/lists') ? readdirSync('/var/lib/apt/lists').filter((f) => f.endsWith('Packages') || f.includes('Packages.')) : []
  if (lists.length === 0) {
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 180_000 })
  }
  const install = () => execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], {
    stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 600_000,
  })
  try {
    install()
  } catch {
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 180_000 })
    install()
  }
  const still = missingTools()
  if (still.length) throw new Error(`still missing after apt-get: ${still.map(([c]) => c).join(', ')}`)
  return pkgs
}
