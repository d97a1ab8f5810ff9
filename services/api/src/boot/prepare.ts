import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { repoRoot, type Config } from '../config.js'
import { createFirstAdmin } from '../database/accounts.js'
import { generateToken, hashToken, tokenDisplayPrefix } from '../tokens.js'
import { EMBEDDED_DATABASE, embeddedUrl, startEmbeddedPostgres } from './embedded.js'
import { migrate, MigrationError, migrationState, type MigrationOutcome } from './migrate.js'

const MOCK_DATA = path.join(repoRoot, 'postgres_scripts', 'mock_data.sql')

/** The admin account made on this start, and how its token came to be. */
export interface FirstAdmin {
  token: string
  source: 'BOOTSTRAP_ADMIN_TOKEN' | 'development' | 'generated'
}

export interface PreparedDatabase {
  url: string
  /** True when this process started the embedded server (and stop() stops it). */
  embedded: boolean
  migration: MigrationOutcome
  /** True when the mock data went into a database this start created. */
  seeded: boolean
  /** Set when this start created the first account. */
  firstAdmin: FirstAdmin | undefined
  stop: () => Promise<void>
}

export interface PrepareOptions {
  /** Create the `admin` account when there is no account yet (the server does; the token CLI does not). */
  firstAdmin?: boolean
  /** The token CLI: use an embedded server that is already running (the API's) instead of starting one. */
  reuseRunningEmbedded?: boolean
  /** Throwaway test clusters: skip fsync and friends. */
  fast?: boolean
  /** Progress worth a line while the user waits (creating a cluster takes a while). */
  onProgress?: (message: string) => void
}

/** Whether a PostgreSQL already answers at `url`. */
async function answers (url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => undefined)
  }
}

async function connectDatabase (config: Config, options: PrepareOptions): Promise<{ url: string, embedded: boolean, stop: () => Promise<void> }> {
  if (config.databaseUrl) return { url: config.databaseUrl, embedded: false, stop: async () => undefined }
  const running = embeddedUrl(config.embeddedPort)
  if (options.reuseRunningEmbedded && await answers(running)) return { url: running, embedded: false, stop: async () => undefined }
  options.onProgress?.(`starting the embedded PostgreSQL in ${config.embeddedDataDir} (the first start creates the cluster: about 20 s)`)
  const server = await startEmbeddedPostgres({
    dataDir: config.embeddedDataDir, port: config.embeddedPort, database: EMBEDDED_DATABASE, fast: options.fast
  })
  return { url: server.url, embedded: true, stop: server.stop }
}

/**
 * The one start sequence of the server, the token CLI and the tests: the database
 * (DATABASE_URL's, or the embedded one), its schema brought to this build's version
 * (or, with MIGRATE_ON_START=false, checked to be there already), the mock data on a
 * database this start created (when configured), and the first admin account.
 */
export async function prepareDatabase (config: Config, options: PrepareOptions = {}): Promise<PreparedDatabase> {
  const database = await connectDatabase(config, options)
  const client = new pg.Client({ connectionString: database.url })
  try {
    await client.connect()
    const migration = config.migrateOnStart ? await migrate(client) : await requireMigrated(client)
    const seeded = migration.current === 0 && config.seedMockData
    if (seeded) await client.query(await fs.readFile(MOCK_DATA, 'utf8'))
    const firstAdmin = options.firstAdmin ? await ensureFirstAdmin(client, config) : undefined
    return { ...database, migration, seeded, firstAdmin }
  } catch (error) {
    await database.stop().catch(() => undefined)
    throw error
  } finally {
    await client.end().catch(() => undefined)
  }
}

async function requireMigrated (client: pg.ClientBase): Promise<MigrationOutcome> {
  const state = await migrationState(client)
  if (state.current < state.latest) {
    throw new MigrationError(`the database is at schema version ${state.current} and this build needs ${state.latest}, ` +
      'and MIGRATE_ON_START is false: run the migrations first (npm run migrate, or node services/api/dist/cli/migrate.js in the image)')
  }
  return { ...state, applied: [] }
}

/**
 * A way in on a new database: when there is no account at all, create `admin` with
 * BOOTSTRAP_ADMIN_TOKEN, the development token (embedded database outside production
 * only), or a fresh token. Replicas starting together create it once (see createFirstAdmin).
 */
async function ensureFirstAdmin (client: pg.ClientBase, config: Config): Promise<FirstAdmin | undefined> {
  const given = config.bootstrapAdminToken
  const token = given?.token ?? generateToken()
  const created = await createFirstAdmin(client, { hash: hashToken(token), prefix: tokenDisplayPrefix(token) })
  if (!created) return undefined
  return { token, source: given?.source ?? 'generated' }
}
