// The production files checked without running them: both compose files
// through docker-compose config (Debian's docker-compose, no Docker engine
// needed), .dockerignore, and nginx -t on nginx/ as it is and on this
// machine's copy. Runs beside topology.test.mjs (npm run test:prod).
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import process from 'node:process'
import t from 'tap'
import { composeConfig, OPERATOR_FILES } from './lib/compose.mjs'
import { loadDockerignore } from './lib/dockerfile-replay.mjs'
import { findDirectives, listenPort } from './lib/nginx-conf.mjs'
import {
  knowsUpstreamResolve, NGINX_DIR, nginxFiles, nginxTest, nginxVersion, selfSignedCertificate, unexpectedChange, writeLocalNginx, writeNginxAsIs,
} from './lib/nginx.mjs'
import { ROOT } from './lib/paths.mjs'
import { nginxBinary } from './lib/tools.mjs'

const work = mkdtempSync(join(tmpdir(), 'invsys-prodstatic-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

t.test('docker-compose.yml (development)', async (t) => {
  const dev = composeConfig('docker-compose.yml')
  if (!t.ok(!dev.error, 'docker-compose -f docker-compose.yml config', { reason: dev.error })) return
  const s = dev.config.services ?? {}
  const db = s.db ?? {}
  const api = s.api ?? {}
  t.ok(/^postgres:(1[6-9]|[2-9]\d)/.test(db.image ?? '') && !db.ports, 'dev: db is postgres >= 16, not published', { db })
  t.ok(
    (db.volumes ?? []).some((v) => String(v).includes(':/var/postgres_scripts')) &&
      (db.volumes ?? []).some((v) => String(v).includes(':/docker-entrypoint-initdb.d/')) &&
      (db.volumes ?? []).some((v) => /^[\w-]+:\/var\/lib\/postgresql\/data/.test(String(v))),
    'dev: db mounts postgres_scripts at /var/postgres_scripts, initdb scripts, named data volume',
    { volumes: db.volumes }
  )
  t.ok(Boolean(db.healthcheck?.test), 'dev: db has a healthcheck', { healthcheck: db.healthcheck })
  t.ok(
    api.depends_on?.db?.condition === 'service_healthy' &&
      JSON.stringify(api.ports ?? []).includes('3000') &&
      (api.volumes ?? []).some((v) => /:\/app(:rw)?$/.test(String(v))) &&
      JSON.stringify(api.command ?? '').includes('dev'),
    'dev: api mounts the source, runs npm run dev, port 3000, waits for a healthy db',
    { api }
  )
})

t.test('docker-compose.prod.yml', async (t) => {
  const prod = composeConfig('docker-compose.prod.yml')
  if (!t.ok(!prod.error, 'docker-compose -f docker-compose.prod.yml config', { reason: prod.error })) return
  const s = prod.config.services ?? {}
  t.same(Object.keys(s).filter((n) => !s[n].profiles?.length).sort(), ['api', 'db', 'nginx'],
    'prod: services are db, api, nginx (the rest only on demand, under a profile)')
  t.ok(s.backup?.profiles?.includes('backup') && s.backup.image === s.db?.image && s.backup.environment?.DATABASE_URL !== undefined &&
    (s.backup.volumes ?? []).some((v) => /\/scripts\/backup\.sh:[^:]+:ro$/.test(String(v))) &&
    JSON.stringify(s.backup.entrypoint ?? '').includes('invsys-backup') && s.backup.depends_on?.db?.condition === 'service_healthy',
  "prod: backup (profile backup) runs scripts/backup.sh with the db's image, .env.prod's DATABASE_URL, after a healthy db", { backup: s.backup })
  t.ok(!s.db?.ports && !s.api?.ports, 'prod: neither db nor api is published to the host', { db: s.db?.ports, api: s.api?.ports })
  {
    const ports = (s.nginx?.ports ?? []).map((p) => (typeof p === 'string' ? p.replace(/\/tcp$/, '') : `${p.host_ip ? `${p.host_ip}:` : ''}${p.published}:${p.target}`))
    t.ok(ports.includes('80:80') && ports.includes('443:443') && ports.includes('127.0.0.1:1337:1337') && ports.length === 3,
      'prod: nginx is published on 80 and 443, and the plain port 1337 on the host\'s loopback only', { ports })
  }
  t.ok((s.api?.deploy?.replicas ?? s.api?.scale ?? 1) >= 2, 'prod: api runs at least 2 replicas', { deploy: s.api?.deploy })
  t.ok(Boolean(s.api?.build) && Boolean(s.api?.restart) && s.api?.depends_on?.db?.condition === 'service_healthy',
    'prod: api is built from the Dockerfile, has a restart policy, waits for a healthy db', { api: s.api })
  t.ok(Boolean(s.db?.healthcheck?.test) && (s.db?.volumes ?? []).some((v) => String(v).includes(':/var/lib/postgresql/data')),
    'prod: db has a healthcheck and a data volume', { db: s.db })
  t.ok(s.nginx?.depends_on?.api !== undefined, 'prod: nginx depends on api', { depends_on: s.nginx?.depends_on })
  t.ok(s.db?.environment?.POSTGRES_PASSWORD !== undefined && s.api?.environment?.DATABASE_URL !== undefined,
    'prod: db and api get their settings from .env.prod.db and .env.prod (here: made from the *.example files)')
  {
    // The embedded server's malloc settings, as services/api/src/boot/embedded.ts writes them.
    const embedded = readFileSync(join(ROOT, 'services/api/src/boot/embedded.ts'), 'utf8')
    const malloc = Object.fromEntries([...(embedded.match(/POSTGRES_MALLOC_ENV = \{([^}]*)\}/)?.[1] ?? '').matchAll(/(\w+): '(\d+)'/g)]
      .map(([, name, value]) => [name, value]))
    const db = Object.fromEntries(Object.entries(s.db?.environment ?? {}).filter(([name]) => name.startsWith('MALLOC_')))
    t.ok(Object.keys(malloc).length > 0, 'embedded.ts names its malloc settings (POSTGRES_MALLOC_ENV)')
    t.same(db, malloc, "prod: db runs with the embedded server's malloc settings (POSTGRES_MALLOC_ENV)")
  }

  const names = Object.keys(s)
  const noRotation = names.filter((n) => !(s[n].logging?.driver === 'json-file' && s[n].logging.options?.['max-size'] && s[n].logging.options?.['max-file']))
  t.same(noRotation, [], 'prod: every container logs with json-file, rotated (max-size, max-file)')
  const noLimits = names.filter((n) => !(s[n].deploy?.resources?.limits?.cpus && s[n].deploy.resources.limits.memory))
  t.same(noLimits, [], 'prod: every container has CPU and memory limits (deploy.resources.limits)')
  if (/deploy sub-keys are not supported/.test(prod.warnings ?? '')) t.fail('docker-compose ignores some deploy keys', { warnings: prod.warnings })

  // nginx: its healthcheck asks nginx itself, and every file nginx/ refers to is mounted.
  {
    const test = (s.nginx?.healthcheck?.test ?? []).join(' ')
    const url = test.match(/http:\/\/127\.0\.0\.1:(\d+)(\/\S*)/)
    const main = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8')
    const server = findDirectives(main, 'server', 'http').find((d) => d.children?.some((c) => c.name === 'listen' && listenPort(c.args[0]) === Number(url?.[1])))
    const loc = server?.children?.find((c) => c.name === 'location' && c.args[0] === '=' && c.args[1] === url?.[2])
    t.ok(url && loc?.children?.some((c) => c.name === 'return' && c.args[0] === '200'),
      `prod: nginx has a healthcheck on a location nginx answers itself (${url?.[0]})`, { test })
    const mounts = (s.nginx?.volumes ?? []).map((v) => String(v).split(':')).filter(([, , mode]) => mode === 'ro').map(([, target]) => target)
    const referenced = []
    for (const rel of nginxFiles()) {
      const text = readFileSync(join(NGINX_DIR, rel), 'utf8')
      for (const d of [...findDirectives(text, 'include'), ...findDirectives(text, 'ssl_certificate'), ...findDirectives(text, 'ssl_certificate_key')]) {
        referenced.push(d.args[0].startsWith('/') ? d.args[0] : `/etc/nginx/${d.args[0]}`)
      }
    }
    const unmounted = ['/etc/nginx/nginx.conf', ...referenced].filter((p) => !mounts.some((m) => p === m || p.startsWith(`${m}/`)))
    t.same(unmounted, [], `prod: everything nginx/ includes or reads is mounted read-only (${mounts.join(', ')})`)
  }
})

t.test('settings files', async (t) => {
  const git = (...args) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' })
  if (git('rev-parse', '--is-inside-work-tree').status !== 0) {
    t.skip('not a git work tree: which files are tracked cannot be checked')
    return
  }
  const tracked = git('ls-files', '--', '.env.prod', '.env.prod.db', '.env.prod.example', '.env.prod.db.example').stdout.split('\n').filter(Boolean).sort()
  t.same(tracked, ['.env.prod.db.example', '.env.prod.example'], 'only the *.example settings are in git, not .env.prod and .env.prod.db')
  const ignored = OPERATOR_FILES.filter((f) => git('check-ignore', '-q', '--no-index', f).status === 0)
  t.same(ignored, OPERATOR_FILES, '.env.prod and .env.prod.db are git-ignored')
  const placeholders = ['.env.prod.example', '.env.prod.db.example'].filter((f) => readFileSync(join(ROOT, f), 'utf8').includes('CHANGE_ME'))
  t.equal(placeholders.length, 2, 'both examples carry a CHANGE_ME placeholder password, never a usable one')
})

t.test('.dockerignore', async (t) => {
  const ignored = loadDockerignore(ROOT)
  const leaks = ['.env.prod', '.env.prod.db', '.env.prod.example', '.env.dev', '.env', 'node_modules', '.git'].filter((f) => !ignored(f))
  t.same(leaks, [], '.dockerignore keeps .env files, node_modules and .git out of the build context')
})

t.test('nginx/', async (t) => {
  const { text: versionText, version } = nginxVersion()
  const dropResolve = !knowsUpstreamResolve(version)
  t.comment(versionText)
  {
    // The files as they are: "api" has to resolve, so nginx -t runs with an
    // /etc/hosts of its own in a private mount namespace (needs root and unshare).
    // An nginx before 1.27.3 (Debian 12 has 1.22) does not know "resolve" in an
    // upstream: then that one parameter is left out.
    const hosts = join(work, 'hosts')
    writeFileSync(hosts, '127.0.0.1 localhost\n127.0.0.1 api\n')
    const conf = writeNginxAsIs(join(work, 'as-is'), { dropResolve })
    const r = spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind "$1" /etc/hosts && exec "$2" -t -q -c "$3"', 'sh',
      hosts, nginxBinary(), conf], { encoding: 'utf8', timeout: 30_000 })
    if (r.error || (/unshare failed|mount:|Operation not permitted/.test(r.stderr ?? '') && r.status !== 0)) {
      t.skip(`nginx -t on nginx/ as it is: no private mount namespace here (${r.error?.message ?? r.stderr.trim()})`)
    } else {
      t.equal(r.status, 0, `nginx -t accepts nginx/ as it is, without a certificate (api resolving to 127.0.0.1${
        dropResolve ? '; "resolve" left out for this nginx' : ''})`, { stderr: r.stderr })
    }
  }
  {
    const main = readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8')
    const resolver = findDirectives(main, 'resolver', 'http')[0]
    const servers = findDirectives(main, 'server', 'upstream')
    const zone = findDirectives(main, 'zone', 'upstream')
    t.ok(resolver?.args[0] === '127.0.0.11' && resolver.args.some((a) => /^valid=\d+s$/.test(a)) &&
      servers.length === 1 && servers[0].args[0] === 'api:3000' && servers[0].args.includes('resolve') && zone.length === 1,
    "the upstream re-resolves api through Docker's DNS (resolver 127.0.0.11 valid=…, server api:3000 resolve, a zone)",
    { resolver: resolver?.args, servers: servers.map((d) => d.args), zone: zone.map((d) => d.args) })
  }
  {
    // Every error nginx makes itself has a JSON body in the API's shape.
    const errors = readFileSync(join(NGINX_DIR, 'invsys/errors.conf'), 'utf8')
    const pages = findDirectives(errors, 'error_page')
    const handled = pages.flatMap((d) => d.args.filter((a) => /^\d{3}$/.test(a)).map(Number))
    const bodies = []
    const bad = []
    for (const page of pages) {
      const uri = page.args.at(-1)
      const loc = findDirectives(errors, 'location').find((l) => l.args[0] === '=' && l.args[1] === uri)
      const ret = loc?.children?.find((d) => d.name === 'return')
      let json
      try {
        json = JSON.parse(ret?.args[1].replace(/\\n$/, ''))
      } catch {
        json = undefined
      }
      const status = Number(ret?.args[0])
      const internal = loc?.children?.some((d) => d.name === 'internal')
      if (!internal || !json || json.statusCode !== status || ![json.code, json.error, json.message].every((x) => typeof x === 'string')) {
        bad.push({ error_page: page.args, location: loc?.args, return: ret?.args })
      } else bodies.push(status)
    }
    t.ok([400, 404, 413, 414, 429, 494, 500, 502, 503, 504].every((c) => handled.includes(c)) && bad.length === 0,
      `nginx's own errors (${handled.join(', ')}) have internal locations answering JSON {statusCode, code, error, message}`, { bad })
  }
  {
    // This machine's copy, as the topology test runs it; first as an operator
    // without a certificate has it (no conf.d/tls.conf), then with HTTPS enabled.
    const plainDir = join(work, 'plain')
    const plain = writeLocalNginx(plainDir, {
      ports: { 1337: 18080 },
      upstreams: { invsys_api: ['127.0.0.1:18081', '127.0.0.1:18082'] },
      dropResolve,
    })
    const r1 = nginxTest(plain.conf, { prefix: plainDir })
    t.ok(r1.ok, 'nginx -t accepts the test copy without a certificate: nginx starts with the plain port only', { output: r1.output })

    const tlsDir = join(work, 'tls')
    const local = writeLocalNginx(tlsDir, {
      ports: { 1337: 18080, 80: 18083, 443: 18084 },
      upstreams: { invsys_api: ['127.0.0.1:18081', '127.0.0.1:18082'] },
      dropResolve,
      tls: selfSignedCertificate(join(tlsDir, 'tls')),
      enable: ['conf.d/tls.conf.example'],
    })
    const changed = local.files.map((f) => ({ file: f.rel, change: unexpectedChange(f) })).filter((x) => x.change)
    t.same(changed, [], 'the test copy changes only pid, logs, listen, the upstream\'s servers and certificate paths (found by directive name)')
    const r2 = nginxTest(local.conf, { prefix: tlsDir })
    t.ok(r2.ok, 'nginx -t accepts the test copy with HTTPS enabled (conf.d/tls.conf, a self-signed certificate)', { output: r2.output })
  }
})

t.test('base images', async (t) => {
  const refs = [
    ...['docker-compose.yml', 'docker-compose.prod.yml'].flatMap((f) =>
      [...readFileSync(join(ROOT, f), 'utf8').matchAll(/^\s*image:\s*"?([^"\s#]+)/gm)].map((m) => m[1])),
    ...[...readFileSync(join(ROOT, 'services/api/Dockerfile'), 'utf8').matchAll(/^ARG\s+\w*IMAGE=(\S+)/gm)].map((m) => m[1]),
  ].filter((r, i, all) => !r.startsWith('invsys-') && all.indexOf(r) === i)
  const malformed = refs.filter((r) => !/^[a-z0-9./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?$/.test(r))
  t.same(malformed, [], `base images are name:tag, optionally @sha256:<64 hex> (${refs.join(', ')})`)
  const unpinned = refs.filter((r) => !r.includes('@sha256:'))
  // No registry is reachable where this runs, so the pins are made elsewhere by scripts/pin-images.sh.
  t.test('base images pinned by digest', { todo: unpinned.length ? `not pinned yet: ${unpinned.join(', ')} (run scripts/pin-images.sh where the registry is reachable)` : false },
    async (t) => t.same(unpinned, [], 'every base image carries its digest'))

  // scripts/pin-images.sh, with a stand-in docker that answers made-up digests.
  const root = join(work, 'pin')
  for (const f of ['docker-compose.yml', 'docker-compose.prod.yml', 'services/api/Dockerfile']) {
    mkdirSync(dirname(join(root, f)), { recursive: true })
    copyFileSync(join(ROOT, f), join(root, f))
  }
  const fake = join(work, 'fake-docker')
  writeFileSync(fake, `#!/bin/sh
# pull -q TAG | image inspect --format F TAG
eval tag=\\\${$#}
case "$1" in
  pull) exit 0 ;;
  image) repo=\${tag%:*}; printf '%s@sha256:%s\\n' "$repo" "$(printf '%s%s' "$tag" "$SALT" | sha256sum | cut -c1-64)" ;;
  *) exit 1 ;;
esac
`, { mode: 0o755 })
  const pin = (salt) => spawnSync('bash', [join(ROOT, 'scripts/pin-images.sh'), root], { encoding: 'utf8', env: { ...process.env, DOCKER: fake, SALT: salt } })
  const digestsIn = () => ['docker-compose.yml', 'docker-compose.prod.yml', 'services/api/Dockerfile']
    .map((f) => readFileSync(join(root, f), 'utf8').match(/[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}/g) ?? []).flat()
  const first = pin('a')
  const once = digestsIn()
  const second = pin('b')
  const twice = digestsIn()
  const distinct = (list) => [...new Set(list)]
  t.ok(first.status === 0 && distinct(once).length === refs.length && refs.every((r) => once.some((d) => d.startsWith(`${r.split('@')[0]}@`))) &&
    second.status === 0 && distinct(twice).length === refs.length && twice.length === once.length && twice.every((d) => !once.includes(d)),
  'scripts/pin-images.sh pins every base image as name:tag@sha256:… and re-pins it when the tag moves (stand-in docker)',
  { first: first.stdout + first.stderr, second: second.stdout + second.stderr, once, twice })
  copyFileSync(join(ROOT, '.env.prod.example'), join(root, '.env.prod'))
  copyFileSync(join(ROOT, '.env.prod.db.example'), join(root, '.env.prod.db'))
  const pinned = spawnSync('docker-compose', ['-f', 'docker-compose.prod.yml', 'config'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  t.ok(pinned.status === 0 && /image: nginx:1\.28-alpine@sha256:[0-9a-f]{64}/.test(pinned.stdout), 'docker-compose config accepts the pinned images',
    { stderr: pinned.stderr })
})
