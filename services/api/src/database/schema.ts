import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { repoRoot } from '../config.js'

const SCRIPTS = path.join(repoRoot, 'postgres_scripts')

// Any number will do as long as every invsys process uses the same one.
const SCHEMA_LOCK = 7426511

export type SchemaOutcome = 'created' | 'kept'

/** The version create_tables.sql writes into schema_version; the two change together. */
export const SCHEMA_VERSION = 1

/** The database holds invsys tables of another schema version than this build's. */
export class SchemaVersionError extends Error {}

const HAS_SCHEMA = `
  SELECT to_regclass('public.allocation') IS NOT NULL
      OR to_regclass('public.resource') IS NOT NULL
      OR to_regclass('public.site') IS NOT NULL AS present`

// Databases made before the version was recorded have no such table: version 0. Two
// statements, because a query naming a missing table fails before any CASE can guard it.
const HAS_VERSION = `SELECT to_regclass('public.schema_version') IS NOT NULL AS present`
const STORED_VERSION = 'SELECT version FROM schema_version'

export async function runScript (client: pg.ClientBase, name: 'create_tables.sql' | 'mock_data.sql'): Promise<void> {
  await client.query(await fs.readFile(path.join(SCRIPTS, name), 'utf8'))
}

/**
 * Creates the schema (and, when asked, the mock data) in a database that has none of
 * it; a database that has invsys tables is never changed. When those tables are of
 * another schema version, this throws SchemaVersionError instead of letting requests
 * fail one by one: there are no migrations yet, so the operator decides what to do
 * with the data. An advisory lock makes replicas that boot together take turns.
 */
export async function ensureSchema (connectionString: string, options: { seed: boolean }): Promise<SchemaOutcome> {
  const client = new pg.Client({ connectionString })
  await client.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK])
    const { rows } = await client.query<{ present: boolean }>(HAS_SCHEMA)
    if (rows[0]?.present) {
      const recorded = (await client.query<{ present: boolean }>(HAS_VERSION)).rows[0]?.present
      const stored = recorded ? (await client.query<{ version: number }>(STORED_VERSION)).rows[0]?.version ?? 0 : 0
      if (stored !== SCHEMA_VERSION) {
        throw new SchemaVersionError(`the database holds invsys schema version ${stored}, and this build needs version ${SCHEMA_VERSION}; ` +
          'nothing was changed. Back up what you need, then recreate it with postgres_scripts/create_tables.sql ' +
          '(for the embedded development database: stop the server and delete .data/)')
      }
      return 'kept'
    }
    await runScript(client, 'create_tables.sql')
    if (options.seed) await runScript(client, 'mock_data.sql')
    return 'created'
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]).catch(() => undefined)
    await client.end()
  }
}
