// The highly available topology of docker-compose.ha.yml rebuilt on 127.0.0.1 from
// Debian's packages and the repository's own configuration (postgres_scripts/ha/): one
// etcd (v2 API), three Patroni nodes with PostgreSQL 15 and synchronous replication,
// HAProxy with a primary port and a replicas port, and the API built as in production.
// As root every daemon runs as an unprivileged user of its own (PostgreSQL refuses root,
// and Patroni as root fails to bootstrap and leaves a stale member key in etcd).
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import pg from 'pg'
import { freePort, request, waitFor } from '../../prod/lib/http.mjs'
import { ROOT } from '../../prod/lib/paths.mjs'
import { Processes, sleep } from '../../prod/lib/procs.mjs'

export { sleep, waitFor }

const isRoot = process.getuid?.() === 0
const HA = join(ROOT, 'postgres_scripts', 'ha')

/** An unprivileged system user (made when missing) as { uid, gid }; the current user when not root. */
function user (name) {
  if (!isRoot) return {}
  if (spawnSync('id', ['-u', name], { stdio: 'ignore' }).status !== 0) {
    execFileSync('useradd', ['--system', '--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', name])
  }
  const id = (flag) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim())
  return { uid: id('-u'), gid: id('-g') }
}

function own (dir, who) {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (who.uid !== undefined) chownSync(dir, who.uid, who.gid)
}

export class Cluster {
  constructor ({ comment = () => {} } = {}) {
    this.comment = comment
    this.work = mkdtempSync(join(tmpdir(), 'invsys-hatest-'))
    chmodSync(this.work, 0o755)
    // Before Processes registers its own (which removes the work directory): a postgres
    // outlives its Patroni, and is found through its data directory's postmaster.pid.
    process.on('exit', () => this.killNodes())
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => this.killNodes())
    this.procs = new Processes(this.work, { comment })
    this.secrets = {
      superuser: randomBytes(12).toString('hex'),
      replication: randomBytes(12).toString('hex'),
      invsys: randomBytes(12).toString('hex')
    }
    this.adminToken = `invsys_${randomBytes(32).toString('base64url')}`
    this.nodes = []
  }

  async allocatePorts () {
    this.ports = { etcd: await freePort(), etcdPeer: await freePort(), primary: await freePort(), replicas: await freePort(), stats: await freePort(), api: await freePort() }
    for (let i = 1; i <= 3; i++) {
      this.nodes.push({ name: `pg${i}`, pgPort: await freePort(), restPort: await freePort(), user: `invsys-ha-pg${i}` })
    }
  }

  startEtcd () {
    const who = user('invsys-ha-etcd')
    const dir = join(this.work, 'etcd')
    own(dir, who)
    const peer = `http://127.0.0.1:${this.ports.etcdPeer}`
    const client = `http://127.0.0.1:${this.ports.etcd}`
    this.etcd = this.procs.start('etcd', 'etcd', [
      '--name', 'e1', '--data-dir', join(dir, 'data'), '--enable-v2=true',
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `e1=${peer}`
    ], { ...who, env: { PATH: process.env.PATH } })
    return waitFor('etcd', async () => (await request(this.ports.etcd, 'GET', '/health', { timeoutMs: 1000 })).status === 200, 20_000)
  }

  /** postgres_scripts/ha/patroni.yml, with the post_bootstrap script where this checkout has it. */
  patroniConfig () {
    const file = join(this.work, 'patroni.yml')
    const yml = readFileSync(join(HA, 'patroni.yml'), 'utf8').replace('/etc/patroni/post-bootstrap.sh', join(HA, 'post-bootstrap.sh'))
    writeFileSync(file, yml)
    chmodSync(file, 0o644)
    return file
  }

  startNode (node) {
    const who = user(node.user)
    node.dataDir = join(this.work, node.name, 'data')
    own(join(this.work, node.name), who)
    const env = {
      PATH: process.env.PATH,
      LANG: 'C.UTF-8',
      PATRONI_NAME: node.name,
      PATRONI_RESTAPI_LISTEN: `127.0.0.1:${node.restPort}`,
      PATRONI_RESTAPI_CONNECT_ADDRESS: `127.0.0.1:${node.restPort}`,
      PATRONI_POSTGRESQL_LISTEN: `127.0.0.1:${node.pgPort}`,
      PATRONI_POSTGRESQL_CONNECT_ADDRESS: `127.0.0.1:${node.pgPort}`,
      PATRONI_POSTGRESQL_DATA_DIR: node.dataDir,
      PATRONI_POSTGRESQL_PGPASS: join(this.work, node.name, 'pgpass'),
      PATRONI_ETCD_HOSTS: `127.0.0.1:${this.ports.etcd}`,
      PATRONI_SUPERUSER_PASSWORD: this.secrets.superuser,
      PATRONI_REPLICATION_PASSWORD: this.secrets.replication,
      INVSYS_DB_PASSWORD: this.secrets.invsys
    }
    this.configFile ??= this.patroniConfig()
    node.patroni = this.procs.start(node.name, 'patroni', [this.configFile], { ...who, cwd: join(this.work, node.name), env })
    return node.patroni
  }

  startHaproxy () {
    const who = user('invsys-ha-proxy')
    const env = {
      HAPROXY_BIND: '127.0.0.1',
      HAPROXY_PRIMARY_PORT: String(this.ports.primary),
      HAPROXY_REPLICA_PORT: String(this.ports.replicas),
      HAPROXY_STATS_PORT: String(this.ports.stats)
    }
    this.nodes.forEach((node, i) => {
      env[`PG${i + 1}_ADDR`] = `127.0.0.1:${node.pgPort}`
      env[`PG${i + 1}_REST_PORT`] = String(node.restPort)
    })
    this.haproxy = this.procs.start('haproxy', existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy', ['-db', '-f', join(HA, 'haproxy.cfg')], { ...who, env })
  }

  /** The API as in production: the build's server.js, NODE_ENV=production, the primary and replica ports of HAProxy. */
  startApi () {
    const who = user('invsys-ha-api')
    this.api = this.procs.start('api', process.execPath, [join(ROOT, 'services/api/dist/server.js')], {
      ...who,
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: String(this.ports.api),
        DATABASE_URL: this.url('primary'),
        DATABASE_READ_URL: this.url('replicas'),
        BOOTSTRAP_ADMIN_TOKEN: this.adminToken,
        // Failovers, not load, are under test: a busy shared machine must not shed requests.
        MAX_EVENT_LOOP_DELAY_MS: '0',
        LOG_LEVEL: 'info'
      }
    })
    return waitFor('the API', async () => (await this.call('GET', '/health', { timeoutMs: 1000 })).status === 200, 60_000)
  }

  /** The API role's address through HAProxy's `port` ('primary' or 'replicas'), or straight to a node. */
  url (port, { superuser = false } = {}) {
    const p = typeof port === 'string' ? this.ports[port] : port.pgPort
    const who = superuser ? `postgres:${this.secrets.superuser}` : `invsys:${this.secrets.invsys}`
    return `postgres://${who}@127.0.0.1:${p}/invsys`
  }

  call (method, path, opts = {}) {
    return request(this.ports.api, method, path, { token: this.adminToken, timeoutMs: 30_000, ...opts })
  }

  /** Rows from one node (or HAProxy's port), on a connection of its own. */
  async sql (where, text, values = [], { superuser = false, timeoutMs = 5000 } = {}) {
    const client = new pg.Client({ connectionString: this.url(where, { superuser }), connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs })
    client.on('error', () => {})
    await client.connect()
    try {
      return (await client.query(text, values)).rows
    } finally {
      await client.end().catch(() => {})
    }
  }

  /** Patroni's view of the cluster, from the first node that answers. */
  async members () {
    for (const node of this.nodes) {
      if (!node.patroni || node.patroni.exited || node.frozen) continue
      const r = await request(node.restPort, 'GET', '/cluster', { timeoutMs: 1000 })
      if (r.status === 200 && r.json?.members) return r.json.members
    }
    return []
  }

  node (name) {
    return this.nodes.find((n) => n.name === name)
  }

  /** The leader, once one runs and answers on HAProxy's primary port. */
  async leader (timeoutMs = 60_000) {
    return waitFor('a leader behind HAProxy', async () => {
      const leader = (await this.members()).find((m) => m.role === 'leader' && m.state === 'running')
      if (!leader) return undefined
      const [row] = await this.sql('primary', 'SELECT NOT pg_is_in_recovery() AS primary, inet_server_port() AS port', [], { timeoutMs: 1000 })
      return row?.primary && row.port === this.node(leader.name).pgPort ? this.node(leader.name) : undefined
    }, timeoutMs, 200)
  }

  /** Every node running, one leader, the others streaming from it on its timeline (one of them synchronous). */
  async healthy (timeoutMs = 90_000) {
    return waitFor('three running members: a leader, a synchronous standby and a replica, on one timeline', async () => {
      const members = await this.members()
      const leader = members.find((m) => m.role === 'leader' && m.state === 'running')
      const standbys = members.filter((m) => ['replica', 'sync_standby'].includes(m.role) && m.state === 'running' && m.timeline === leader?.timeline)
      if (!leader || standbys.length !== 2 || !standbys.some((m) => m.role === 'sync_standby')) return undefined
      const streaming = await this.sql(this.node(leader.name), 'SELECT application_name, sync_state FROM pg_stat_replication WHERE state = \'streaming\'', [], { superuser: true, timeoutMs: 1000 })
      return streaming.length === 2 ? members : undefined
    }, timeoutMs, 500)
  }

  postmasterPid (node) {
    try {
      const pid = Number(readFileSync(join(node.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
      return Number.isInteger(pid) && pid > 0 ? pid : undefined
    } catch {
      return undefined
    }
  }

  /** Signals the node's Patroni and its PostgreSQL (each its own process group), as the death or freeze of its machine. */
  signalNode (node, signal) {
    const postmaster = this.postmasterPid(node)
    for (const group of [node.patroni?.child.pid, postmaster && processGroup(postmaster)]) {
      if (!group) continue
      try {
        process.kill(-group, signal)
      } catch { /* gone already */ }
    }
    if (signal === 'SIGKILL') node.patroni.stopping = true
  }

  async killNode (node) {
    const postmaster = this.postmasterPid(node)
    this.signalNode(node, 'SIGKILL')
    await Promise.race([node.patroni.done, sleep(5000)])
    // The machine is gone: none of its processes outlive it.
    await waitFor(`${node.name}'s postgres to be gone`, async () => postmaster === undefined || !isAlive(postmaster), 10_000, 100)
  }

  /** Patroni's clean stop: it stops PostgreSQL (a fast shutdown) and, as leader, hands over. */
  async stopPatroni (node) {
    await this.procs.stop(node.patroni, 'SIGTERM', 60_000)
  }

  freeze (node) {
    node.frozen = true
    this.signalNode(node, 'SIGSTOP')
  }

  thaw (node) {
    this.signalNode(node, 'SIGCONT')
    node.frozen = false
  }

  /** Orderly: the API, HAProxy, the Patroni nodes (each stops its PostgreSQL), etcd; then anything left is killed. */
  async cleanup () {
    for (const node of this.nodes) if (node.frozen) this.thaw(node)
    await this.procs.cleanup([
      { names: ['api', 'haproxy'], signal: 'SIGTERM', waitMs: 10_000 },
      { names: this.nodes.map((n) => n.name), signal: 'SIGTERM', waitMs: 20_000 },
      { names: ['etcd'], signal: 'SIGTERM', waitMs: 5000 }
    ])
    // A postgres whose Patroni died by SIGKILL has no parent to stop it.
    for (const node of this.nodes) {
      const pid = node.dataDir && this.postmasterPid(node)
      if (pid && isAlive(pid)) {
        try { process.kill(-processGroup(pid), 'SIGKILL') } catch { /* gone */ }
      }
    }
  }

  /** Every node's Patroni and PostgreSQL, killed at once (thawed first, so that SIGKILL is not left pending). */
  killNodes () {
    for (const node of this.nodes) {
      const postmaster = node.dataDir && this.postmasterPid(node)
      for (const group of [node.patroni?.exited ? undefined : node.patroni?.child.pid, postmaster && processGroup(postmaster)]) {
        if (!group) continue
        try {
          process.kill(-group, 'SIGCONT')
          process.kill(-group, 'SIGKILL')
        } catch { /* gone */ }
      }
    }
  }

  cleanupSync () {
    this.killNodes()
    this.procs.cleanupSync()
  }
}

/**
 * The process group of `pid`. Patroni starts PostgreSQL from a helper process that makes a
 * session (and group) of its own and exits: the postmaster and its backends stay in that
 * group, which outlives Patroni (so that PostgreSQL survives a Patroni restart).
 */
function processGroup (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
  } catch {
    return undefined
  }
}

/** Running, as opposed to gone or a zombie (a killed postgres whose parent died too waits for a reaper that may never come). */
function isAlive (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}
