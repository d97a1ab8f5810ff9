import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { DEVELOPMENT_ADMIN_TOKEN, generateToken } from '../src/tokens.js'
import { bearer, freePort, startTestDatabase, tempDir, untapped } from './helpers.js'

const SERVER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/server.ts')

interface Running { child: ChildProcess, lines: string[], base: string, exited: Promise<number | null> }

/** Runs server.ts as `npm start` would, and resolves once it logs that it is ready. */
async function startServer (env: Record<string, string>): Promise<Running> {
  const port = await freePort()
  const child = spawn(...untapped(process.execPath, ['--import', 'tsx', SERVER]), {
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: string[] = []
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready in 60 s:\n${lines.join('\n')}`)), 60_000)
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        lines.push(line)
        if (line.includes('invsys ready')) { clearTimeout(timer); resolve() }
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}:\n${lines.join('\n')}`)) })
  })
  await ready
  return { child, lines, base: `http://127.0.0.1:${port}`, exited }
}

async function stopServer (server: Running): Promise<number | null> {
  server.child.kill('SIGTERM')
  return server.exited
}

/** fetch with a token; JSON bodies get their content type. */
function authed (token: string) {
  return (url: string, init: { method?: string, body?: unknown, headers?: Record<string, string> } = {}) => fetch(url, {
    method: init.method ?? 'GET',
    headers: { ...bearer(token), ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) })
  })
}

/** Every generated-looking token (invsys_ and 43 base64url characters) in the output. */
const generatedTokens = (lines: string[]) => lines.join('\n').match(/invsys_[A-Za-z0-9_-]{43}/g) ?? []

t.test('embedded PostgreSQL: first boot creates schema and mock data, a restart keeps what was written', async (t) => {
  const dir = await tempDir('invsys-server-')
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const env = { EMBEDDED_PG_DIR: path.join(dir, 'pg'), EMBEDDED_PG_PORT: String(await freePort()) }

  const first = await startServer(env)
  t.teardown(() => first.child.kill('SIGKILL'))
  const logged = first.lines.map((l) => { try { return JSON.parse(l) } catch { return undefined } }).filter(Boolean)
  t.ok(logged.length > 0 && logged.length === first.lines.filter((l) => l.startsWith('{')).length, 'logs are JSON lines')
  t.ok(first.lines.some((l) => l.includes('/docs')), 'prints the docs URL')
  t.ok(first.lines.some((l) => l.includes('psql postgres://')), 'prints a psql connection string')
  t.ok(first.lines.some((l) => l.includes('development token')), 'says the first admin has the development token')
  t.notOk(first.lines.some((l) => l.includes(DEVELOPMENT_ADMIN_TOKEN)), 'without printing it')
  t.equal((await fetch(`${first.base}/api/sites`)).status, 401, 'the API needs a token')
  // The README's promise: after npm start, its curl examples work with the development token.
  const dev = authed(DEVELOPMENT_ADMIN_TOKEN)
  t.match(await (await dev(`${first.base}/api/me`)).json(), { name: 'admin', role: 'admin' }, 'the development token is the admin\'s')
  const sites = await (await dev(`${first.base}/api/sites`)).json() as Array<{ name: string, contact: string }>
  t.match(sites[0], { name: 'Site 1', contact: 'John Smith' }, 'mock data is loaded on first boot')
  const created = await dev(`${first.base}/api/sites`, { method: 'POST', body: { name: 'Survives restarts' } })
  t.equal(created.status, 201)
  const request = await dev(`${first.base}/api/sites`, { headers: { 'x-request-id': 'trace-me-42' } })
  t.equal(request.status, 200)
  t.equal(await stopServer(first), 0, 'SIGTERM exits cleanly')
  t.ok(first.lines.some((l) => l.includes('"reqId":"trace-me-42"')), 'request logs carry the request id')
  t.ok(first.lines.some((l) => l.includes('"reqId":"trace-me-42"') && l.includes('"account":1')), 'and the account that made it')

  const second = await startServer(env)
  t.teardown(() => second.child.kill('SIGKILL'))
  t.notOk(second.lines.some((l) => l.includes('first account')), 'no second bootstrap')
  const names = (await (await dev(`${second.base}/api/sites?limit=1000`)).json() as Array<{ name: string }>).map((s) => s.name)
  t.ok(names.includes('Survives restarts'), 'data written before the restart is still there')
  t.equal(names.filter((n) => n === 'Site 1').length, 1, 'mock data is not loaded twice')

  // kill -9 leaves the embedded PostgreSQL running; the next start must not be locked out.
  second.child.kill('SIGKILL')
  await second.exited
  const third = await startServer(env)
  t.teardown(() => third.child.kill('SIGKILL'))
  const after = (await (await dev(`${third.base}/api/sites?limit=1000`)).json() as Array<{ name: string }>).map((s) => s.name)
  t.ok(after.includes('Survives restarts'), 'a start after kill -9 takes over the orphaned database, data intact')
  t.equal(await stopServer(third), 0)
})

t.test('DATABASE_URL: an empty database gets the schema only; a populated one is never dropped', async (t) => {
  const database = await startTestDatabase(t)
  const token = generateToken()
  const api = authed(token)
  const first = await startServer({ DATABASE_URL: database.url, BOOTSTRAP_ADMIN_TOKEN: token })
  t.teardown(() => first.child.kill('SIGKILL'))
  t.ok(first.lines.some((l) => l.includes('with the token in BOOTSTRAP_ADMIN_TOKEN')), 'the first admin gets BOOTSTRAP_ADMIN_TOKEN')
  t.equal(generatedTokens(first.lines).length, 0, 'and no token is logged')
  t.same(await (await api(`${first.base}/api/sites`)).json(), [], 'no mock data unless asked')
  await api(`${first.base}/api/sites`, { method: 'POST', body: { name: 'Keep me' } })
  t.equal(await stopServer(first), 0)

  const second = await startServer({ DATABASE_URL: database.url, SEED_MOCK_DATA: 'true', BOOTSTRAP_ADMIN_TOKEN: generateToken() })
  t.teardown(() => second.child.kill('SIGKILL'))
  t.ok(second.lines.some((l) => l.includes('BOOTSTRAP_ADMIN_TOKEN is not used')), 'a later BOOTSTRAP_ADMIN_TOKEN changes nothing, and says so')
  const names = (await (await api(`${second.base}/api/sites`)).json() as Array<{ name: string }>).map((s) => s.name)
  t.same(names, ['Keep me'], 'the populated database was left as it was')
  t.equal(await stopServer(second), 0)

  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  const { rows } = await client.query("SELECT count(*)::int AS n FROM pg_constraint WHERE conname = 'allocation_no_overlap'")
  await client.end()
  t.equal(rows[0].n, 1, 'the exclusion constraint is in place')
})

t.test('DATABASE_URL without BOOTSTRAP_ADMIN_TOKEN: the first start logs a generated admin token once; the next does not', async (t) => {
  const database = await startTestDatabase(t)
  const first = await startServer({ DATABASE_URL: database.url })
  t.teardown(() => first.child.kill('SIGKILL'))
  const printed = generatedTokens(first.lines)
  t.equal(printed.length, 1, 'exactly one token in the whole output')
  const line = first.lines.find((l) => l.includes(printed[0]!))!
  t.match(JSON.parse(line), { level: 40, account: 'admin', token: printed[0], msg: /shown this once/ }, 'a warning that names it as shown once')
  t.match(await (await authed(printed[0]!)(`${first.base}/api/me`)).json(), { name: 'admin', role: 'admin' }, 'it is the admin\'s token')
  t.equal((await authed(DEVELOPMENT_ADMIN_TOKEN)(`${first.base}/api/me`)).status, 401, 'the development token is never made with DATABASE_URL')
  t.equal(generatedTokens(first.lines).length, 1, 'using the token does not log it')
  t.equal(await stopServer(first), 0)

  const second = await startServer({ DATABASE_URL: database.url })
  t.teardown(() => second.child.kill('SIGKILL'))
  t.equal(generatedTokens(second.lines).length, 0, 'the second start prints no token')
  t.equal((await authed(printed[0]!)(`${second.base}/api/me`)).status, 200, 'the first token still works')
  t.equal(await stopServer(second), 0)
})

t.test('a bad configuration stops the process with one clear line', async (t) => {
  for (const [env, expected] of [
    [{ PORT: 'eighty' }, /PORT must be a whole number/],
    [{ DATABASE_URL: 'mysql://localhost/x' }, /DATABASE_URL must start with postgres:\/\//],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
    [{ SEED_MOCK_DATA: 'yes please' }, /SEED_MOCK_DATA must be true or false/],
    [{ BOOTSTRAP_ADMIN_TOKEN: 'hunter2-secret' }, /BOOTSTRAP_ADMIN_TOKEN must be invsys_ followed by/],
    [{ BOOTSTRAP_ADMIN_TOKEN: DEVELOPMENT_ADMIN_TOKEN, NODE_ENV: 'production' }, /must not be the published development token/],
    [{ NODE_ENV: 'production', DATABASE_URL: 'postgres://invsys:CHANGE_ME_db_password@127.0.0.1:1/invsys' }, /DATABASE_URL still has the placeholder password/]
  ] as const) {
    const child = spawn(...untapped(process.execPath, ['--import', 'tsx', SERVER]), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const code = await new Promise((resolve) => child.on('exit', resolve))
    t.equal(code, 1, `${Object.keys(env)[0]}: exit code`)
    t.match(stderr, expected)
    t.equal(stderr.trim().split('\n').length, 1, `${Object.keys(env)[0]}: one line, no stack trace`)
    if ('BOOTSTRAP_ADMIN_TOKEN' in env) t.notMatch(stderr, env.BOOTSTRAP_ADMIN_TOKEN, 'a secret is never repeated')
  }
})
