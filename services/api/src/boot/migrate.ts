import path from 'node:path'
import type pg from 'pg'
import Postgrator from 'postgrator'
import { repoRoot } from '../config.js'

const MIGRATIONS = path.join(repoRoot, 'postgres_scripts', 'migrations')

// Any number will do as long as every invsys process uses the same one.
const MIGRATION_LOCK = 7426511

/** postgrator's table, made here first so that it carries comments like every other table. */
const VERSION_TABLE = `
  CREATE TABLE IF NOT EXISTS schemaversion (
    version  bigint PRIMARY KEY,
    name     text,
    md5      text,
    run_at   timestamptz
  );
  COMMENT ON TABLE schemaversion IS 'One row per applied migration (postgres_scripts/migrations); the highest version is the schema''s.';
  COMMENT ON COLUMN schemaversion.version IS 'The migration''s number, from its file name.';
  COMMENT ON COLUMN schemaversion.name IS 'The migration''s name, from its file name.';
  COMMENT ON COLUMN schemaversion.md5 IS 'Checksum of the migration file as applied: a migration edited since is refused (null: not checked).';
  COMMENT ON COLUMN schemaversion.run_at IS 'When it was applied.'`

const HAS_INVSYS_TABLES = `
  SELECT to_regclass('public.allocation') IS NOT NULL
      OR to_regclass('public.resource') IS NOT NULL
      OR to_regclass('public.site') IS NOT NULL AS present`

const HAS_VERSION_TABLE = 'SELECT to_regclass(\'public.schemaversion\') IS NOT NULL AS present'

// The first release recorded its version in a one-row schema_version table instead.
// Two statements, because a query naming a missing table fails before any CASE can guard it.
const HAS_FIRST_RELEASE_TABLE = 'SELECT to_regclass(\'public.schema_version\') IS NOT NULL AS present'
const FIRST_RELEASE_VERSION = 'SELECT version FROM schema_version'

const ADOPT_FIRST_RELEASE = 'INSERT INTO schemaversion (version, name, md5, run_at) VALUES (1, $1, $2, now())'

/** A line starting a migration file that must run outside a transaction (CREATE INDEX CONCURRENTLY). */
const NO_TRANSACTION = /^-- invsys: no-transaction$/m

/** The database cannot be brought to this build's schema; nothing was changed. */
export class MigrationError extends Error {}

export interface MigrationState {
  /** The version the database is at (0: no invsys schema at all). */
  current: number
  /** The newest migration this build has. */
  latest: number
}

export interface MigrationOutcome extends MigrationState {
  /** The versions applied by this call, in order. */
  applied: number[]
}

function migrator (client: pg.ClientBase): Postgrator {
  return new Postgrator({
    migrationPattern: path.join(MIGRATIONS, '*.do.*.sql'),
    driver: 'pg',
    schemaTable: 'schemaversion',
    execQuery: (query) => client.query(query)
  })
}

async function flag (client: pg.ClientBase, sql: string): Promise<boolean> {
  return (await client.query<{ present: boolean }>(sql)).rows[0]!.present
}

/**
 * Where the database stands: its version, and the newest this build knows. A database
 * of the first release (before numbered migrations) is version 1; one with invsys
 * tables and no version at all is refused, since nothing says what it holds.
 */
async function readState (client: pg.ClientBase, postgrator: Postgrator): Promise<MigrationState & { firstRelease: boolean }> {
  const latest = await postgrator.getMaxVersion()
  if (await flag(client, HAS_VERSION_TABLE)) {
    return { current: await postgrator.getDatabaseVersion(), latest, firstRelease: false }
  }
  if (!await flag(client, HAS_INVSYS_TABLES)) return { current: 0, latest, firstRelease: false }
  const first = await flag(client, HAS_FIRST_RELEASE_TABLE)
    ? (await client.query<{ version: number }>(FIRST_RELEASE_VERSION)).rows[0]?.version
    : undefined
  if (first !== 1) {
    throw new MigrationError('the database holds invsys tables without a recorded schema version; nothing was changed. ' +
      'Back up what you need and start from an empty database')
  }
  return { current: 1, latest, firstRelease: true }
}

/** Serialises every process that migrates: replicas starting together take turns. */
async function withMigrationLock<T> (client: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK])
  try {
    return await work()
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined)
  }
}

/**
 * Applies every pending migration, each in its own transaction together with its row
 * in schemaversion (unless the file starts with "-- invsys: no-transaction"), so a
 * failure leaves the database at the last version that fully applied. A database newer
 * than this build is refused rather than "migrated" down.
 */
export async function migrate (client: pg.ClientBase): Promise<MigrationOutcome> {
  const postgrator = migrator(client)
  return withMigrationLock(client, async () => {
    const state = await readState(client, postgrator)
    refuseNewer(state)
    await client.query(VERSION_TABLE)
    if (state.firstRelease) {
      const [first] = await postgrator.getMigrations()
      await client.query(ADOPT_FIRST_RELEASE, [first!.name, first!.md5])
    }
    await validateApplied(postgrator, state.current)
    await refuseSkipped(client, postgrator, state.current)
    const pending = (await postgrator.getMigrations())
      .filter((migration) => migration.version > state.current)
      .sort((a, b) => a.version - b.version)
    const applied: number[] = []
    for (const migration of pending) {
      const transactional = !NO_TRANSACTION.test(migration.getSql())
      if (transactional) await client.query('BEGIN')
      try {
        await postgrator.migrate(String(migration.version))
        if (transactional) await client.query('COMMIT')
      } catch (error) {
        if (transactional) await client.query('ROLLBACK').catch(() => undefined)
        throw new MigrationError(`migration ${migration.version} (${migration.name}) failed, the database stays at version ${applied.at(-1) ?? state.current}: ${(error as Error).message}`)
      }
      applied.push(migration.version)
    }
    return { current: state.current, latest: state.latest, applied }
  })
}

/** Where the database stands, changing nothing (for a start that leaves migrating to the operator). */
export async function migrationState (client: pg.ClientBase): Promise<MigrationState> {
  const postgrator = migrator(client)
  const state = await readState(client, postgrator)
  refuseNewer(state)
  if (!state.firstRelease) await validateApplied(postgrator, state.current)
  return { current: state.current, latest: state.latest }
}

/** An applied migration whose file changed since is refused: the database may not hold what the file says. */
async function validateApplied (postgrator: Postgrator, current: number): Promise<void> {
  try {
    await postgrator.validateMigrations(current)
  } catch (error) {
    throw new MigrationError(`${(error as Error).message}: an applied migration file was edited; nothing was changed. ` +
      'Restore the file as released, and put the change in a new migration')
  }
}

const APPLIED_VERSIONS = 'SELECT version::int AS version FROM schemaversion'

/**
 * A migration numbered below the database's version that was never applied would be
 * skipped for good (postgrator applies only what is above the version): refuse, so
 * that it is renumbered above the released ones instead.
 */
async function refuseSkipped (client: pg.ClientBase, postgrator: Postgrator, current: number): Promise<void> {
  const applied = new Set((await client.query<{ version: number }>(APPLIED_VERSIONS)).rows.map((row) => row.version))
  const skipped = (await postgrator.getMigrations()).filter((m) => m.version <= current && !applied.has(m.version))
  if (skipped.length > 0) {
    throw new MigrationError(`migration ${skipped.map((m) => `${m.version} (${m.name})`).join(', ')} is numbered below the database's ` +
      `schema version ${current} but was never applied; nothing was changed. Give it a number above ${current}`)
  }
}

function refuseNewer ({ current, latest }: MigrationState): void {
  if (current > latest) {
    throw new MigrationError(`the database is at schema version ${current}, newer than this build knows (${latest}); ` +
      'nothing was changed: run the newer release')
  }
}
