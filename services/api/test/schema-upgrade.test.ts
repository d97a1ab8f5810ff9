import pg from 'pg'
import t from 'tap'
import { createFirstAdmin } from '../src/database/accounts.js'
import { ensureSchema, runScript } from '../src/database/schema.js'
import { generateToken, hashToken, tokenDisplayPrefix } from '../src/tokens.js'
import { startTestDatabase } from './helpers.js'

// Everything about the public schema that a script can get wrong: columns in order,
// constraints, indexes and comments.
const CATALOG = `
  SELECT json_build_object(
    'columns', (SELECT json_agg(json_build_object('table', table_name, 'column', column_name, 'type', data_type,
                  'nullable', is_nullable, 'default', column_default, 'identity', is_identity) ORDER BY table_name, ordinal_position)
                FROM information_schema.columns WHERE table_schema = 'public'),
    'constraints', (SELECT json_agg(json_build_object('table', conrelid::regclass::text, 'name', conname, 'definition', pg_get_constraintdef(oid))
                      ORDER BY conrelid::regclass::text, conname)
                    FROM pg_constraint WHERE connamespace = 'public'::regnamespace),
    'indexes', (SELECT json_agg(json_build_object('name', indexname, 'definition', indexdef) ORDER BY indexname)
                FROM pg_indexes WHERE schemaname = 'public'),
    'comments', (SELECT json_agg(json_build_object('object', c.relname, 'column', a.attname, 'text', d.description) ORDER BY c.relname, a.attname NULLS FIRST)
                 FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
                 LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
                 WHERE c.relnamespace = 'public'::regnamespace AND d.classoid = 'pg_class'::regclass)
  ) AS catalog`

// The schema as it was before accounts: today's, less what the accounts work added.
const BEFORE_ACCOUNTS = `
  ALTER TABLE allocation DROP COLUMN owner_id, DROP COLUMN updated_by;
  DROP TABLE api_token, account;`

async function withClient<T> (url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

t.test('a database made before accounts gains them on start, keeps its rows, and ends up exactly like a new one', async (t) => {
  const database = await startTestDatabase(t)
  const fresh = database.url
  const old = fresh.replace(/\/invsys$/, '/before_accounts')
  t.equal(await ensureSchema(fresh, { seed: false }), 'created')
  await withClient(fresh, (client) => client.query('CREATE DATABASE before_accounts'))

  await withClient(old, async (client) => {
    await runScript(client, 'create_tables.sql')
    await runScript(client, 'mock_data.sql')
    await client.query(BEFORE_ACCOUNTS)
  })
  const count = (url: string) => withClient(url, async (client) =>
    (await client.query('SELECT (SELECT count(*) FROM site)::int AS sites, (SELECT count(*) FROM allocation)::int AS allocations')).rows[0])
  const rowsBefore = await count(old)

  t.equal(await ensureSchema(old, { seed: true }), 'upgraded')
  t.equal(await ensureSchema(old, { seed: true }), 'kept', 'once is enough')
  t.same(await count(old), rowsBefore, 'every row is still there, and no mock data was added')
  await withClient(old, async (client) => {
    const { rows } = await client.query('SELECT count(*)::int AS unowned FROM allocation WHERE owner_id IS NULL AND updated_by IS NULL')
    t.equal(rows[0].unowned, rowsBefore.allocations, 'old allocations have no owner: only admins change them')
    await runScript(client, 'upgrade_accounts.sql')
    t.pass('the script can run again by hand')
  })

  const catalog = (url: string) => withClient(url, async (client) => (await client.query(CATALOG)).rows[0].catalog)
  t.same(await catalog(old), await catalog(fresh), 'the same columns, constraints, indexes and comments as create_tables.sql makes')

  const token = generateToken()
  const pool = new pg.Pool({ connectionString: old })
  t.ok(await createFirstAdmin(pool, { hash: hashToken(token), prefix: tokenDisplayPrefix(token) }), 'and the first admin can be created')
  // Now, not at teardown: the database stops first there, and would kill the idle connection.
  await pool.end()
})
