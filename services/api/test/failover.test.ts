import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { startEmbeddedPostgres } from '../src/boot/embedded.js'
import { prepareDatabase } from '../src/boot/prepare.js'
import { loadConfig } from '../src/config.js'
import { nothingCommitted } from '../src/database/db.js'
import { fromPgError, writeFailure } from '../src/plugins/errors.js'
import { generateToken } from '../src/tokens.js'
import { bearer, freePort, sleep, tempDir } from './helpers.js'

/**
 * What a failover does to requests in flight, reproduced on one embedded PostgreSQL of
 * this file's own (its settings are changed for the whole cluster): a session ended while
 * its booking runs, and while its COMMIT waits for a synchronous standby that never
 * answers (synchronous_standby_names naming nobody: the commit is made locally, then
 * waits, as on a primary whose standby is gone). And where searches read when a read pool
 * is configured: a copy of the database stands in for a replica, frozen at the moment it
 * was copied, so an answer shows which pool gave it; functions of its own in front of
 * pg_catalog's make it report the replication state the test chooses.
 */

const dir = await tempDir('invsys-failover-')
const pgPort = await freePort()
// Not `fast`: that turns synchronous_commit off, and with it every wait for a standby.
const database = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port: pgPort, database: 'invsys' })
t.teardown(async () => {
  await database.stop()
  await fs.rm(dir, { recursive: true, force: true })
})

const adminToken = generateToken()
const env = { LOG_LEVEL: 'silent', DATABASE_URL: database.url, BOOTSTRAP_ADMIN_TOKEN: adminToken, MAX_EVENT_LOOP_DELAY_MS: '0' }
const config = loadConfig(env)
await prepareDatabase(config, { firstAdmin: true })
const app = await buildApp(config)
t.teardown(() => app.close())

async function sql<R extends pg.QueryResultRow = Record<string, unknown>> (text: string, values: unknown[] = [], url = database.url): Promise<R[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end()
  }
}

function api (method: 'GET' | 'POST', url: string, body?: unknown, headers: Record<string, string> = {}, on = app) {
  return on.inject({ method, url, headers: { ...bearer(adminToken), ...headers }, ...(body === undefined ? {} : { payload: body as object }) })
}

/** Waits until one of the API's sessions matches `where` (a pg_stat_activity condition), and ends it as a failover would. */
async function terminateApiSession (where: string): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 20) {
    const [row] = await sql<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = 'invsys-api' AND ${where}`)
    if (row) {
      await sql('SELECT pg_terminate_backend($1)', [row.pid])
      return
    }
    await sleep(20)
  }
  throw new Error(`no API session ${where} within 10 s`)
}

async function synchronousStandby (name: string): Promise<void> {
  await sql(`ALTER SYSTEM SET synchronous_standby_names = '${name}'`)
  await sql('SELECT pg_reload_conf()')
  // The setting reaches the backends at their next command.
  await sleep(200)
}

const car = (await api('POST', '/api/resources', { type: 'car', name: 'failover-car' })).json<{ id: string }>().id
let hour = 0
/** A fresh slot each time: 2031-01-01 from 00:00, one hour each. */
function slot () {
  const start = new Date(Date.UTC(2031, 0, 1, hour++))
  return { starts_at: start.toISOString(), ends_at: new Date(start.getTime() + 3_600_000).toISOString() }
}
const bookingsAt = async (startsAt: string) =>
  (await sql<{ id: string }>('SELECT id FROM allocation WHERE resource_id = $1 AND lower(during) = $2', [car, startsAt])).map((r) => r.id)
// The token is looked up now, so that no request below stamps its last_used_at (a commit
// that would wait for the standby too).
await api('GET', '/api/me')

t.test('the failover codes are 503, never 500; a write that may have committed is OUTCOME_UNKNOWN', async (t) => {
  const lost = () => new Error('Connection terminated unexpectedly')
  for (const code of ['57P01', '57P02', '57P03', '25006', '08006', '53300']) {
    t.equal(fromPgError({ code, message: 'failover' })?.code, 'DATABASE_UNAVAILABLE', `${code} on a read`)
  }
  t.equal(fromPgError(lost())?.code, 'DATABASE_UNAVAILABLE', 'a lost connection, on a read')
  t.equal(writeFailure(lost()).code, 'OUTCOME_UNKNOWN', 'a connection lost during a write')
  t.equal(writeFailure(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })).code, 'OUTCOME_UNKNOWN',
    'a session ended during a write (also how a commit waiting for the standby is ended)')
  t.equal(writeFailure(new Error('Query read timeout')).code, 'OUTCOME_UNKNOWN', 'a write that did not answer in time')
  t.equal(writeFailure(nothingCommitted(lost())).code, 'DATABASE_UNAVAILABLE', 'a connection lost while it was being made: nothing was sent')
  for (const code of ['57P03', '25006', '53300']) {
    t.equal(writeFailure({ code, message: 'refused' }).code, 'DATABASE_UNAVAILABLE', `${code}: refused before anything ran`)
  }
})

t.test('a booking whose session ends while it waits for a lock', async (t) => {
  // Another session's uncommitted booking of the same slot: the API's booking waits on it.
  const blocker = new pg.Client({ connectionString: database.url })
  await blocker.connect()
  t.teardown(() => blocker.end())

  const keyless = slot()
  await blocker.query('BEGIN')
  await blocker.query('INSERT INTO allocation (resource_id, during) VALUES ($1, tstzrange($2, $3))', [car, keyless.starts_at, keyless.ends_at])
  const plain = api('POST', `/api/resources/${car}/allocations`, keyless)
  await terminateApiSession("wait_event_type = 'Lock'")
  const plainReply = await plain
  t.equal(plainReply.statusCode, 503)
  t.equal(plainReply.json().code, 'OUTCOME_UNKNOWN', 'without a key: the statement was sent, its outcome is unknown')
  t.ok(plainReply.headers['retry-after'], 'with Retry-After')
  await blocker.query('ROLLBACK')

  const keyed = slot()
  const key = { 'idempotency-key': 'failover-lock-1' }
  await blocker.query('BEGIN')
  await blocker.query('INSERT INTO allocation (resource_id, during) VALUES ($1, tstzrange($2, $3))', [car, keyed.starts_at, keyed.ends_at])
  const first = api('POST', `/api/resources/${car}/allocations`, keyed, key)
  await terminateApiSession("wait_event_type = 'Lock'")
  const firstReply = await first
  t.equal(firstReply.statusCode, 503)
  t.equal(firstReply.json().code, 'DATABASE_UNAVAILABLE', 'with a key: the booking ran in the key\'s transaction, which never committed')
  await blocker.query('ROLLBACK')
  const retry = await api('POST', `/api/resources/${car}/allocations`, keyed, key)
  t.equal(retry.statusCode, 201, 'the retry with the same key books at once: no claim is left to wait out')
  t.notOk(retry.headers['idempotent-replayed'], 'it ran, it was not replayed')
  t.same(await bookingsAt(keyed.starts_at), [retry.json().id], 'one booking, the retry\'s')
})

t.test('a booking whose session ends while its commit waits for the synchronous standby', async (t) => {
  t.teardown(() => synchronousStandby(''))
  await synchronousStandby('nobody')

  const keyless = slot()
  const plain = api('POST', `/api/resources/${car}/allocations`, keyless)
  await terminateApiSession("wait_event = 'SyncRep'")
  const plainReply = await plain
  t.equal(plainReply.statusCode, 503)
  t.equal(plainReply.json().code, 'OUTCOME_UNKNOWN', 'without a key: OUTCOME_UNKNOWN, never DATABASE_UNAVAILABLE (it says nothing changed)')
  t.equal((await bookingsAt(keyless.starts_at)).length, 1, 'and indeed the booking was committed (locally, before the wait)')

  const keyed = slot()
  const key = { 'idempotency-key': 'failover-syncrep-1' }
  const first = api('POST', `/api/resources/${car}/allocations`, keyed, key)
  await terminateApiSession("wait_event = 'SyncRep'")
  const firstReply = await first
  t.equal(firstReply.statusCode, 503)
  t.equal(firstReply.json().code, 'OUTCOME_UNKNOWN', 'with a key: its COMMIT was sent and never answered')
  await synchronousStandby('')
  const retry = await api('POST', `/api/resources/${car}/allocations`, keyed, key)
  t.equal(retry.statusCode, 201, 'the retry with the same key gets the booking')
  t.equal(retry.headers['idempotent-replayed'], 'true', 'replayed from the committed response, not booked again')
  t.same(await bookingsAt(keyed.starts_at), [retry.json().id], 'one booking: the one the first request committed')
})

t.test('/ready follows the primary', async (t) => {
  t.equal((await app.inject('/ready')).statusCode, 200)
})

t.test('searches read the read pool while its lag is within DATABASE_READ_MAX_LAG_MS, and the primary otherwise', async (t) => {
  // The stand-in replica: a copy of the database as it is now (no other session may be
  // connected to the template while it is copied).
  // connected to the template while it is copied: the API's reconnect, so try a few times).
  for (let attempt = 1; ; attempt++) {
    await sql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \'invsys\' AND pid <> pg_backend_pid()')
    const copied = await sql('CREATE DATABASE invsys_replica TEMPLATE invsys').then(() => true, (error: Error) => {
      if (attempt === 10) throw error
      return false
    })
    if (copied) break
  }
  const replicaUrl = database.url.replace(/\/invsys$/, '/invsys_replica')
  // A standby behind by `lag` that has not replayed all it received.
  await sql(`
    CREATE SCHEMA standby;
    CREATE TABLE standby.state (lag interval NOT NULL);
    INSERT INTO standby.state VALUES (interval '0');
    CREATE FUNCTION standby.pg_is_in_recovery() RETURNS boolean LANGUAGE sql AS 'SELECT true';
    CREATE VIEW standby.pg_stat_wal_receiver AS SELECT 1 AS pid;
    CREATE FUNCTION standby.pg_last_wal_receive_lsn() RETURNS pg_lsn LANGUAGE sql AS $$SELECT '0/2000'::pg_lsn$$;
    CREATE FUNCTION standby.pg_last_wal_replay_lsn() RETURNS pg_lsn LANGUAGE sql AS $$SELECT '0/1000'::pg_lsn$$;
    CREATE FUNCTION standby.pg_last_xact_replay_timestamp() RETURNS timestamptz LANGUAGE sql AS 'SELECT clock_timestamp() - lag FROM standby.state';
    ALTER DATABASE invsys_replica SET search_path = standby, pg_catalog, public;`, [], replicaUrl)
  const setLag = (lag: string) => sql('UPDATE standby.state SET lag = $1', [lag], replicaUrl)

  // Booked on the primary after the copy: only the primary knows this slot is taken.
  const taken = { starts_at: '2032-03-01T09:00:00Z', ends_at: '2032-03-01T10:00:00Z' }
  t.equal((await api('POST', `/api/resources/${car}/allocations`, taken)).statusCode, 201)
  const free = `/api/resources/${car}/free?from=2032-03-01T08:00:00Z&to=2032-03-01T11:00:00Z`
  const list = `/api/allocations?resource_id=${car}&from=2032-03-01T00:00:00Z&to=2032-03-02T00:00:00Z`
  const readFrom = async (reading: typeof app) => {
    const [freeReply, listReply] = await Promise.all([api('GET', free, undefined, {}, reading), api('GET', list, undefined, {}, reading)])
    t.equal(freeReply.statusCode, 200)
    t.equal(listReply.statusCode, 200)
    const sawBooking = freeReply.json().length === 2 && listReply.json().length === 1
    const sawCopy = freeReply.json().length === 1 && listReply.json().length === 0
    return sawBooking ? 'primary' : sawCopy ? 'replica' : `neither: ${freeReply.body} ${listReply.body}`
  }
  /**
   * What searches read once the routing has measured the replica (every 200 ms, in the
   * background, so a change is seen after a probe or two): asked until they read from
   * `expected`, for up to 5 s, and what they read last.
   */
  const settled = async (reading: typeof app, expected: 'primary' | 'replica') => {
    let seen = await readFrom(reading)
    for (let waited = 0; seen !== expected && waited < 5000; waited += 100) {
      await sleep(100)
      seen = await readFrom(reading)
    }
    return seen
  }

  const reading = await buildApp(loadConfig({ ...env, DATABASE_READ_URL: replicaUrl, DATABASE_READ_MAX_LAG_MS: '1000' }))
  t.teardown(() => reading.close())
  t.equal(await settled(reading, 'replica'), 'replica', 'a replica within the lag bound answers searches')
  const me = await api('GET', '/api/me', undefined, {}, reading)
  t.equal(me.statusCode, 200, 'everything else reads the primary (the token was made after the copy)')

  await setLag('5 seconds')
  t.equal(await settled(reading, 'primary'), 'primary', 'a replica 5 s behind (bound 1 s): the primary answers')
  await setLag('0')
  t.equal(await settled(reading, 'replica'), 'replica', 'caught up again: back to the replica')

  // The replica goes away: its sessions are ended and new ones refused.
  await sql('ALTER DATABASE invsys_replica WITH ALLOW_CONNECTIONS false')
  await sql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \'invsys_replica\'')
  const during = await readFrom(reading)
  t.ok(during === 'primary' || during === 'replica', 'a search as the replica goes answers (from either)')
  t.equal(await settled(reading, 'primary'), 'primary', 'an unreachable replica: the primary answers')
  t.equal((await reading.inject('/ready')).statusCode, 200, '/ready does not depend on the replicas')
})
