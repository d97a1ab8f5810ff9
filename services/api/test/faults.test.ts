import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { postmasterPid, startEmbeddedPostgres, type EmbeddedDatabase } from '../src/boot/embedded.js'
import { prepareDatabase } from '../src/boot/prepare.js'
import { loadConfig } from '../src/config.js'
import { generateToken } from '../src/tokens.js'
import { bearer, freePort, sleep, tempDir } from './helpers.js'

/**
 * PostgreSQL stopped under the API: fast (SIGINT to the postmaster, as `pg_ctl stop`
 * does) with bookings in flight and with only idle connections, smart (SIGTERM), its
 * backends terminated, and the pool exhausted. The API is this very process, so a crash
 * ends the test run. Each case restarts PostgreSQL on the same data directory and port.
 */

const dir = await tempDir('invsys-faults-')
const dataDir = path.join(dir, 'data')
const pgPort = await freePort()
const start = () => startEmbeddedPostgres({ dataDir, port: pgPort, database: 'invsys', fast: true })
let database: EmbeddedDatabase = await start()
t.teardown(async () => {
  await database.stop()
  await fs.rm(dir, { recursive: true, force: true })
})

const adminToken = generateToken()
const config = loadConfig({
  LOG_LEVEL: 'silent',
  DATABASE_URL: database.url,
  BOOTSTRAP_ADMIN_TOKEN: adminToken,
  // Small and quick, so that the exhausted-pool case is cheap to reach and to wait out.
  PG_POOL_MAX: '4',
  PG_POOL_WAIT_MS: '1000',
  // Only the database's 503s are under test: a loaded machine must not add SERVER_BUSY ones.
  MAX_EVENT_LOOP_DELAY_MS: '0'
})
await prepareDatabase(config, { firstAdmin: true })
const app = await buildApp(config)
t.teardown(() => app.close())
await app.listen({ port: 0, host: '127.0.0.1' })
const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

/** A psql-like session of its own, outside the API's pool. */
async function session (): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: database.url })
  client.on('error', () => undefined) // it may outlive the server it talks to
  await client.connect()
  return client
}

async function sqlRows<R extends pg.QueryResultRow> (text: string, values: unknown[] = []): Promise<R[]> {
  const client = await session()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end()
  }
}

/** Sends `signal` to the postmaster and waits until it is gone (or, for a smart shutdown, only sends it). */
async function signalPostgres (signal: 'SIGINT' | 'SIGTERM', wait = true): Promise<void> {
  const pid = await postmasterPid(dataDir)
  if (pid === undefined) throw new Error('no postmaster to signal')
  process.kill(pid, signal)
  if (!wait) return
  for (let waited = 0; waited < 20_000; waited += 50) {
    if (await postmasterPid(dataDir) === undefined) return
    await sleep(50)
  }
  throw new Error(`PostgreSQL did not stop within 20 s of ${signal}`)
}

async function restartPostgres (): Promise<void> {
  database = await start()
}

interface Reply { status: number, code?: string, retryAfter: string | null, id?: string, body: unknown }

async function request (method: string, url: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: { ...bearer(adminToken), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(60_000)
  })
  const text = await res.text()
  const parsed = text === '' ? null : JSON.parse(text) as { code?: string, id?: string }
  return { status: res.status, code: parsed?.code, id: parsed?.id, retryAfter: res.headers.get('retry-after'), body: parsed }
}

/**
 * Every non-2xx is the JSON error shape, and a 503 says the database is away and when to
 * retry: DATABASE_UNAVAILABLE, or for a write whose session PostgreSQL ended while it ran
 * (it may have committed) OUTCOME_UNKNOWN; a read never hears the latter.
 */
function checkRefusal (t: { fail: (message: string) => void }, reply: Reply, where: string, write = where.startsWith('POST')): void {
  if (reply.status < 300) return
  const body = reply.body as Record<string, unknown> | null
  if (!body || typeof body.statusCode !== 'number' || typeof body.code !== 'string' || typeof body.error !== 'string' || typeof body.message !== 'string') {
    t.fail(`${where}: ${reply.status} without the JSON error shape: ${JSON.stringify(body)}`)
  }
  const codes = write ? ['DATABASE_UNAVAILABLE', 'OUTCOME_UNKNOWN'] : ['DATABASE_UNAVAILABLE']
  if (reply.status === 503 && (!codes.includes(reply.code ?? '') || reply.retryAfter === null)) {
    t.fail(`${where}: 503 without ${codes.join(' or ')} and Retry-After: ${JSON.stringify(body)}`)
  }
}

const cars: string[] = []
for (let i = 0; i < 4; i++) {
  const res = await request('POST', '/api/resources', { type: 'car', name: `fault-car-${i}` })
  cars.push(res.id!)
}

interface Booking { resource: string, starts_at: string, ends_at: string }
interface Outcome extends Reply { booking: Booking }

/** Parallel clients booking random overlapping slots of the four cars until told to stop. */
function bookingLoad (clients: number) {
  const outcomes: Outcome[] = []
  const load = { running: true }
  const client = async () => {
    while (load.running) {
      const hour = Math.floor(Math.random() * 40)
      const startsAt = Date.UTC(2035, 0, 1) + hour * 1800_000
      const booking = {
        resource: cars[Math.floor(Math.random() * cars.length)]!,
        starts_at: new Date(startsAt).toISOString(),
        ends_at: new Date(startsAt + 3600_000).toISOString()
      }
      const reply = await request('POST', `/api/resources/${booking.resource}/allocations`, { starts_at: booking.starts_at, ends_at: booking.ends_at })
      outcomes.push({ ...reply, booking })
      // Refused at once while the database is away: a short pause keeps the loop from spinning.
      if (reply.status === 503) await sleep(20)
    }
  }
  const done = Promise.all(Array.from({ length: clients }, client))
  return { outcomes, stop: async () => { load.running = false; await done } }
}

/** Polls /health and /ready until stopped. */
function probes () {
  const health: number[] = []
  const ready: Reply[] = []
  const load = { running: true }
  const done = (async () => {
    while (load.running) {
      health.push((await fetch(`${base}/health`)).status)
      ready.push(await request('GET', '/ready'))
      await sleep(25)
    }
  })()
  return { health, ready, stop: async () => { load.running = false; await done } }
}

async function until (what: string, condition: () => boolean, ms = 30_000): Promise<void> {
  for (let waited = 0; !condition(); waited += 20) {
    if (waited > ms) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

t.test('PostgreSQL stopped fast under a booking load: 503s, no crash, serving again as soon as it is back, nothing lost', async (t) => {
  const load = bookingLoad(8)
  const probe = probes()
  const count = (status: number) => load.outcomes.filter((o) => o.status === status).length

  await until('bookings before the stop', () => count(201) >= 10)
  await signalPostgres('SIGINT')
  const stoppedAt = load.outcomes.length
  await until('refusals while the database is away', () => load.outcomes.slice(stoppedAt).filter((o) => o.status === 503).length >= 20)
  await until('a /ready while the database is away', () => probe.ready.some((r) => r.status === 503))

  await restartPostgres()
  // No back-off, no circuit to reset: the very next requests find the database.
  t.equal((await request('GET', '/ready')).status, 200, '/ready is 200 at once when PostgreSQL is back')
  const after = await request('POST', '/api/resources', { type: 'car', name: 'after-the-restart' })
  t.equal(after.status, 201, 'and so is the first write')
  const restartedAt = load.outcomes.length
  await until('bookings after the restart', () => load.outcomes.slice(restartedAt).filter((o) => o.status === 201).length >= 10)
  await load.stop()
  await probe.stop()

  t.ok(app.server.listening, 'the API process is alive and listening')
  t.ok(probe.health.length > 0 && probe.health.every((s) => s === 200), `/health answered 200 throughout (${probe.health.length} probes)`)
  t.ok(probe.ready.every((r) => r.status === 200 || r.status === 503), '/ready answered 200 or 503, nothing else')
  for (const reply of probe.ready) checkRefusal(t, reply, 'GET /ready')
  const statuses = new Set(load.outcomes.map((o) => o.status))
  t.same([...statuses].filter((s) => ![201, 409, 503].includes(s)), [], `bookings were answered 201, 409 or 503 only (${[...statuses].join(', ')})`)
  for (const outcome of load.outcomes) checkRefusal(t, outcome, 'POST booking')
  t.ok(count(503) >= 20, `requests during the outage got 503 (${count(503)} of ${load.outcomes.length})`)

  const overlaps = await sqlRows<{ n: number }>(`
    SELECT count(*)::int AS n FROM allocation a JOIN allocation b
      ON a.resource_id = b.resource_id AND a.id < b.id AND a.during && b.during
    WHERE a.status IN ('held', 'confirmed') AND b.status IN ('held', 'confirmed')`)
  t.equal(overlaps[0]!.n, 0, 'no two live allocations overlap')
  const acknowledged = load.outcomes.filter((o) => o.status === 201)
  const stored = await sqlRows<{ id: string, resource_id: string, starts_at: Date, ends_at: Date }>(
    'SELECT id, resource_id, lower(during) AS starts_at, upper(during) AS ends_at FROM allocation WHERE id = ANY ($1::uuid[])',
    [acknowledged.map((o) => o.id)])
  const byId = new Map(stored.map((row) => [row.id, row]))
  const lost = acknowledged.filter((o) => {
    const row = byId.get(o.id!)
    return !row || row.resource_id !== o.booking.resource || row.starts_at.toISOString() !== o.booking.starts_at || row.ends_at.toISOString() !== o.booking.ends_at
  })
  t.same(lost, [], `every one of the ${acknowledged.length} acknowledged bookings is stored as acknowledged`)
})

t.test('PostgreSQL stopped fast while bookings wait on a lock: 503, or 201 only for one truly stored; the process lives', async (t) => {
  const slot = { starts_at: '2036-02-01T10:00:00Z', ends_at: '2036-02-01T11:00:00Z' }
  const holder = await session()
  await holder.query('BEGIN')
  await holder.query('INSERT INTO allocation (resource_id, during) VALUES ($1, tstzrange($2, $3, \'[)\'))', [cars[1], slot.starts_at, slot.ends_at])
  // Each of these holds a pooled connection, its booking statement waiting on the holder.
  const waiting = Array.from({ length: 3 }, () => request('POST', `/api/resources/${cars[1]}/allocations`, slot))
  await until('the bookings to wait on the lock', () => app.pg.pool.totalCount - app.pg.pool.idleCount >= 3)
  await signalPostgres('SIGINT')
  const replies = await Promise.all(waiting)
  // The shutdown ends the holder's session first, and a booking (one autocommit
  // statement) may then commit before its own session is ended: its 201 is the truth,
  // and so is a 409 for another of them that ran after it, naming it.
  const statuses = replies.map((r) => r.status)
  const booked = replies.find((r) => r.status === 201)
  t.ok(statuses.every((status) => status === 503 || status === 201 || (status === 409 && booked)), `the waiting requests are answered 503, 201, or 409 after a 201: ${statuses.join(', ')}`)
  t.ok(statuses.filter((status) => status === 201).length <= 1, 'at most one of them booked the slot')
  for (const reply of replies.filter((r) => r.status === 409)) {
    t.same((reply.body as { conflicts?: Array<{ id: string }> }).conflicts?.map((a) => a.id), [booked?.id], 'a 409 names the booking that took the slot')
  }
  for (const reply of replies.filter((r) => r.status === 503)) checkRefusal(t, reply, 'POST booking')
  await holder.end().catch(() => undefined)
  t.ok(app.server.listening, 'the API process is alive')
  await restartPostgres()
  const stored = await sqlRows<{ id: string }>('SELECT id FROM allocation WHERE resource_id = $1 AND during && tstzrange($2, $3)',
    [cars[1], slot.starts_at, slot.ends_at])
  if (booked) {
    t.same(stored.map((row) => row.id), [booked.id], 'the 201 is the one allocation stored')
    t.equal((await request('POST', `/api/resources/${cars[1]}/allocations`, slot)).status, 409, 'and the slot stays taken')
  } else {
    t.same(stored, [], 'the slot was never taken')
    t.equal((await request('POST', `/api/resources/${cars[1]}/allocations`, slot)).status, 201, 'and is booked now')
  }
})

/**
 * Opens `n` pooled connections and leaves them idle in the pool. The change feed's
 * background check may hold one of them for a moment: wait for it to come back.
 */
async function warmPool (n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, () => app.pg.pool.query('SELECT pg_sleep(0.05)')))
  await until(`${n} idle connections (have ${app.pg.pool.idleCount})`, () => app.pg.pool.idleCount >= n, 5000)
}

t.test('PostgreSQL stopped fast while only idle connections wait in the pool: no crash, 503, then serving again', async (t) => {
  await warmPool(4)
  await signalPostgres('SIGINT')
  await until('the pool to drop its dead connections', () => app.pg.pool.totalCount === 0)
  const ready = await request('GET', '/ready')
  t.equal(ready.status, 503, '/ready is 503')
  checkRefusal(t, ready, 'GET /ready')
  const list = await request('GET', '/api/sites')
  t.match(list, { status: 503, code: 'DATABASE_UNAVAILABLE', retryAfter: '5' }, 'a request is 503 with Retry-After')
  t.equal((await fetch(`${base}/health`)).status, 200, '/health stays 200')
  await restartPostgres()
  t.equal((await request('GET', '/ready')).status, 200, '/ready is 200 once PostgreSQL is back')
  t.equal((await request('GET', '/api/sites')).status, 200, 'and so is the next request')
})

t.test('the backends of idle connections terminated (SIGTERM to them): no crash, the next request reconnects', async (t) => {
  // PostgreSQL is up, so the change feed's check for waiting events (every 250 ms) may
  // open a new connection as soon as the dead ones are gone: wait for the four to be
  // dropped, not for an empty pool, which that check may never leave.
  let dropped = 0
  const countDropped = () => { dropped++ }
  await warmPool(4)
  app.pg.pool.on('remove', countDropped)
  t.teardown(() => app.pg.pool.off('remove', countDropped))
  const killed = await sqlRows<{ n: number }>(
    'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = \'invsys-api\'')
  t.ok(killed[0]!.n >= 4, `${killed[0]!.n} backends terminated`)
  await until('the pool to drop its four dead connections', () => dropped >= 4)
  t.equal((await request('GET', '/api/sites')).status, 200, 'the next request is served on a new connection')
})

t.test('a smart shutdown (SIGTERM to PostgreSQL) while idle connections wait: no crash, 200 or 503, then back', async (t) => {
  await warmPool(4)
  await signalPostgres('SIGTERM', false)
  // The server now refuses new connections but keeps the idle ones until they leave:
  // requests on them succeed, requests needing a new one get 503.
  const replies = await Promise.all(Array.from({ length: 12 }, () => request('GET', '/api/sites?limit=1')))
  t.ok(replies.every((r) => r.status === 200 || r.status === 503), `200 or 503 only (${replies.map((r) => r.status).join(' ')})`)
  for (const reply of replies) checkRefusal(t, reply, 'GET /api/sites')
  t.equal((await fetch(`${base}/health`)).status, 200, '/health stays 200')
  // Finish it fast rather than wait for the idle connections' timeout.
  await signalPostgres('SIGINT')
  await until('the pool to drop its dead connections', () => app.pg.pool.totalCount === 0)
  t.equal((await request('GET', '/ready')).status, 503, '/ready is 503 once it has stopped')
  await restartPostgres()
  t.equal((await request('GET', '/ready')).status, 200, 'and 200 once it is back')
})

t.test('the pool exhausted by requests waiting on a lock: the others get 503 after a bounded wait, never a hang', async (t) => {
  const slot = { starts_at: '2036-01-01T10:00:00Z', ends_at: '2036-01-01T11:00:00Z' }
  // An uncommitted overlapping insert: every booking of the same slot waits for it.
  const holder = await session()
  await holder.query('BEGIN')
  await holder.query('INSERT INTO allocation (resource_id, during) VALUES ($1, tstzrange($2, $3, \'[)\'))', [cars[0], slot.starts_at, slot.ends_at])
  const settled: Reply[] = []
  const all = Array.from({ length: 10 }, () => request('POST', `/api/resources/${cars[0]}/allocations`, slot).then((r) => { settled.push(r); return r }))
  // The pool holds 4 connections: 4 bookings wait on the lock with one each, the other
  // 6 wait for a connection, and give up after PG_POOL_WAIT_MS.
  await until('the requests without a connection to give up', () => settled.length >= 6)
  t.same(settled.map((r) => r.status), [503, 503, 503, 503, 503, 503], 'they are answered 503')
  for (const reply of settled) checkRefusal(t, reply, 'POST booking')
  t.equal((await fetch(`${base}/health`)).status, 200, '/health answers meanwhile')
  await holder.query('ROLLBACK')
  await holder.end()
  const replies = await Promise.all(all)
  const waited = replies.filter((r) => r.status !== 503)
  t.same(waited.map((r) => r.status).sort(), [201, 409, 409, 409], 'the 4 that held a connection finish when the lock goes: one wins')
  t.equal((await request('GET', '/ready')).status, 200, 'and the pool serves again')
})

t.test('PostgreSQL stopped fast under the token cache: its listener lost without a crash, nothing kept, kept again once it listens', async (t) => {
  const cache = app.tokenCache!
  await until('the token cache to listen', () => cache.trusted)
  t.equal((await request('GET', '/api/me')).status, 200)
  t.equal((await request('GET', '/api/me')).status, 200)
  t.ok(cache.size > 0, 'the admin token\'s lookup is kept')
  await signalPostgres('SIGINT')
  await until('the listener to be lost', () => !cache.trusted)
  t.equal(cache.size, 0, 'nothing is kept while not listening')
  const away = await request('GET', '/api/me')
  t.match(away, { status: 503, code: 'DATABASE_UNAVAILABLE' }, 'the token is looked up, not taken from the cache: 503')
  checkRefusal(t, away, 'GET /api/me')
  await restartPostgres()
  t.equal((await request('GET', '/api/me')).status, 200, 'served as soon as PostgreSQL is back, looked up in it')
  await until('the token cache to listen again', () => cache.trusted)
  await request('GET', '/api/me')
  t.ok(cache.size > 0, 'lookups are kept again')
  t.ok(app.server.listening, 'the API process is alive')
})
