import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { prepareDatabase, type FirstAdmin } from './boot/prepare.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { DEVELOPMENT_ADMIN_TOKEN } from './tokens.js'

/** One line, no stack: what an operator needs to fix the start. */
function fail (message: string): never {
  process.stderr.write(`invsys: ${message}\n`)
  process.exit(1)
}

/** A progress line before the app (and its logger) exists, in the log's own JSON shape. */
function progress (msg: string): void {
  process.stdout.write(`${JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg })}\n`)
}

function announceFirstAdmin (app: FastifyInstance, admin: FirstAdmin): void {
  if (admin.token === DEVELOPMENT_ADMIN_TOKEN) {
    // Also when BOOTSTRAP_ADMIN_TOKEN names it (.env.dev does): loud, in case such a file reaches a server.
    app.log.warn({ account: 'admin' }, 'created the first account, "admin", with the published development token (README, "Security model"): fine on this machine, never for a server')
  } else if (admin.source === 'BOOTSTRAP_ADMIN_TOKEN') {
    app.log.info({ account: 'admin' }, 'created the first account, "admin", with the token in BOOTSTRAP_ADMIN_TOKEN')
  } else {
    // The one place a token is ever written to the log, on purpose: nobody has a token
    // yet, and only its hash is stored, so this line is the only way to learn it.
    app.log.warn({ account: 'admin', token: admin.token }, 'created the first account, "admin"; its token (the "token" field) is shown this once and never again: store it now')
  }
}

async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`)
    throw error
  }

  const database = await prepareDatabase(config, { firstAdmin: true, onProgress: progress })
    .catch((error: Error) => fail(`cannot prepare the database: ${error.message}`))
  const app = await buildApp({ ...config, databaseUrl: database.url })
  if (config.bootstrapAdminToken?.source === 'BOOTSTRAP_ADMIN_TOKEN' && !database.firstAdmin) {
    app.log.info('accounts exist already: BOOTSTRAP_ADMIN_TOKEN is not used')
  }
  if (database.firstAdmin) announceFirstAdmin(app, database.firstAdmin)

  let closing = false
  const shutdown = async (signal: string) => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'draining requests and closing')
    // close() stops accepting, lets in-flight requests finish, then ends the pool.
    await app.close()
    await database.stop()
    process.exit(0)
  }
  process.on('SIGTERM', () => { void shutdown('SIGTERM') })
  process.on('SIGINT', () => { void shutdown('SIGINT') })

  await app.listen({ port: config.port, host: config.host })
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  const base = `http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port}`
  const { current, latest, applied } = database.migration
  app.log.info({
    api: `${base}/api`,
    docs: `${base}/docs`,
    database: database.embedded ? 'embedded' : 'DATABASE_URL',
    schema: { version: latest, was: current, applied, seeded: database.seeded }
  }, `invsys ready: API ${base}/api · docs ${base}/docs`)
  if (database.embedded) {
    app.log.info({ psql: `psql ${database.url}` }, `embedded PostgreSQL: psql ${database.url}`)
  }
}

main().catch((error: Error) => fail(error.stack ?? String(error)))
