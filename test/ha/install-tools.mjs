// tap --before for the failover test (npm run test:ha): installs Debian's packages for
// the highly available cluster when missing (CI runs as root on a fresh machine).
import { execFileSync, spawnSync } from 'node:child_process'
import console from 'node:console'
import { existsSync } from 'node:fs'
import process from 'node:process'

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
// what -> Debian package
const TOOLS = [
  ['patroni', 'patroni', () => have('patroni')],
  ["Patroni's etcd (v2) client", 'python3-etcd', () => spawnSync('/usr/bin/python3', ['-c', 'import etcd'], { stdio: 'ignore' }).status === 0],
  ['etcd', 'etcd-server', () => have('etcd')],
  ['haproxy', 'haproxy', () => have('haproxy') || existsSync('/usr/sbin/haproxy')],
  ['PostgreSQL 15', 'postgresql-15', () => existsSync('/usr/lib/postgresql/15/bin/postgres')],
  ['psql (post-bootstrap.sh)', 'postgresql-client-15', () => have('psql')]
]

const missing = TOOLS.filter(([, , present]) => !present())
if (missing.length > 0) {
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))]
  if (process.getuid?.() !== 0) {
    console.error(`test:ha: missing ${missing.map(([what]) => what).join(', ')}; as root: apt-get install -y ${pkgs.join(' ')}`)
    process.exit(1)
  }
  console.log(`# installing ${pkgs.join(' ')} (apt-get)`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_SUSPEND: '1' }
  const apt = (args, timeout) => execFileSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env, timeout })
  const install = () => apt(['install', '-y', '-qq', '--no-install-recommends', ...pkgs], 600_000)
  try {
    install()
  } catch {
    apt(['update', '-qq'], 180_000)
    install()
  }
  // Debian's packages start no service here (no systemd), and none is wanted: the test
  // starts each daemon itself.
  const still = TOOLS.filter(([, , present]) => !present())
  if (still.length) {
    console.error(`test:ha: still missing after apt-get: ${still.map(([what]) => what).join(', ')}`)
    process.exit(1)
  }
}
