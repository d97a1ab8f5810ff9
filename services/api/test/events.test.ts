import { Ajv } from 'ajv'
import addFormatsModule from 'ajv-formats'
import t from 'tap'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { advanceKeptFrom, deleteUnservedEvents } from '../src/database/events.js'
import { Allocation } from '../src/schemas/allocations.js'
import { FeedEvent } from '../src/schemas/events.js'
import { Resource } from '../src/schemas/resources.js'
import { book, buildTestApp, call, createAccount, createResource, endSessions, sleep, sql, type TestApp } from './helpers.js'

const app = await buildTestApp(t)

interface Event {
  position: number
  id: string
  type: string
  occurred_at: string
  actor_id: number | null
  resource_id: string
  resource_type: string
  allocation_id: string | null
  data: Record<string, unknown> | null
  previous: Record<string, unknown> | null
}

/** The position the feed is at now (the last event), once what was written so far is numbered. */
async function head (target: TestApp = app): Promise<number> {
  await sql(target, 'SELECT event_number_committed(100000)')
  const [row] = await sql<{ last: number }>(target, 'SELECT last_position::int AS last FROM event_feed')
  return row!.last
}

/**
 * Every event after `after` until the feed has `count` of them (or 10 s pass), read page by
 * page through the API: numbering happens after the commit, so the newest may take a moment.
 */
async function readAfter (after: number, count: number, query = ''): Promise<Event[]> {
  const events: Event[] = []
  for (const started = Date.now(); events.length < count && Date.now() - started < 10_000;) {
    const cursor = events.at(-1)?.position ?? after
    const res = await call(app, 'GET', `/api/events?after=${cursor}&limit=3&wait=1${query}`)
    if (res.statusCode !== 200) throw new Error(res.body)
    events.push(...res.json<Event[]>())
  }
  return events
}

const slot = (day: number, hour = 9) => ({
  starts_at: new Date(Date.UTC(2031, 0, day, hour)).toISOString(),
  ends_at: new Date(Date.UTC(2031, 0, day, hour + 1)).toISOString()
})

t.test('every change is announced once, in the transaction that made it; refused and rolled-back writes are not', async (t) => {
  const member = await createAccount(app, 'member')
  const me = (await call(app, 'GET', '/api/me')).json<{ id: number }>()
  const start = await head()

  const car = await createResource(app, 'car')
  const booked = (await book(app, car.id, slot(1).starts_at, slot(1).ends_at)).json()
  t.equal((await book(app, car.id, slot(1).starts_at, slot(1).ends_at)).statusCode, 409, 'a refused booking')
  t.equal((await call(app, 'PUT', `/api/resources/${car.id}/rules`, { min_duration: 'PT2H' })).statusCode, 200)
  t.equal((await call(app, 'POST', `/api/resources/${car.id}/allocations`, slot(2), { token: member.token })).statusCode, 422, 'a booking the rules refuse')
  await sql(app, `BEGIN; UPDATE allocation SET description = 'never' WHERE id = '${booked.id}'; ROLLBACK`)
  const moved = await call(app, 'PATCH', `/api/allocations/${booked.id}`, slot(3))
  t.equal(moved.statusCode, 200)
  t.equal((await call(app, 'PATCH', `/api/allocations/${booked.id}`, slot(3))).statusCode, 200, 'a PATCH that changes nothing')
  const hold = (await book(app, car.id, slot(4).starts_at, slot(4).ends_at, { status: 'held', hold_seconds: 600 })).json()
  t.equal((await call(app, 'POST', `/api/allocations/${hold.id}/confirm`)).statusCode, 200)
  t.equal((await call(app, 'DELETE', `/api/allocations/${hold.id}`)).statusCode, 204)
  t.equal((await call(app, 'DELETE', `/api/allocations/${hold.id}`)).statusCode, 204, 'cancelling twice')
  const series = await call(app, 'POST', `/api/resources/${car.id}/series`, { ...slot(10), time_zone: 'UTC', rrule: 'FREQ=DAILY;COUNT=2' })
  t.equal(series.statusCode, 201)
  t.equal((await call(app, 'DELETE', `/api/series/${series.json().id}?from=2031-01-01T00:00:00Z`)).statusCode, 204)
  await sql(app, 'UPDATE allocation SET description = $2 WHERE id = $1', [booked.id, 'edited in psql'])
  t.equal((await call(app, 'PATCH', `/api/resources/${car.id}`, { name: `${car.name}-renamed` })).statusCode, 200)
  t.equal((await call(app, 'DELETE', `/api/resources/${car.id}?force=true`)).statusCode, 204)

  const events = await readAfter(start, 17)
  const occurrences: string[] = series.json().allocations.map((a: { id: string }) => a.id)
  const row = (e: Event) => [e.type, e.allocation_id, e.actor_id]
  t.same(events.slice(0, 8).map(row), [
    ['resource.created', null, me.id],
    ['allocation.created', booked.id, me.id],
    ['allocation.updated', booked.id, me.id],
    ['allocation.created', hold.id, me.id],
    ['allocation.confirmed', hold.id, me.id],
    ['allocation.cancelled', hold.id, me.id],
    ['allocation.created', occurrences[0], me.id],
    ['allocation.created', occurrences[1], me.id]
  ], 'each change once, in order, with the account that made it')
  t.same(events.slice(8, 10).map(row).sort(), occurrences.map((id) => ['allocation.cancelled', id, me.id]).sort(), 'a series cancel: each occurrence')
  t.same(events.slice(10, 12).map(row), [['allocation.updated', booked.id, null], ['resource.updated', null, me.id]], 'psql names no account')
  t.same(events.slice(12, 16).map(row).sort(), [booked.id, hold.id, ...occurrences].map((id) => ['allocation.deleted', id, me.id]).sort(),
    'deleting the resource deletes its allocations, each announced, before the resource')
  t.same(events.slice(16).map(row), [['resource.deleted', null, me.id]])
  t.ok(events.slice(12, 16).every((e) => e.data === null && e.previous !== null), 'a delete: data null, previous the allocation')
  t.same(events.map((e) => e.position), events.map((_, i) => start + i + 1), 'positions follow one another: nothing refused or rolled back took one')
  t.equal(events.filter((e) => e.data?.description === 'never').length, 0, 'the rolled-back edit is nowhere')
  t.ok(events.every((e) => e.resource_id === car.id && e.resource_type === 'car'))
  t.match(events[10], { type: 'allocation.updated', data: { description: 'edited in psql' }, previous: { description: null } }, 'a psql UPDATE is announced like an API call')
  t.same((await readAfter(events.at(-1)!.position, 0)), [], 'and nothing more')
})

t.test('data and previous are the representation GET returns, field for field', async (t) => {
  t.equal((await call(app, 'PUT', '/api/resource-types/lorry/rules', { buffer_after: 'PT30M', buffer_before: 'PT5M' })).statusCode, 200)
  t.teardown(() => call(app, 'PUT', '/api/resource-types/lorry/rules', {}))
  const lorry = await createResource(app, 'lorry')
  const start = await head()
  const made = [
    await book(app, lorry.id, '2031-02-01T09:00:00.123456Z', '2031-02-01T10:00:00Z', { description: 'Ünïcødé "quotes"', data: { job: 'J-1', nested: { list: [1, 2.5, null, true], empty: {} } } }),
    await book(app, lorry.id, '2031-02-02T09:00:00+05:30', '2031-02-02T10:00:00Z', { status: 'held', hold_seconds: 900 }),
    await book(app, lorry.id, '2031-03-01T00:00:00Z', null, { kind: 'maintenance' }),
    await call(app, 'POST', `/api/resources/${lorry.id}/series`, { starts_at: '2031-02-10T09:00:00Z', ends_at: '2031-02-10T10:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=WEEKLY;COUNT=1' })
  ]
  t.ok(made.every((res) => res.statusCode === 201), made.map((res) => res.statusCode).join())
  const ids = [...made.slice(0, 3).map((res) => res.json().id as string), made[3]!.json().allocations[0].id as string]
  t.equal((await call(app, 'PATCH', `/api/allocations/${ids[0]}`, { description: 'moved', starts_at: '2031-02-01T08:00:00Z' })).statusCode, 200)

  const events = await readAfter(start, 5)
  const fields = Object.keys(Allocation.properties)
  for (const [i, id] of ids.entries()) {
    const got = (await call(app, 'GET', `/api/allocations/${id}`)).json<Record<string, unknown>>()
    const event = events.filter((e) => e.allocation_id === id).at(-1)!
    t.same(Object.keys(event.data!), fields, `allocation ${i}: the same fields, in GET's order`)
    t.same(event.data, got, `allocation ${i}: every value as GET gives it`)
  }
  const move = events.find((e) => e.type === 'allocation.updated')!
  t.same(move.previous, events.find((e) => e.allocation_id === ids[0] && e.type === 'allocation.created')!.data, 'previous is the allocation as the event before left it')
  t.match(events.find((e) => e.allocation_id === ids[1])!.data, { status: 'held', buffer_before: 'PT5M', buffer_after: 'PT30M', expires_at: /Z$/ })

  const resourceEvent = (await readAfter(0, 100_000, `&resource_id=${lorry.id}&type=resource.created`))[0]!
  t.same(Object.keys(resourceEvent.data!), Object.keys(Resource.properties), 'a resource: the fields of GET /api/resources/{id}')
  t.same(resourceEvent.data, (await call(app, 'GET', `/api/resources/${lorry.id}`)).json(), 'and their values')
})

t.test('every item matches the documented Event schema; the reply is JSON', async (t) => {
  const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default
  const ajv = new Ajv({ strict: false })
  addFormats(ajv)
  const validate = ajv.compile(FeedEvent)
  const res = await call(app, 'GET', '/api/events?limit=1000')
  t.match(res.headers['content-type'], /^application\/json/)
  const events = res.json<Event[]>()
  t.ok(events.length > 20)
  const invalid = events.flatMap((e) => validate(structuredClone(e)) ? [] : [[e.position, ajv.errorsText(validate.errors)]])
  t.same(invalid, [], 'every event valid')
  t.same(events.map((e) => e.position), [...events.map((e) => e.position)].sort((a, b) => a - b), 'ordered by position')
})

t.test('paging: Link rel="next" on a full page, the pages together are the feed, none twice; filters', async (t) => {
  const all = (await call(app, 'GET', '/api/events?limit=1000')).json<Event[]>()
  const pages: Event[] = []
  let url = '/api/events?limit=4&wait=0'
  for (let guard = 0; guard < 1000; guard++) {
    const res = await call(app, 'GET', url)
    const page = res.json<Event[]>()
    pages.push(...page)
    const link = res.headers.link as string | undefined
    if (!link) {
      t.ok(page.length < 4, 'no Link only on a short page')
      break
    }
    t.match(link, new RegExp(`^</api/events\\?limit=4&wait=0&after=${page.at(-1)!.position}>; rel="next"$`))
    url = /^<([^>]+)>/.exec(link)![1]!
  }
  t.same(pages.map((e) => e.id), all.map((e) => e.id), 'the pages are the feed')

  const types = (await call(app, 'GET', '/api/events?limit=1000&type=allocation.cancelled,resource.deleted')).json<Event[]>()
  t.ok(types.length > 0 && types.every((e) => e.type === 'allocation.cancelled' || e.type === 'resource.deleted'), 'type, comma-separated')
  const lorries = (await call(app, 'GET', '/api/events?limit=1000&resource_type=lorry')).json<Event[]>()
  t.ok(lorries.length > 0 && lorries.every((e) => e.resource_type === 'lorry'), 'resource_type')
  const one = lorries[0]!.resource_id
  t.same((await call(app, 'GET', `/api/events?limit=1000&resource_id=${one}`)).json<Event[]>().map((e) => e.id),
    all.filter((e) => e.resource_id === one).map((e) => e.id), 'resource_id')

  for (const [query, field] of [['type=allocation.moved', 'querystring/type'], ['after=-1', 'querystring/after'], ['wait=31', 'querystring/wait'],
    ['limit=0', 'querystring/limit'], ['resource_id=nope', 'querystring/resource_id'], ['resource_type=boat', 'querystring/resource_type'], ['since=1', 'querystring/since']] as const) {
    const bad = await call(app, 'GET', `/api/events?${query}`)
    t.equal(bad.statusCode, 400, query)
    t.match(bad.json().message, field, `${query}: the message names ${field}`)
  }
})

t.test('long-polling: wait answers as soon as an event commits (a psql UPDATE here), else [] after the wait', async (t) => {
  const car = await createResource(app, 'car')
  const booked = (await book(app, car.id, slot(20).starts_at, slot(20).ends_at)).json()
  const now = await head()
  const empty = Date.now()
  const nothing = await call(app, 'GET', `/api/events?after=${now}&wait=1`)
  t.same(nothing.json(), [], 'nothing happened: []')
  t.ok(Date.now() - empty >= 950, 'after waiting the second asked for')
  const asked = Date.now()
  const waiting = call(app, 'GET', `/api/events?after=${now}&wait=20`)
  await sleep(300)
  await sql(app, 'UPDATE allocation SET description = $2 WHERE id = $1', [booked.id, 'by hand, while someone waits'])
  const res = await waiting
  t.match(res.json(), [{ type: 'allocation.updated', allocation_id: booked.id, actor_id: null, data: { description: 'by hand, while someone waits' } }])
  t.ok(Date.now() - asked < 15_000, `answered when the change came (${Date.now() - asked} ms), not at the end of the wait`)
})

t.test('a lost listening connection is replaced, and long-polls still hear of changes', async (t) => {
  const metric = async () => Number(/^invsys_listener_reconnects_total (\d+)$/m.exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1])
  const before = await metric()
  await endSessions(app, 'invsys-api-listener')
  for (let waited = 0; (await metric()) === before && waited < 10_000; waited += 100) await sleep(100)
  t.equal(await metric(), before + 1, 'reconnected, and counted')
  const car = await createResource(app, 'car')
  const now = await head()
  const waiting = call(app, 'GET', `/api/events?after=${now}&wait=20`)
  await sleep(200)
  await sql(app, 'UPDATE resource SET name = $2 WHERE id = $1', [car.id, `${car.name}-by-hand`])
  t.match((await waiting).json(), [{ type: 'resource.updated', resource_id: car.id }])
})

t.test('a hold that runs out is announced as expired within seconds, though nothing touches its resource', async (t) => {
  const car = await createResource(app, 'car')
  const hold = (await book(app, car.id, slot(25).starts_at, slot(25).ends_at, { status: 'held', hold_seconds: 1 })).json()
  const after = await head()
  const seen: Event[] = []
  for (const started = Date.now(); !seen.some((e) => e.type === 'allocation.expired') && Date.now() - started < 45_000;) {
    seen.push(...(await call(app, 'GET', `/api/events?after=${seen.at(-1)?.position ?? after}&resource_id=${car.id}&wait=20`)).json<Event[]>())
  }
  const expired = seen.find((e) => e.type === 'allocation.expired')
  t.ok(expired, 'allocation.expired came')
  t.match(expired, { allocation_id: hold.id, actor_id: null, data: { status: 'expired' }, previous: { status: 'held' } })
  const late = (Date.parse(expired!.occurred_at) - Date.parse(hold.expires_at)) / 1000
  t.ok(late >= 0 && late < 60, `written ${late.toFixed(1)} s after expires_at (the sweep runs every 15 s)`)
  t.equal((await call(app, 'GET', `/api/allocations/${hold.id}`)).json().status, 'expired')
})

t.test('past EVENT_RETENTION_DAYS: 410 CURSOR_EXPIRED for an older cursor; resource events go, allocation history stays', async (t) => {
  const car = await createResource(app, 'car')
  const booked = (await book(app, car.id, slot(28).starts_at, slot(28).ends_at)).json()
  const last = await head()
  // Everything so far happened 40 days ago.
  await sql(app, `UPDATE allocation_event SET at = now() - interval '40 days' WHERE position > 0;
    UPDATE resource_event SET occurred_at = now() - interval '40 days' WHERE position > 0`)
  const recent = await createResource(app, 'car')
  const kept = await head()
  t.equal(await advanceKeptFrom(app.pg.pool, app.config.eventRetentionDays), kept, 'the feed now starts at the first recent event')
  await deleteUnservedEvents(app.pg.pool, 1000)
  const gone = await call(app, 'GET', '/api/events?after=0')
  t.equal(gone.statusCode, 410)
  t.match(gone.json(), { code: 'CURSOR_EXPIRED', message: new RegExp(`continue with after=${kept - 1}`) })
  t.equal((await call(app, 'GET', `/api/events?after=${kept - 2}`)).statusCode, 410, 'one short of the start is too old')
  const from = await call(app, 'GET', `/api/events?after=${kept - 1}`)
  t.equal(from.statusCode, 200)
  t.match(from.json(), [{ position: kept, type: 'resource.created', resource_id: recent.id }])
  t.same((await call(app, 'GET', '/api/events')).json(), from.json(), 'without after: from the oldest kept')
  t.same(await sql(app, 'SELECT count(*)::int AS n FROM resource_event WHERE position > 0 AND position < $1', [kept]), [{ n: 0 }], 'resource events past retention are deleted')
  t.equal((await call(app, 'GET', `/api/allocations/${booked.id}/history`)).json().length, 1, 'an allocation\'s history is kept')
  t.ok(last < kept)
})

t.test('closing the app answers long-polls at once', async (t) => {
  const second = await buildApp({ ...loadConfig({ LOG_LEVEL: 'silent', MAX_EVENT_LOOP_DELAY_MS: '0' }), databaseUrl: app.databaseUrl })
  const now = await head()
  const asked = Date.now()
  const waiting = second.inject({ method: 'GET', url: `/api/events?after=${now}&wait=30`, headers: { authorization: `Bearer ${app.adminToken}` } })
  await sleep(300)
  await second.close()
  const res = await waiting
  t.equal(res.statusCode, 200)
  t.same(res.json(), [])
  t.ok(Date.now() - asked < 10_000, `answered when the app closed (${Date.now() - asked} ms), not 30 s later`)
})
