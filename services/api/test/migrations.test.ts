import { spawnSync } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { migrate, MigrationError } from '../src/boot/migrate.js'
import { loadConfig, repoRoot } from '../src/config.js'
import { generateToken, hashToken, tokenDisplayPrefix } from '../src/tokens.js'
import { bearer, startTestDatabase, untapped } from './helpers.js'

const FIRST_RELEASE = path.join(path.dirname(new URL(import.meta.url).pathname), 'fixtures', 'first-release')

const cluster = await startTestDatabase(t)
const admin = new pg.Client({ connectionString: cluster.url })
await admin.connect()
t.teardown(() => admin.end())

/** A new empty database in the test cluster, and a client on it (closed at teardown). */
async function freshDatabase (name: string): Promise<{ url: string, client: pg.Client }> {
  await admin.query(`CREATE DATABASE ${name}`)
  const url = cluster.url.replace(/\/[^/]+$/, `/${name}`)
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(() => client.end())
  return { url, client }
}

const script = async (file: string) => fs.readFile(file, 'utf8')

/**
 * Everything psql users and the API rely on, as PostgreSQL itself prints it: columns,
 * constraints, indexes, triggers, functions, views and comments of the public schema.
 */
const CATALOG = `
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
         coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') ||
         coalesce(' identity ' || nullif(a.attidentity::text, ''), '') ||
         coalesce(' -- ' || col_description(c.oid, a.attnum), '') AS item
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'relation ' || c.relkind::text || ' ' || c.relname || coalesce(' -- ' || obj_description(c.oid, 'pg_class'), '') ||
         CASE WHEN c.relkind = 'v' THEN ' as ' || pg_get_viewdef(c.oid) ELSE '' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S')
  UNION ALL
  SELECT 'sequence ' || c.relname || ' max ' || s.seqmax FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
  WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) || coalesce(' -- ' || obj_description(p.oid, 'pg_proc'), '')
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  ORDER BY 1`

async function catalog (client: pg.Client): Promise<string[]> {
  return (await client.query<{ item: string }>(CATALOG)).rows.map((row) => row.item)
}

const migrations = (await fs.readdir(path.join(repoRoot, 'postgres_scripts', 'migrations'))).filter((f) => f.endsWith('.sql')).sort()

t.test('create_tables.sql is exactly the schema that applying every migration builds', async (t) => {
  const migrated = await freshDatabase('by_migrations')
  const outcome = await migrate(migrated.client)
  t.same(outcome.applied, migrations.map((f) => Number(f.split('.')[0])), 'an empty database gets every migration, in order')
  const created = await freshDatabase('by_create_tables')
  await created.client.query(await script(path.join(repoRoot, 'postgres_scripts', 'create_tables.sql')))
  t.same(await catalog(created.client), await catalog(migrated.client), 'the same columns, constraints, indexes, triggers, functions, views and comments')
  const recorded = (client: pg.Client) => client.query('SELECT version::int, name FROM schemaversion ORDER BY version').then((r) => r.rows)
  t.same(await recorded(created.client), await recorded(migrated.client), 'and the same migrations recorded as applied')
  t.same((await migrate(created.client)).applied, [], 'a database made by create_tables.sql has nothing left to apply')
})

t.test('create_tables.sql is what npm run schema makes from the migrations, as committed', async (t) => {
  const check = spawnSync(...untapped(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'scripts', 'schema.ts'), '--check']),
    { cwd: repoRoot, encoding: 'utf8' })
  t.equal(check.status, 0, check.stderr)
})

t.test('a database made by the first release is upgraded with every row, token, owner and blocked slot kept', async (t) => {
  const old = await freshDatabase('first_release')
  await old.client.query(await script(path.join(FIRST_RELEASE, 'create_tables.sql')))
  await old.client.query(await script(path.join(FIRST_RELEASE, 'mock_data.sql')))
  // What a first-release server would have stored: accounts with tokens, and bookings of
  // every state, written by an actor so their history names it.
  const memberToken = generateToken()
  const { rows: [member] } = await old.client.query("INSERT INTO account (name, role) VALUES ('maria', 'member') RETURNING id")
  await old.client.query('INSERT INTO api_token (account_id, token_hash, prefix, label) VALUES ($1, $2, $3, $4)',
    [member.id, hashToken(memberToken), tokenDisplayPrefix(memberToken), 'laptop'])
  const { rows: [car] } = await old.client.query("SELECT id FROM resource WHERE type = 'car' ORDER BY name LIMIT 1")
  await old.client.query('BEGIN')
  await old.client.query("SELECT set_config('invsys.actor', $1, true)", [String(member.id)])
  await old.client.query(`
    INSERT INTO allocation (resource_id, during, status, expires_at, owner_id, updated_by) VALUES
      ($1, '[2040-01-01 10:00Z, 2040-01-01 12:00Z)', 'confirmed', NULL, $2, $2),
      ($1, '[2040-01-02 10:00Z, 2040-01-02 12:00Z)', 'held', now() + interval '30 minutes', $2, $2),
      ($1, '[2040-02-01 00:00Z,)', 'confirmed', NULL, $2, $2)`, [car.id, member.id])
  await old.client.query(`
    UPDATE allocation SET status = 'cancelled', cancelled_at = now()
    WHERE resource_id = $1 AND lower(during) = '2040-01-01 10:00Z'`, [car.id])
  await old.client.query(`
    INSERT INTO allocation (resource_id, during, owner_id, updated_by)
    VALUES ($1, '[2040-01-01 10:00Z, 2040-01-01 12:00Z)', $2, $2)`, [car.id, member.id])
  await old.client.query('COMMIT')
  const tables = ['site', 'resource', 'container', 'allocation', 'allocation_event', 'account', 'api_token', 'idempotency_key']
  // Later migrations may add columns; every column the first release had keeps its values.
  const columns: Record<string, string[]> = {}
  for (const table of tables) {
    columns[table] = (await old.client.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1', [table])).rows.map((r) => r.column_name)
  }
  const snapshot = async () => {
    const rows: Record<string, string[]> = {}
    for (const table of tables) {
      rows[table] = (await old.client.query(`
        SELECT (SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(x)) WHERE key = ANY ($1))::text AS row
        FROM ${table} x`, [columns[table]])).rows.map((r) => r.row).sort()
    }
    return rows
  }
  const before = await snapshot()

  const outcome = await migrate(old.client)
  t.equal(outcome.current, 1, 'recognised as the first release')
  t.same(outcome.applied, migrations.slice(1).map((f) => Number(f.split('.')[0])), 'every later migration applied')
  t.same(await snapshot(), before, 'every row of every table is as it was')
  const { rows: [buffers] } = await old.client.query(`
    SELECT count(*)::int AS n FROM allocation WHERE buffer_before <> '0' OR buffer_after <> '0'`)
  t.equal(buffers.n, 0, 'allocations from before booking rules have no buffers')
  const reference = await freshDatabase('reference')
  await reference.client.query(await script(path.join(repoRoot, 'postgres_scripts', 'create_tables.sql')))
  t.same(await catalog(old.client), await catalog(reference.client), 'the schema is now the current one')

  const app = await buildApp({ ...loadConfig({ LOG_LEVEL: 'silent' }), databaseUrl: old.url })
  t.teardown(() => app.close())
  const me = await app.inject({ method: 'GET', url: '/api/me', headers: bearer(memberToken) })
  t.match(me.json(), { id: member.id, name: 'maria', role: 'member' }, 'an old token still authenticates its account')
  const mine = await app.inject({ method: 'GET', url: `/api/allocations?resource_id=${car.id}&status=all&from=2040-01-01T00:00:00Z`, headers: bearer(memberToken) })
  t.same(mine.json().map((a: { owner_id: number }) => a.owner_id), [member.id, member.id, member.id, member.id], 'owners kept')
  const clash = await app.inject({
    method: 'POST',
    url: `/api/resources/${car.id}/allocations`,
    headers: bearer(memberToken),
    payload: { starts_at: '2040-01-01T11:00:00Z', ends_at: '2040-01-01T13:00:00Z' }
  })
  t.equal(clash.statusCode, 409, 'a slot booked before the upgrade still blocks')
  t.equal(clash.json().conflicts.length, 1)
})

t.test('what the migrations refuse, they leave exactly as it was', async (t) => {
  const newer = await freshDatabase('newer')
  await migrate(newer.client)
  await newer.client.query("INSERT INTO schemaversion (version, name) VALUES (9999, 'from-the-future')")
  const refused = await migrate(newer.client).catch((error: unknown) => error)
  t.ok(refused instanceof MigrationError, 'a database newer than this build is refused')
  t.match(String(refused), /schema version 9999, newer than this build knows/)

  const unknown = await freshDatabase('unversioned')
  await unknown.client.query('CREATE TABLE site (id int)')
  await t.rejects(migrate(unknown.client), /invsys tables without a recorded schema version; nothing was changed/)
  t.equal((await unknown.client.query("SELECT to_regclass('public.schemaversion') AS t")).rows[0].t, null, 'nothing was created')

  const gap = await freshDatabase('gap')
  await migrate(gap.client)
  const [lowest] = migrations.slice(1)
  await gap.client.query('DELETE FROM schemaversion WHERE version = $1', [Number(lowest!.split('.')[0])])
  await t.rejects(migrate(gap.client), /numbered below the database's schema version \d+ but was never applied; nothing was changed/,
    'a migration numbered below the applied ones is refused, not skipped for good')

  const broken = await freshDatabase('broken')
  await migrate(broken.client)
  await broken.client.query("UPDATE schemaversion SET md5 = 'edited' WHERE version = 1")
  await t.rejects(migrate(broken.client), /checksum/i, 'an applied migration that was edited afterwards is refused')
})
