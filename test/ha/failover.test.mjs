// Failovers under a booking load (npm run test:ha; docs/high-availability.md): the
// cluster of lib/cluster.mjs, the API built as in production, parallel clients booking
// through it over HTTP (half of them with an Idempotency-Key, retrying 503s with it).
// Then, one after the other: the primary's whole node killed (SIGKILL to Patroni and
// PostgreSQL), the new primary's Patroni stopped cleanly, and the primary after that
// frozen (SIGSTOP) for longer than ttl. After each: every booking the API acknowledged is
// on the new primary, no two live allocations overlap, every refusal was a JSON 503 or
// 409, a 503 DATABASE_UNAVAILABLE left nothing behind, the API process lives, writes came
// back within WRITE_OUTAGE_BOUND_MS, and the old primary is a replica again. Checks that
// must hold across a failover (a revocation, …) are in ACROSS_FAILOVER: each is armed
// before the fault and checked after it. KEEP_WORKDIR=1 keeps every process's log.
import { randomUUID } from 'node:crypto'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import process from 'node:process'
import { setTimeout as timer } from 'node:timers'
import t from 'tap'
import { Cluster, sleep, waitFor } from './lib/cluster.mjs'
import { ROOT } from '../prod/lib/paths.mjs'
import { tail } from '../prod/lib/procs.mjs'

const HARD_LIMIT_MS = 840_000 // under tap's --timeout (900 s), so that this file cleans up itself
// Writes must be back this long after a fault. Measured on this machine type (2 cores,
// shared): about 9 to 12 s after a kill, 3 to 5 s after a clean stop, 12 to 16 s after a
// freeze of ttl + 5 s (docs/high-availability.md); the bound leaves room for a busy machine.
const WRITE_OUTAGE_BOUND_MS = 40_000
const TTL_MS = 10_000 // patroni.yml's ttl
const CLIENTS = 6
const RESOURCES = 8

const started = Date.now()
const cluster = new Cluster({ comment: (m) => t.comment(m) })
t.comment(`work directory ${cluster.work}`)
t.teardown(() => cluster.cleanup())
const hardTimer = timer(() => {
  t.fail(`the whole test took over ${HARD_LIMIT_MS / 1000}s: aborted`)
  cluster.cleanupSync()
  process.exit(1)
}, HARD_LIMIT_MS)
hardTimer.unref()

function build () {
  return new Promise((resolve, reject) => {
    const child = spawn('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.stderr.on('data', (d) => { out += d })
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`npm run build failed:\n${out}`))))
  })
}

await cluster.allocatePorts()
const building = build().then(() => t.comment(`API built in ${((Date.now() - started) / 1000).toFixed(1)} s`))
await cluster.startEtcd()
for (const node of cluster.nodes) cluster.startNode(node)
cluster.startHaproxy()
try {
  await cluster.healthy(120_000)
  t.comment(`cluster bootstrapped in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  await building
  await cluster.startApi()
  await waitFor('/ready', async () => (await cluster.call('GET', '/ready', { timeoutMs: 2000 })).status === 200, 30_000)
} catch (e) {
  t.fail('the cluster and the API come up', { reason: e.message, logs: digest() })
  process.exit(1)
}

function digest () {
  return [cluster.etcd, ...cluster.nodes.map((n) => n.patroni), cluster.haproxy, cluster.api]
    .filter(Boolean).map((rec) => `--- ${rec.name} (${rec.exited ? `exited ${rec.code ?? rec.signal}` : 'running'})\n${tail(rec.log, 15)}`).join('\n')
}

const cars = []
for (let i = 0; i < RESOURCES; i++) {
  const r = await cluster.call('POST', '/api/resources', { body: { type: 'car', name: `ha-car-${i}` } })
  if (r.status !== 201) throw new Error(`resource not created: ${r.status} ${r.text}`)
  cars.push(r.json.id)
}

await t.test('the API migrated the empty PostgreSQL 15 cluster on its first start', async (t) => {
  const [row] = await cluster.sql('primary', 'SELECT current_setting(\'server_version_num\')::int / 10000 AS major, (SELECT count(*) FROM resource_type)::int AS types')
  t.equal(row.major, 15)
  t.ok(row.types > 0, 'the schema and its resource types are there')
})

/** Parallel clients booking random hours of the cars; each request carries its own id in data.req. */
class BookingLoad {
  constructor () {
    this.requests = []
    this.running = false
  }

  start () {
    this.running = true
    this.done = Promise.all(Array.from({ length: CLIENTS }, (_, i) => this.client(i)))
  }

  async stop () {
    this.running = false
    await this.done
  }

  async client (n) {
    for (let i = 0; this.running; i++) {
      const keyed = (n + i) % 2 === 0
      const hour = Math.floor(Math.random() * 4000)
      const startsAt = new Date(Date.UTC(2032, 0, 1) + hour * 3_600_000)
      const body = {
        starts_at: startsAt.toISOString(),
        ends_at: new Date(startsAt.getTime() + 3_600_000).toISOString(),
        data: { req: randomUUID() }
      }
      const resource = cars[Math.floor(Math.random() * cars.length)]
      const req = { resource, body, key: keyed ? `ha-${body.data.req}` : undefined, attempts: [] }
      this.requests.push(req)
      // With a key, a 503 is retried with the same key and body (as the docs tell clients
      // to), for up to a minute; without one, never.
      for (let attempt = 0; attempt < 120; attempt++) {
        const sent = Date.now()
        const r = await cluster.call('POST', `/api/resources/${resource}/allocations`, {
          body, headers: req.key ? { 'idempotency-key': req.key } : {}, timeoutMs: 60_000
        })
        req.attempts.push({ sent, at: Date.now(), status: r.status, code: r.json?.code, id: r.json?.id, replayed: r.headers['idempotent-replayed'] === 'true', json: isJsonError(r), error: r.error })
        if (r.status !== 503 || !req.key || !this.running) break
        await sleep(250)
      }
      req.doneAt = Date.now()
      if (req.attempts.at(-1).status === 503) await sleep(100)
    }
  }

  /** Whether a booking sent at or after `since` has been acknowledged (201). */
  acknowledgedSince (since) {
    return this.requests.some((r) => r.attempts.some((a) => a.sent >= since && a.status === 201))
  }

  /**
   * The write outage around a fault at `since`: the longest time between two consecutive
   * acknowledgements (201) from 5 s before it until `until` (ms).
   */
  outage (since, until) {
    const times = this.requests.flatMap((r) => r.attempts).filter((a) => a.status === 201 && a.at >= since - 5000 && a.at <= until)
      .map((a) => a.at).sort((a, b) => a - b)
    let longest = 0
    for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i] - times[i - 1])
    return longest
  }
}

function isJsonError (r) {
  return /^application\/json/.test(r.headers?.['content-type'] ?? '') && typeof r.json?.code === 'string' && typeof r.json?.message === 'string'
}

const load = new BookingLoad()
const reads = { running: false, answers: [] }
async function searchLoad () {
  while (reads.running) {
    const day = Math.floor(Math.random() * 150)
    const from = new Date(Date.UTC(2032, 0, 1 + day)).toISOString()
    const to = new Date(Date.UTC(2032, 0, 2 + day)).toISOString()
    const paths = [`/api/slots?type=car&from=${from}&to=${to}&duration=PT1H&limit=5`, `/api/resources?type=car&available_from=${from}&available_to=${to}`]
    for (const path of paths) {
      const r = await cluster.call('GET', path, { timeoutMs: 30_000 })
      reads.answers.push({ at: Date.now(), path, status: r.status, code: r.json?.code, json: r.status === 200 || isJsonError(r) })
    }
    await sleep(50)
  }
}

/** Everything the API acknowledged, and nothing it said was not stored, is on the primary; nothing overlaps. */
async function checkBookings (t, label, since = 0) {
  // Requests answered before the rows are read: one still running may commit meanwhile.
  const asOf = Date.now()
  const finished = load.requests.filter((req) => req.doneAt !== undefined && req.doneAt < asOf)
  const rows = await cluster.sql('primary', `
    SELECT id::text, resource_id::text, data->>'req' AS req, status FROM allocation WHERE data ? 'req'`, [], { timeoutMs: 20_000 })
  const byReq = new Map()
  for (const row of rows) byReq.set(row.req, [...(byReq.get(row.req) ?? []), row])
  let acknowledged = 0
  const lost = []
  const duplicated = []
  const unavailableButStored = []
  const unknown = { keyed: 0, keyless: 0, keylessStored: 0 }
  const refusals = []
  for (const req of finished) {
    const stored = byReq.get(req.body.data.req) ?? []
    if (stored.length > 1) duplicated.push(req.body.data.req)
    for (const a of req.attempts) {
      if (a.status === 201) {
        acknowledged++
        if (!stored.some((row) => row.id === a.id && row.resource_id === req.resource)) lost.push(a.id)
      } else if (!((a.status === 503 && ['DATABASE_UNAVAILABLE', 'OUTCOME_UNKNOWN'].includes(a.code)) || a.status === 409) || !a.json) {
        refusals.push({ status: a.status, code: a.code, error: a.error })
      }
      if (a.code === 'OUTCOME_UNKNOWN' && a.sent >= since) unknown[req.key ? 'keyed' : 'keyless']++
    }
    const last = req.attempts.at(-1)
    if (!req.key && last?.code === 'OUTCOME_UNKNOWN' && last.sent >= since && stored.length) unknown.keylessStored++
    // "Nothing was changed", said by the last answer a request got, must be true.
    if (last?.code === 'DATABASE_UNAVAILABLE' && !req.attempts.some((a) => a.status === 201 || a.code === 'OUTCOME_UNKNOWN') && stored.length) {
      unavailableButStored.push(req.body.data.req)
    }
  }
  t.same(lost, [], `${label}: every one of the ${acknowledged} acknowledged bookings is on the primary`)
  t.same(duplicated, [], `${label}: no request was stored twice (retries with a key ran at most once)`)
  t.same(unavailableButStored, [], `${label}: no request answered DATABASE_UNAVAILABLE ("nothing was changed") was stored`)
  t.same(refusals.slice(0, 5), [], `${label}: every refusal was a JSON 503 (DATABASE_UNAVAILABLE or OUTCOME_UNKNOWN) or 409 (${refusals.length} were not)`)
  const [overlaps] = await cluster.sql('primary', `
    SELECT count(*)::int AS n FROM allocation a JOIN allocation b
      ON a.resource_id = b.resource_id AND a.id < b.id AND a.during && b.during
    WHERE a.status IN ('confirmed', 'held') AND b.status IN ('confirmed', 'held')`, [], { timeoutMs: 20_000 })
  t.equal(overlaps.n, 0, `${label}: no two live allocations of a resource overlap`)
  const answered = finished.flatMap((r) => r.attempts).filter((a) => a.sent >= since)
  const count = (f) => answered.filter(f).length
  const seconds = (Math.max(...answered.map((a) => a.at)) - Math.min(...answered.map((a) => a.sent))) / 1000
  t.comment(`${label}: ${answered.length} answers in ${seconds.toFixed(0)} s: ${count((a) => a.status === 201)} × 201 (${count((a) => a.replayed)} replayed), ` +
    `${count((a) => a.status === 409)} × 409, ${count((a) => a.code === 'DATABASE_UNAVAILABLE')} × 503 DATABASE_UNAVAILABLE, ` +
    `${count((a) => a.code === 'OUTCOME_UNKNOWN')} × 503 OUTCOME_UNKNOWN (keyed ${unknown.keyed}; keyless ${unknown.keyless}, of which stored ${unknown.keylessStored})`)
}

/**
 * What must hold across a failover besides the bookings. Each is armed before the fault
 * (with what it needs) and checked once the cluster is whole again. A long-poll waiting
 * across the failover fits here too: armed, it starts waiting; checked, it gets the next event.
 */
const ACROSS_FAILOVER = [
  {
    name: 'a token revoked after the failover is refused on the next request (the token cache listens to the new primary)',
    async arm () {
      const account = await cluster.call('POST', '/api/accounts', { body: { name: `ha-member-${randomUUID().slice(0, 8)}`, role: 'member' } })
      const token = await cluster.call('POST', `/api/accounts/${account.json.id}/tokens`, { body: { label: 'ha' } })
      const me = () => cluster.call('GET', '/api/me', { token: token.json.token })
      if ((await me()).status !== 200 || (await me()).status !== 200) throw new Error('the member token does not work')
      return { id: token.json.id, me }
    },
    async check (t, { id, me }) {
      t.equal((await me()).status, 200, 'the token works after the failover')
      t.equal((await me()).status, 200, 'twice (kept by the cache)')
      t.equal((await cluster.call('DELETE', `/api/tokens/${id}`)).status, 204, 'revoked')
      t.equal((await me()).status, 401, 'refused on the very next request')
    }
  },
  {
    name: 'the change feed after the failover: a long-poll is woken by the next booking (its listener hears the new primary), and every acknowledged booking is in the feed once, with no gap',
    async arm () {
      const car = await cluster.call('POST', '/api/resources', { body: { type: 'car', name: `ha-feed-${randomUUID().slice(0, 8)}` } })
      if (car.status !== 201) throw new Error(`resource not created: ${car.status} ${car.text}`)
      return { car: car.json.id, reconnects: listenerMetric(await metricsText(), 'invsys_listener_reconnects_total') }
    },
    async check (t, { car, reconnects }) {
      const metrics = await metricsText()
      t.equal(listenerMetric(metrics, 'invsys_listener_connected'), 1, 'the API is listening again')
      t.ok(listenerMetric(metrics, 'invsys_listener_reconnects_total') > reconnects, 'on a connection made after the failover')
      // Without a notification a long-poll reads again every 3 s (routes/events.ts): woken
      // within a second of each of three bookings, it was woken by the listener.
      const latencies = []
      for (let i = 0; i < 3; i++) {
        const own = await cluster.call('GET', `/api/events?resource_id=${car}&limit=1000`)
        const after = own.json.at(-1).position
        const issued = Date.now()
        const polling = cluster.call('GET', `/api/events?after=${after}&resource_id=${car}&wait=25`, { timeoutMs: 40_000 })
        await sleep(1500)
        const startsAt = new Date(Date.UTC(2034, 0, 1) + (phaseCount * 10 + i) * 3_600_000)
        const booked = await cluster.call('POST', `/api/resources/${car}/allocations`, {
          body: { starts_at: startsAt.toISOString(), ends_at: new Date(startsAt.getTime() + 3_600_000).toISOString() }, headers: { 'idempotency-key': `ha-feed-${car}-${i}` }, timeoutMs: 60_000
        })
        const acknowledged = Date.now()
        const poll = await polling
        const answered = Date.now()
        t.equal(booked.status, 201, `booking ${i + 1} acknowledged`)
        t.same(poll.json?.map((e) => [e.type, e.allocation_id]), [['allocation.created', booked.json?.id]], `long-poll ${i + 1} answered with that booking's event`)
        t.ok(answered - issued >= 1500, `long-poll ${i + 1} waited for it (${answered - issued} ms)`)
        latencies.push(answered - acknowledged)
      }
      phaseCount++
      t.ok(Math.max(...latencies) < 1000, `each long-poll answered within a second of its booking's 201 (${latencies.join(', ')} ms)`)
      // The whole feed: consecutive positions, each allocation created once, every
      // acknowledged booking among them (numbering follows commits within moments).
      const acknowledgedIds = load.requests.flatMap((r) => r.attempts).filter((a) => a.status === 201).map((a) => a.id)
      let feed = []
      await waitFor('every acknowledged booking in the feed', async () => {
        feed = await readFeed()
        const created = new Set(feed.filter((e) => e.type === 'allocation.created').map((e) => e.allocation_id))
        return acknowledgedIds.every((id) => created.has(id))
      }, 20_000, 500).catch(() => {})
      const positions = feed.map((e) => e.position)
      const gaps = positions.filter((p, i) => i > 0 && p !== positions[i - 1] + 1)
      t.same(gaps.slice(0, 5), [], `the feed's ${positions.length} positions (${positions[0]}…${positions.at(-1)}) follow each other with no gap and none twice`)
      const createdCount = new Map()
      for (const e of feed) if (e.type === 'allocation.created') createdCount.set(e.allocation_id, (createdCount.get(e.allocation_id) ?? 0) + 1)
      t.same([...createdCount].filter(([, n]) => n > 1).slice(0, 5), [], 'no allocation.created twice')
      const missing = acknowledgedIds.filter((id) => !createdCount.has(id))
      t.same(missing.slice(0, 5), [], `every one of the ${acknowledgedIds.length} acknowledged bookings has its allocation.created (${missing.length} missing)`)
      // Nothing that did not commit: every allocation the feed announces is on the primary.
      const announced = [...createdCount.keys()]
      const stored = new Set((await cluster.sql('primary', 'SELECT id::text FROM allocation WHERE id = ANY($1::uuid[])', [announced], { timeoutMs: 20_000 })).map((r) => r.id))
      t.same(announced.filter((id) => !stored.has(id)).slice(0, 5), [], `each of the ${announced.length} allocations the feed announces is on the primary`)
    }
  }
]

let phaseCount = 0

async function metricsText () {
  const r = await cluster.call('GET', '/metrics', { token: '' })
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`)
  return r.text
}

function listenerMetric (text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.split(' ')[1])
}

/** The whole change feed, page by page. */
async function readFeed () {
  const events = []
  for (let after = 0; ;) {
    const r = await cluster.call('GET', `/api/events?after=${after}&limit=1000`)
    if (r.status !== 200) throw new Error(`GET /api/events answered ${r.status} ${r.text}`)
    events.push(...r.json)
    if (r.json.length < 1000) return events
    after = r.json.at(-1).position
  }
}

/** One fault under load: what it does, then the checks. */
async function failover (t, name, fault) {
  const members = await cluster.healthy()
  const old = await cluster.leader()
  const phase = Date.now()
  const armed = []
  for (const check of ACROSS_FAILOVER) armed.push(await check.arm())
  await sleep(3000) // some load before
  const apiPid = cluster.api.child.pid
  // The node's log so far (a restarted node appends to it): what it says after this is about this fault.
  const logBefore = readFileSync(old.patroni.log, 'utf8').length
  const since = Date.now()
  t.comment(`${name}: ${old.name} is the primary (members: ${members.map((m) => `${m.name} ${m.role}`).join(', ')})`)
  await fault(old)
  const leader = await cluster.leader(90_000)
  t.not(leader.name, old.name, `a new primary: ${leader.name}`)
  // Writes are back once a booking sent after the new primary was seen is acknowledged.
  const leaderSeen = Date.now()
  const resumed = await waitFor('a booking acknowledged by the new primary', async () => load.acknowledgedSince(leaderSeen), WRITE_OUTAGE_BOUND_MS, 100)
    .then(() => load.outage(since, Date.now()), () => undefined)
  t.ok(resumed !== undefined && resumed <= WRITE_OUTAGE_BOUND_MS,
    `writes stopped for ${resumed === undefined ? 'ever' : `${(resumed / 1000).toFixed(1)} s`} at most (bound ${WRITE_OUTAGE_BOUND_MS / 1000} s)`)
  measured.push({ name, resumedMs: resumed })
  // The old primary's machine comes back (a killed or stopped node is started again).
  if (old.patroni.exited) cluster.startNode(old)
  const whole = await cluster.healthy(120_000).catch((e) => { t.fail('the cluster is whole again', { reason: e.message }); return [] })
  const back = whole.find((m) => m.name === old.name)
  t.ok(back && ['replica', 'sync_standby'].includes(back.role), `the old primary ${old.name} rejoined as a replica (${back?.role} on timeline ${back?.timeline})`)
  const rewound = /pg_rewind exit code=0/.test(readFileSync(old.patroni.log, 'utf8').slice(logBefore))
  t.comment(`${name}: ${old.name} ${rewound ? 'was rewound (pg_rewind)' : 'needed no rewind'} before it rejoined`)
  t.equal(cluster.api.child.pid, apiPid, 'the same API process')
  t.notOk(cluster.api.exited, 'the API never exited')
  for (const [i, check] of ACROSS_FAILOVER.entries()) await t.test(check.name, (t) => check.check(t, armed[i]))
  await checkBookings(t, name, phase)
}

const measured = []
let readLoad

await t.test('searches read a replica', async (t) => {
  reads.running = true
  readLoad = searchLoad()
  load.start()
  const replicas = async () => (await cluster.members()).filter((m) => m.role !== 'leader').map((m) => cluster.node(m.name))
  const seen = await waitFor('the API\'s read pool on a replica', async () => {
    for (const node of await replicas()) {
      const rows = await cluster.sql(node, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = \'invsys-api-read\'', [], { superuser: true })
      if (rows[0].n > 0) return node.name
    }
  }, 20_000, 200).catch(() => undefined)
  t.ok(seen, `the API's read connections (application_name invsys-api-read) are on a replica: ${seen}`)
})

await t.test('the primary\'s whole node killed (SIGKILL to Patroni and PostgreSQL)', (t) => failover(t, 'kill -9', (node) => cluster.killNode(node)))
await t.test('the primary\'s Patroni stopped cleanly', (t) => failover(t, 'clean stop', (node) => cluster.stopPatroni(node)))
await t.test('the primary frozen (SIGSTOP) for ttl + 5 s, then resumed', (t) => failover(t, 'freeze', async (node) => {
  cluster.freeze(node)
  await sleep(TTL_MS + 5000)
  cluster.thaw(node)
}))

await t.test('the load ends; every search was answered', async (t) => {
  await load.stop()
  reads.running = false
  await readLoad
  const bad = reads.answers.filter((a) => !(a.status === 200 || (a.status === 503 && a.code === 'DATABASE_UNAVAILABLE' && a.json)))
  t.same(bad.slice(0, 5), [], `every search was 200 or a JSON 503 DATABASE_UNAVAILABLE (${reads.answers.length} searches, ${bad.length} not)`)
  await checkBookings(t, 'at the end')
})

await t.test('with both replicas stopped, searches read the primary', async (t) => {
  const members = await cluster.healthy()
  const leader = await cluster.leader()
  // The asynchronous replica first, then the synchronous standby, which asks the primary
  // to release it before it stops: Patroni then runs the primary alone.
  const order = members.filter((m) => m.role === 'replica').concat(members.filter((m) => m.role === 'sync_standby'))
  for (const m of order) await cluster.stopPatroni(cluster.node(m.name))
  const from = '2032-02-01T00:00:00Z'
  const to = '2032-02-02T00:00:00Z'
  const answers = []
  for (let i = 0; i < 10; i++) {
    answers.push((await cluster.call('GET', `/api/slots?type=car&from=${from}&to=${to}&duration=PT1H&limit=5`)).status)
    await sleep(200)
  }
  t.same(answers.slice(-5), [200, 200, 200, 200, 200], `searches answered from the primary ${leader.name} (${answers.join(' ')})`)
  // A booking, retried with its key as a client would: its commit may wait for the
  // standby that just left until Patroni notices (the API's query timeout bounds the wait).
  const sent = Date.now()
  const body = { starts_at: '2033-01-01T00:00:00Z', ends_at: '2033-01-01T01:00:00Z' }
  const replies = []
  let booked
  while (Date.now() - sent < 90_000) {
    booked = await cluster.call('POST', `/api/resources/${cars[0]}/allocations`, { body, headers: { 'idempotency-key': 'ha-alone' }, timeoutMs: 60_000 })
    replies.push(booked.json?.code ?? booked.status)
    if (booked.status !== 503) break
    await sleep(1000)
  }
  t.equal(booked.status, 201, `and bookings go on with no standby left (synchronous_mode_strict is off): ${replies.join(', ')} in ${((Date.now() - sent) / 1000).toFixed(1)} s`)
})

t.teardown(() => {
  const total = (Date.now() - started) / 1000
  t.comment(`write outages: ${measured.map((m) => `${m.name} ${m.resumedMs === undefined ? 'never' : `${(m.resumedMs / 1000).toFixed(1)} s`}`).join(', ')}`)
  t.comment(`test:ha took ${total.toFixed(0)} s`)
  if (!t.passing()) t.comment(digest())
})
