import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { startEmbeddedPostgres, type EmbeddedDatabase } from './database/embedded.js'
import { ensureSchema } from './database/schema.js'

/** One line, no stack: what an operator needs to fix the start. */
function fail (message: string): never {
  process.stderr.write(`invsys: ${message}\n`)
  process.exit(1)
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
    embedded = await startEmbeddedPostgres({ dataDir: config.embeddedDataDir, port: config.embeddedPort, database: 'invsys' })
      .catch((error: Error) => fail(error.message))
    config = { ...config, databaseUrl: embedded.url }
  }
  const databaseUrl = config.databaseUrl!
  const schema = await ensureSchema(databaseUrl, { seed: config.seedMockData })
    .catch((error: Error) => fail(`cannot prepare the database: ${error.message}`))

  const app = await buildApp(config)
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
