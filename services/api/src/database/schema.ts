import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { repoRoot } from '../config.js'

const SCRIPTS = path.join(repoRoot, 'postgres_scripts')

// Any number will do as long as every invsys process uses the same one.
const SCHEMA_LOCK = 7426511

export type SchemaOutcome = 'created' | 'upgraded' | 'kept'

const HAS_SCHEMA = `
  SELECT to_regclass('public.allocation') IS NOT NULL
      OR to_regclass('public.resource') IS NOT NULL
      OR to_regclass('public.site') IS NOT NULL AS present`

// Databases made before accounts existed have the tables above but not this one.
const HAS_ACCOUNTS = `SELECT to_regclass('public.account') IS NOT NULL AS present`

export async function runScript (client: pg.ClientBase, name: 'create_tables.sql' | 'mock_data.sql' | 'upgrade_accounts.sql'): Promise<void> {
  await client.query(await fs.readFile(path.join(SCRIPTS, name), 'utf8'))
}

/**
 * Creates the schema (and, when asked, the mock data) in a database that has none of
 * it; a database that has invsys tables keeps them, and only gains what was added
 * since it was made (upgrade_accounts.sql: new tables and columns, nothing dropped).
 * An advisory lock makes replicas that boot together take turns, so only one creates.
 */
export async function ensureSchema (connectionString: string, options: { seed: boolean }): Promise<SchemaOutcome> {
  const client = new pg.Client({ connectionString })
  await client.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK])
    const { rows } = await client.query<{ present: boolean }>(HAS_SCHEMA)
    if (rows[0]?.present) {
      const accounts = await client.query<{ present: boolean }>(HAS_ACCOUNTS)
      if (accounts.rows[0]?.present) return 'kept'
      await runScript(client, 'upgrade_accounts.sql')
      return 'upgraded'
    }
    await runScript(client, 'create_tables.sql')
    if (options.seed) await runScript(client, 'mock_data.sql')
    return 'created'
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]).catch(() => undefined)
    await client.end()
  }
}
