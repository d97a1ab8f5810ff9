import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { startEmbeddedPostgres } from '../src/boot/embedded.js'
import { freePort, startTestDatabase, tempDir, untapped } from './helpers.js'

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/token.ts')

interface Run { status: number | null, stdout: string, stderr: string }

/** `npm run token -- …args`, as an operator runs it (without npm's banner). */
async function token (env: Record<string, string>, ...args: string[]): Promise<Run> {
  const child = spawn(...untapped(process.execPath, ['--import', 'tsx', CLI, ...args]), {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { status, stdout, stderr }
}

const noStack = (run: Run) => !/\n\s+at /.test(run.stderr + run.stdout)

const database = await startTestDatabase(t)
const env = { DATABASE_URL: database.url }
const sql = new pg.Client({ connectionString: database.url })

t.test('with DATABASE_URL: accounts, a token printed once, a list without secrets, revocation', async (t) => {
  const account = await token(env, 'create-account', 'alice', '--role', 'admin')
  t.equal(account.status, 0, account.stderr)
  t.match(account.stdout, /created account \d+, alice \(admin\)/)
  t.equal((await token(env, 'create-account', 'bob')).status, 0, 'role defaults to member')

  const created = await token(env, 'create-token', 'ALICE', '--label', 'ci')
  t.equal(created.status, 0, created.stderr)
  t.match(created.stdout, /^invsys_[A-Za-z0-9_-]{43}\n$/, 'stdout is the token and nothing else')
  t.match(created.stderr, /for alice \(admin\), shown this once/)
  const secret = created.stdout.trim()
  await sql.connect()
  t.teardown(() => sql.end())
  const { rows } = await sql.query('SELECT t.id, t.label, a.name FROM api_token t JOIN account a ON a.id = t.account_id WHERE token_hash = $1',
    [createHash('sha256').update(secret).digest()])
  t.match(rows, [{ label: 'ci', name: 'alice' }], 'stored as its hash, for alice')

  const list = await token(env, 'list')
  t.equal(list.status, 0)
  t.match(list.stdout, /alice {2}admin/)
  t.match(list.stdout, /bob {2}member/)
  t.ok(list.stdout.includes(`${rows[0].id}  ${secret.slice(0, 11)}…  "ci"`), 'tokens listed by id, prefix and label')
  t.notOk(list.stdout.includes(secret.slice(11)), 'never the token')
  t.equal((await token(env, 'list', 'bob')).stdout.trim().split('\n').length, 1, 'one account, no tokens')

  const revoked = await token(env, 'revoke', rows[0].id)
  t.equal(revoked.status, 0)
  t.match((await sql.query('SELECT revoked_at FROM api_token WHERE id = $1', [rows[0].id])).rows[0].revoked_at, Date)
  t.equal((await token(env, 'revoke', rows[0].id)).status, 0, 'revoking twice is fine')
  t.match((await token(env, 'list', 'alice')).stdout, /revoked 20/)
})

t.test('mistakes get one line and a non-zero status, never a stack trace', async (t) => {
  const cases: Array<{ args: string[], env?: Record<string, string>, status: number, message: RegExp }> = [
    { args: [], status: 0, message: /usage: npm run token -- <command>/ },
    { args: ['frobnicate'], status: 2, message: /unknown command "frobnicate"/ },
    { args: ['create-account'], status: 2, message: /create-account takes one argument/ },
    { args: ['create-account', 'carol', '--role', 'root'], status: 2, message: /--role must be admin or member/ },
    { args: ['create-account', 'carol', '--colour', 'red'], status: 2, message: /Unknown option '--colour'/ },
    { args: ['create-account', 'Alice'], status: 1, message: /name is already used by another account/ },
    { args: ['create-account', 'no spaces'], status: 1, message: /name must start with a letter or digit/ },
    { args: ['create-token', 'nobody'], status: 1, message: /no account named "nobody"/ },
    { args: ['revoke', 'not-an-id'], status: 2, message: /the token id is a uuid/ },
    { args: ['revoke', '00000000-0000-4000-8000-000000000000'], status: 1, message: /no token with id/ },
    { args: ['list'], env: { DATABASE_URL: 'postgres://nobody:x@127.0.0.1:1/none' }, status: 1, message: /cannot reach the database/ },
    { args: ['list'], env: { DATABASE_URL: 'mysql://x' }, status: 1, message: /configuration error: DATABASE_URL must start with postgres/ }
  ]
  for (const c of cases) {
    const run = await token(c.env ?? env, ...c.args)
    const name = c.args.join(' ') || '(no command)'
    t.equal(run.status, c.status, `${name}: status`)
    t.match(run.stdout + run.stderr, c.message, `${name}: message`)
    t.ok(noStack(run), `${name}: no stack trace`)
  }
  const generated = await token({}, 'generate')
  t.match(generated.stdout, /^invsys_[A-Za-z0-9_-]{43}\n$/, 'generate needs no database')
})

t.test('without DATABASE_URL: the embedded database, started for the command or the running server\'s', async (t) => {
  const dir = await tempDir('invsys-cli-')
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const embedded = { EMBEDDED_PG_DIR: path.join(dir, 'pg'), EMBEDDED_PG_PORT: String(await freePort()) }

  const first = await token(embedded, 'create-account', 'dana')
  t.equal(first.status, 0, `started its own embedded PostgreSQL: ${first.stderr}`)
  t.equal((await token(embedded, 'list', 'dana')).status, 0, 'and stopped it: a second command can start it again')

  // As when the server runs: the cluster is up, and the command must use it, not start another.
  const running = await startEmbeddedPostgres({ dataDir: embedded.EMBEDDED_PG_DIR, port: Number(embedded.EMBEDDED_PG_PORT), database: 'invsys' })
  t.teardown(() => running.stop())
  const second = await token(embedded, 'create-token', 'dana')
  t.equal(second.status, 0, second.stderr)
  const client = new pg.Client({ connectionString: running.url })
  await client.connect()
  const { rows } = await client.query("SELECT count(*)::int AS n FROM api_token t JOIN account a ON a.id = t.account_id WHERE a.name = 'dana'")
  await client.end()
  t.equal(rows[0].n, 1, 'the token is in the running cluster')
})
