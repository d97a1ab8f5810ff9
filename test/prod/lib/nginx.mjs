// The project's nginx configuration (nginx/) on this machine: a copy with the
// directives that name the container's resources (pid, logs, listen ports,
// upstream servers, certificates) pointed at this machine's, found by directive
// name. Everything else is the file as it is.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { diffIgnoring, localNginxConfig, parseNginxVersion, rewriteNginx, versionAtLeast } from './nginx-conf.mjs'
import { ROOT } from './paths.mjs'
import { nginxBinary } from './tools.mjs'

export const NGINX_DIR = join(ROOT, 'nginx')
/** Directives the local copy may change; everything else must stay the same. */
export const LOCAL_DIRECTIVES = ['pid', 'error_log', 'access_log', 'listen', 'upstream>server', 'ssl_certificate', 'ssl_certificate_key']

export function nginxVersion () {
  const r = spawnSync(nginxBinary(), ['-v'], { encoding: 'utf8' })
  const text = `${r.stdout}${r.stderr}`.trim()
  return { text, version: parseNginxVersion(text) }
}

/** nginx >= 1.27.3 knows "server ... resolve" in an upstream; Debian 12's 1.22 does not. */
export const knowsUpstreamResolve = (version) => Boolean(version) && versionAtLeast(version, [1, 27, 3])

/** The config files under nginx/ (relative paths), the main file first. */
export function nginxFiles () {
  const out = []
  const walkDir = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name)
      if (statSync(p).isDirectory()) walkDir(p)
      else if (/\.conf(\.example)?$/.test(name)) out.push(relative(NGINX_DIR, p))
    }
  }
  walkDir(NGINX_DIR)
  return ['nginx.conf', ...out.filter((f) => f !== 'nginx.conf')]
}

/**
 * Writes this machine's copy of nginx/ into `dir`: every *.conf with
 * localNginxConfig's changes; `*.conf.example` files listed in `enable` are
 * written without ".example" (as an operator enables them). Returns
 * { conf: path of the main file, files: [{ rel, original, text, replaced }] }.
 */
export function writeLocalNginx (dir, { ports, upstreams, tls, dropResolve, enable = [] }) {
  const files = []
  for (const rel of nginxFiles()) {
    let target = rel
    if (rel.endsWith('.example')) {
      if (!enable.includes(rel)) continue
      target = rel.replace(/\.example$/, '')
    }
    const original = readFileSync(join(NGINX_DIR, rel), 'utf8')
    const { text, replaced } = localNginxConfig(original, { dir, ports, upstreams, tls, dropResolve })
    mkdirSync(dirname(join(dir, target)), { recursive: true })
    writeFileSync(join(dir, target), text)
    files.push({ rel, target, original, text, replaced })
  }
  return { conf: join(dir, 'nginx.conf'), files }
}

/**
 * nginx/ copied into `dir` as it is, except, when `dropResolve`, the "resolve"
 * parameter of upstream servers (nginx before 1.27.3 does not know it). For
 * nginx -t on the files themselves. Returns the main file's path.
 */
export function writeNginxAsIs (dir, { dropResolve }) {
  for (const rel of nginxFiles()) {
    let text = readFileSync(join(NGINX_DIR, rel), 'utf8')
    if (dropResolve) {
      text = rewriteNginx(text, (d, parents) => (d.name === 'server' && parents.at(-1)?.name === 'upstream' && d.args.includes('resolve')
        ? `server ${d.args.filter((a) => a !== 'resolve').join(' ')};`
        : undefined)).text
    }
    mkdirSync(dirname(join(dir, rel)), { recursive: true })
    writeFileSync(join(dir, rel), text)
  }
  return join(dir, 'nginx.conf')
}

/** A self-signed certificate for localhost and 127.0.0.1 (openssl), as nginx/tls/ would hold: fullchain.pem, privkey.pem. */
export function selfSignedCertificate (dir) {
  mkdirSync(dir, { recursive: true })
  const cert = join(dir, 'fullchain.pem')
  const key = join(dir, 'privkey.pem')
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
  { encoding: 'utf8', timeout: 30_000 })
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`)
  return { cert, key, ca: readFileSync(cert) }
}

/** The first difference between a file and its copy outside the local directives, or null. */
export const unexpectedChange = (file) => diffIgnoring(file.original, file.text, LOCAL_DIRECTIVES)

/** `nginx -t` on a config file; { ok, output }. */
export function nginxTest (conf, { prefix } = {}) {
  const args = ['-t', '-q', ...(prefix ? ['-p', prefix] : []), '-c', conf]
  const r = spawnSync(nginxBinary(), args, { encoding: 'utf8', timeout: 30_000 })
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() }
}
