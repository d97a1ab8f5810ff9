import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { createFirstAdmin } from './database/accounts.js'
import { EMBEDDED_DATABASE, startEmbeddedPostgres, type EmbeddedDatabase } from './database/embedded.js'
import { ensureSchema } from './database/schema.js'
import { DEVELOPMENT_ADMIN_TOKEN, generateToken, hashToken, tokenDisplayPrefix } from './tokens.js'

/** One line, no stack: what an operator needs to fix the start. */
function fail (message: string): never {
  process.stderr.write(`invsys: ${message}\n`)
  process.exit(1)
}

/**
 * A way in on a new database: when there is no account at all, create `admin` with
 * BOOTSTRAP_ADMIN_TOKEN, the development token (embedded database only), or a fresh
 * token. Replicas starting together create it once (see createFirstAdmin).
 */
async function bootstrapFirstAdmin (app: FastifyInstance, config: Config): Promise<void> {
  const given = config.bootstrapAdminToken
  const token = given?.token ?? generateToken()
  const created = await createFirstAdmin(app.pg.pool, { hash: hashToken(token), prefix: tokenDisplayPrefix(token) })
  if (!created) {
    if (given?.source === 'BOOTSTRAP_ADMIN_TOKEN') app.log.info('accounts exist already: BOOTSTRAP_ADMIN_TOKEN is not used')
    return
  }
  if (given?.token === DEVELOPMENT_ADMIN_TOKEN) {
    // Also when BOOTSTRAP_ADMIN_TOKEN names it (.env.dev does): loud, in case such a file reaches a server.
    app.log.warn({ account: 'admin' }, 'created the first account, "admin", with the published development token (README, "Security model"): fine on this machine, never for a server')
  } else if (given?.source === 'BOOTSTRAP_ADMIN_TOKEN') {
    app.log.info({ account: 'admin' }, 'created the first account, "admin", with the token in BOOTSTRAP_ADMIN_TOKEN')
  } else {
    // The one place a token is ever written to the log, on purpose: nobody has a token
    // yet, and only its hash is stored, so this line is the only way to learn it.
    app.log.warn({ account: 'admin', token }, 'created the first account, "admin"; its token (the "token" field) is shown this once and never again: store it now')
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

  let embedded: EmbeddedDatabase | undefined
  if (!config.databaseUrl) {
    embedded = await startEmbeddedPostgres({ dataDir: config.embeddedDataDir, port: config.embeddedPort, database: EMBEDDED_DATABASE })
      .catch((error: Error) => fail(error.message))
    config = { ...config, databaseUrl: embedded.url }
  }
  const databaseUrl = config.databaseUrl!
  const schema = await ensureSchema(databaseUrl, { seed: config.seedMockData })
    .catch((error: Error) => fail(`cannot prepare the database: ${error.message}`))

  const app = await buildApp(config)
  await bootstrapFirstAdmin(app, config)
    .catch((error: Error) => fail(`cannot create the first account: ${error.message}`))
  let closing = false
  const shutdown = async (signal: string) => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'draining requests and closing')
    // close() stops accepting, lets in-flight requests finish, then ends the pool.
    await app.close()
    await embedded?.stop()
    process.exit(0)
  }
  process.on('SIGTERM', () => { void shutdown('SIGTERM') })
  process.on('SIGINT', () => { void shutdown('SIGINT') })

  await app.listen({ port: config.port, host: config.host })
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  const base = `http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port}`
  app.log.info({
    api: `${base}/api`,
    docs: `${base}/docs`,
    database: embedded ? 'embedded' : 'DATABASE_URL',
    schema
  }, `invsys ready: API ${base}/api · docs ${base}/docs`)
  if (embedded) {
    app.log.info({ psql: `psql ${embedded.url}` }, `embedded PostgreSQL: psql ${embedded.url}`)
  }
}

main().catch((error: Error) => fail(error.stack ?? String(error)))
