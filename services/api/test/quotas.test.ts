import t, { type Test } from 'tap'
import { ERROR_CODES } from '../src/plugins/errors.js'
import { bearer, buildTestApp, call, createAccount, createResource, createSite, sql, type Response, type TestAccount } from './helpers.js'

/**
 * Fair-share quotas: how much one member may have booked per calendar period in the
 * rules' time zone, counted by the part of each live booking within the period, per type
 * (every resource of it) and per resource, both binding; judged for bookings, holds,
 * moves, series and book-any-free; and holding under concurrency, where PostgreSQL
 * decides: parallel requests over real HTTP at a quota's edge book exactly the quota.
 */

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const asMember = { token: member.token }

type Caller = { token?: string }

async function setTypeRules (t: Test, type: string, rules: Record<string, unknown>): Promise<void> {
  const res = await call(app, 'PUT', `/api/resource-types/${type}/rules`, rules)
  if (res.statusCode !== 200) throw new Error(`rules not set: ${res.body}`)
  t.teardown(() => call(app, 'PUT', `/api/resource-types/${type}/rules`, {}))
}

async function setRules (resourceId: string, rules: Record<string, unknown>): Promise<void> {
  const res = await call(app, 'PUT', `/api/resources/${resourceId}/rules`, rules)
  if (res.statusCode !== 200) throw new Error(`rules not set: ${res.body}`)
}

const book = (resourceId: string, startsAt: string, endsAt: string | null, options: Caller = asMember, extra: Record<string, unknown> = {}): Promise<Response> =>
  call(app, 'POST', `/api/resources/${resourceId}/allocations`, { starts_at: startsAt, ends_at: endsAt, ...extra }, options)

async function expectBooking (t: Test, resourceId: string, span: [string, string | null], status: number, label: string, options: Caller = asMember): Promise<Response> {
  const res = await book(resourceId, span[0], span[1], options)
  t.equal(res.statusCode, status, `${label}: ${status}${res.statusCode === status ? '' : ` (${res.body})`}`)
  return res
}

t.test('a type\'s quotas count a member\'s bookings of every resource of the type, per calendar period in its zone', async (t) => {
  await setTypeRules(t, 'lorry', {
    time_zone: 'Europe/Lisbon',
    quotas: [{ period: 'week', max_duration: 'PT10H', max_bookings: null }, { period: 'day', max_duration: null, max_bookings: 2 }]
  })
  const a = await createResource(app, 'lorry')
  const b = await createResource(app, 'lorry')
  // The week of Monday 6 January 2031 (Lisbon is on UTC in winter).
  await expectBooking(t, a.id, ['2031-01-06T08:00:00Z', '2031-01-06T12:00:00Z'], 201, 'Monday, 4 hours on one lorry')
  await expectBooking(t, b.id, ['2031-01-06T13:00:00Z', '2031-01-06T15:00:00Z'], 201, 'Monday, 2 hours on another')
  const third = await expectBooking(t, b.id, ['2031-01-06T16:00:00Z', '2031-01-06T17:00:00Z'], 422, 'a third booking on Monday')
  t.same(third.json(), {
    statusCode: 422,
    code: 'RULE_QUOTA',
    error: 'Unprocessable Entity',
    message: 'quota: its type\'s quota (counting every resource of the type) allows a member at most 2 bookings per day (in Europe/Lisbon); ' +
      'the day from 2031-01-06T00:00:00Z to 2031-01-07T00:00:00Z already has PT6H in 2 bookings, and this booking would add PT1H',
    hint: ERROR_CODES.RULE_QUOTA.action,
    rule: {
      name: 'quota',
      limit: { period: 'day', max_duration: null, max_bookings: 2 },
      source: 'type',
      resource_id: b.id,
      time_zone: 'Europe/Lisbon',
      period: { starts_at: '2031-01-06T00:00:00Z', ends_at: '2031-01-07T00:00:00Z' },
      used: { duration: 'PT6H', bookings: 2 }
    }
  }, 'the 422 names the quota, the period and what is used')
  await expectBooking(t, a.id, ['2031-01-07T08:00:00Z', '2031-01-07T12:00:00Z'], 201, 'Tuesday, 4 hours: exactly the 10 hours of the week')
  const over = await expectBooking(t, a.id, ['2031-01-08T08:00:00Z', '2031-01-08T08:01:00Z'], 422, 'a minute more in the week')
  t.match(over.json(), { rule: { limit: { period: 'week', max_duration: 'PT10H' }, period: { starts_at: '2031-01-06T00:00:00Z', ends_at: '2031-01-13T00:00:00Z' }, used: { duration: 'PT10H', bookings: 3 } } })
  await expectBooking(t, a.id, ['2031-01-12T23:00:00Z', '2031-01-13T01:00:00Z'], 422, 'Sunday 23:00 into Monday: its Sunday hour is over the week\'s')
  await expectBooking(t, a.id, ['2031-01-13T00:00:00Z', '2031-01-13T10:00:00Z'], 201, 'the next week starts on Monday at 00:00: 10 hours')
  // Summer: the week starts at Monday 00:00 WEST, Sunday 23:00 UTC.
  await expectBooking(t, a.id, ['2031-07-06T22:00:00Z', '2031-07-06T23:00:00Z'], 201, 'summer: Sunday 23:00 WEST, the end of a week')
  await expectBooking(t, a.id, ['2031-07-06T23:00:00Z', '2031-07-07T09:00:00Z'], 201, 'summer: from Monday 00:00 WEST, a new week of 10 hours')

  const other = await createAccount(app, 'member')
  await expectBooking(t, b.id, ['2031-01-08T09:00:00Z', '2031-01-08T10:00:00Z'], 201, 'another member has a quota of their own', { token: other.token })
  await expectBooking(t, b.id, ['2031-01-08T10:00:00Z', '2031-01-08T20:00:00Z'], 201, 'an admin is not bound', {})
  await expectBooking(t, b.id, ['2031-01-09T10:00:00Z', '2031-01-09T11:00:00Z'], 201, '…and an admin\'s bookings count for nobody', { token: other.token })

  const monday = (await call(app, 'GET', `/api/allocations?resource_id=${a.id}&from=2031-01-06T00:00:00Z&to=2031-01-07T00:00:00Z`)).json()[0]
  t.equal((await call(app, 'DELETE', `/api/allocations/${monday.id}`, undefined, asMember)).statusCode, 204, 'the member cancels Monday\'s 4 hours')
  await expectBooking(t, b.id, ['2031-01-10T08:00:00Z', '2031-01-10T12:00:00Z'], 201, 'a cancelled booking no longer counts: 4 hours more')
  await expectBooking(t, b.id, ['2031-01-11T08:00:00Z', '2031-01-11T08:01:00Z'], 422, 'and then the week is full again')
})

t.test('a resource\'s own quotas count that resource, in its zone, and the type\'s bind as well', async (t) => {
  await setTypeRules(t, 'truck', { quotas: [{ period: 'day', max_duration: 'PT6H' }] })
  const limited = await createResource(app, 'truck')
  const plain = await createResource(app, 'truck')
  await setRules(limited.id, { time_zone: 'Asia/Kolkata', quotas: [{ period: 'day', max_duration: 'PT2H' }] })
  // Asia/Kolkata days begin at 18:30 UTC.
  await expectBooking(t, limited.id, ['2031-01-06T17:30:00Z', '2031-01-06T19:30:00Z'], 201, 'two hours across the Kolkata midnight: one in each local day')
  await expectBooking(t, limited.id, ['2031-01-06T16:30:00Z', '2031-01-06T17:30:00Z'], 201, 'the first local day\'s second hour')
  const refused = await expectBooking(t, limited.id, ['2031-01-06T10:00:00Z', '2031-01-06T10:15:00Z'], 422, 'a quarter more that local day')
  t.match(refused.json(), {
    code: 'RULE_QUOTA',
    rule: { source: 'resource', time_zone: 'Asia/Kolkata', period: { starts_at: '2031-01-05T18:30:00Z', ends_at: '2031-01-06T18:30:00Z' }, used: { duration: 'PT2H', bookings: 2 } }
  })
  await expectBooking(t, limited.id, ['2031-01-06T19:30:00Z', '2031-01-06T20:30:00Z'], 201, 'the next local day has an hour left')
  await expectBooking(t, plain.id, ['2031-01-06T00:00:00Z', '2031-01-06T02:00:00Z'], 201, 'the other truck has no quota of its own; the type\'s UTC day had 4 of its 6 hours used: now all 6')
  const typeRefusal = await expectBooking(t, plain.id, ['2031-01-06T05:00:00Z', '2031-01-06T05:01:00Z'], 422, 'the type\'s day is full')
  t.match(typeRefusal.json(), { rule: { source: 'type', time_zone: 'UTC', period: { starts_at: '2031-01-06T00:00:00Z', ends_at: '2031-01-07T00:00:00Z' }, used: { duration: 'PT6H', bookings: 4 } } })
  const [check] = await sql<{ quotas: unknown, source: string }>(app, 'SELECT quotas, quotas_source AS source FROM effective_rule WHERE resource_id = $1', [plain.id])
  t.same(check, { quotas: [{ period: 'day', max_duration: 'PT6H' }], source: 'type' }, 'psql: the view shows the type\'s quotas for a resource without its own')
})

t.test('quotas count held and confirmed bookings, not run-out holds, cancelled ones or maintenance; elapsed time across daylight saving', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { time_zone: 'America/New_York', quotas: [{ period: 'day', max_duration: 'PT24H' }, { period: 'month', max_bookings: 3 }] })
  await expectBooking(t, car.id, ['2031-03-09T05:00:00Z', '2031-03-10T04:00:00Z'], 201, 'the whole 23-hour spring Sunday')
  await expectBooking(t, car.id, ['2031-11-02T04:00:00Z', '2031-11-03T05:00:00Z'], 422, 'the whole 25-hour autumn Sunday is more than PT24H')
  await expectBooking(t, car.id, ['2031-11-02T05:00:00Z', '2031-11-03T05:00:00Z'], 201, 'its last 24 hours are not')

  const held = await book(car.id, '2031-03-11T12:00:00Z', '2031-03-11T13:00:00Z', asMember, { status: 'held', hold_seconds: 600 })
  t.equal(held.statusCode, 201, 'a hold is judged and counted as a booking')
  await sql(app, `INSERT INTO allocation (resource_id, during, status, created_at, expires_at, owner_id)
    VALUES ($1, tstzrange('2031-03-12 12:00Z', '2031-03-12 13:00Z'), 'held', now() - interval '20 minutes', now() - interval '10 minutes', $2)`, [car.id, member.id])
  await sql(app, `INSERT INTO allocation (resource_id, during, status, cancelled_at, owner_id)
    VALUES ($1, tstzrange('2031-03-13 12:00Z', '2031-03-13 13:00Z'), 'cancelled', now(), $2)`, [car.id, member.id])
  await sql(app, `INSERT INTO allocation (resource_id, during, kind, owner_id)
    VALUES ($1, tstzrange('2031-03-14 12:00Z', '2031-03-14 13:00Z'), 'maintenance', $2)`, [car.id, member.id])
  await expectBooking(t, car.id, ['2031-03-15T12:00:00Z', '2031-03-15T13:00:00Z'], 201, 'the third booking of March: the run-out hold, the cancelled and the maintenance do not count')
  const fourth = await expectBooking(t, car.id, ['2031-03-16T12:00:00Z', '2031-03-16T13:00:00Z'], 422, 'the fourth')
  t.match(fourth.json(), { rule: { limit: { period: 'month', max_bookings: 3 }, period: { starts_at: '2031-03-01T05:00:00Z', ends_at: '2031-04-01T04:00:00Z' }, used: { bookings: 3 } } },
    'the month, in New York time, from EST to EDT')
  t.equal((await call(app, 'DELETE', `/api/allocations/${held.json().id}`, undefined, asMember)).statusCode, 204)
  await expectBooking(t, car.id, ['2031-03-16T12:00:00Z', '2031-03-16T13:00:00Z'], 201, 'once the hold is cancelled, there is room')

  await setRules(car.id, { quotas: [{ period: 'week', max_bookings: 10 }], members_may_book_open_ended: true })
  const open = await expectBooking(t, car.id, ['2032-01-01T00:00:00Z', null], 422, 'an open-ended booking fits no quota')
  t.match(open.json(), { code: 'RULE_QUOTA', message: /an open-ended booking fits no quota$/, rule: { used: { bookings: 0 } } })
})

t.test('a move (PATCH) counts the booking where it goes, not also where it was; an admin\'s move is not judged', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { quotas: [{ period: 'day', max_duration: 'PT3H' }] })
  const first = (await expectBooking(t, car.id, ['2031-02-03T08:00:00Z', '2031-02-03T10:00:00Z'], 201, 'two hours')).json()
  const move = (body: Record<string, unknown>, options: Caller = asMember) => call(app, 'PATCH', `/api/allocations/${first.id}`, body, options)
  t.equal((await move({ starts_at: '2031-02-03T09:00:00Z', ends_at: '2031-02-03T12:00:00Z' })).statusCode, 200, 'moved and made three hours: itself is not counted twice')
  const longer = await move({ ends_at: '2031-02-03T12:01:00Z' })
  t.match(longer.json(), { statusCode: 422, code: 'RULE_QUOTA', rule: { used: { duration: 'PT0S', bookings: 0 } } }, 'a minute longer is over; what is used leaves it out')
  await expectBooking(t, car.id, ['2031-02-04T08:00:00Z', '2031-02-04T11:00:00Z'], 201, 'the next day full')
  t.equal((await move({ starts_at: '2031-02-04T11:00:00Z', ends_at: '2031-02-04T12:00:00Z' })).json().code, 'RULE_QUOTA', 'a move into a full day')
  t.equal((await move({ starts_at: '2031-02-04T11:00:00Z', ends_at: '2031-02-04T12:00:00Z' }, {})).statusCode, 200, 'an admin may')
})

t.test('series: each occurrence counts the ones before it; over the quota fails all_or_nothing and is skipped in skip_conflicts', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { time_zone: 'Europe/Lisbon', quotas: [{ period: 'week', max_bookings: 3 }] })
  const series = (mode: string, options: Caller = asMember) => call(app, 'POST', `/api/resources/${car.id}/series`, {
    starts_at: '2031-01-06T09:00:00Z', ends_at: '2031-01-06T10:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=10', mode
  }, options)
  const all = await series('all_or_nothing')
  t.match(all.json(), {
    statusCode: 422,
    code: 'RULE_QUOTA',
    message: /^4 occurrences of the series break a booking rule; the first, at 2031-01-09T09:00:00Z: quota: its quota allows a member at most 3 bookings per week/,
    rule: { name: 'quota', period: { starts_at: '2031-01-06T00:00:00Z' }, used: { bookings: 3 } }
  }, 'Thursday and Friday of each week are over; the first is named')
  t.same(await sql(app, 'SELECT 1 FROM allocation WHERE resource_id = $1', [car.id]), [], 'nothing booked, not even the series')
  const skip = await series('skip_conflicts')
  t.equal(skip.statusCode, 201, skip.body)
  t.same(skip.json().allocations.map((a: { starts_at: string }) => a.starts_at.slice(0, 10)),
    ['2031-01-06', '2031-01-07', '2031-01-08', '2031-01-13', '2031-01-14', '2031-01-15'], 'three a week')
  t.match(skip.json().skipped, [
    { starts_at: '2031-01-09T09:00:00Z', reason: 'rule', rule: { name: 'quota', used: { bookings: 3 } }, conflicts: [] },
    { starts_at: '2031-01-10T09:00:00Z', reason: 'rule', rule: { name: 'quota', used: { bookings: 3 } } },
    { starts_at: '2031-01-16T09:00:00Z', reason: 'rule', rule: { name: 'quota', period: { starts_at: '2031-01-13T00:00:00Z' } } },
    { starts_at: '2031-01-17T09:00:00Z', reason: 'rule' }
  ], 'the rest skipped, each with the quota as the insert judged it')
  const admin = await call(app, 'POST', `/api/resources/${car.id}/series`, {
    starts_at: '2031-02-03T09:00:00Z', ends_at: '2031-02-03T10:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=DAILY;COUNT=10'
  })
  t.equal(admin.statusCode, 201, 'an admin\'s series is not judged')
})

t.test('book-any-free: a resource whose quota is used up is passed over; when every one\'s is, the member hears the quota', async (t) => {
  const site = await createSite(app)
  const first = await createResource(app, 'computer', { site_id: site.id, name: 'A quota' })
  const second = await createResource(app, 'computer', { site_id: site.id, name: 'B quota' })
  await setRules(first.id, { quotas: [{ period: 'day', max_bookings: 1 }] })
  await setRules(second.id, { quotas: [{ period: 'day', max_bookings: 1 }] })
  const any = (startsAt: string, endsAt: string) => call(app, 'POST', '/api/allocations', { type: 'computer', site_id: site.id, starts_at: startsAt, ends_at: endsAt }, asMember)
  t.match((await any('2031-04-01T08:00:00Z', '2031-04-01T09:00:00Z')).json(), { resource_id: first.id })
  t.match((await any('2031-04-01T10:00:00Z', '2031-04-01T11:00:00Z')).json(), { resource_id: second.id }, 'the first has had its one booking that day')
  t.match((await any('2031-04-01T12:00:00Z', '2031-04-01T13:00:00Z')).json(), { statusCode: 422, code: 'RULE_QUOTA', rule: { resource_id: first.id } }, 'and then neither may')
})

// ---------------------------------------------------------------------------------------
// Under concurrency, over real HTTP.

const base = await (async () => {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
})()

async function post (path: string, body: unknown, account: TestAccount): Promise<{ status: number, body: { id?: string, code?: string } }> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(account.token) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000)
  })
  return { status: res.status, body: await res.json() as { id?: string, code?: string } }
}

async function deadlocks (): Promise<number> {
  const { rows } = await app.pg.pool.query<{ deadlocks: string }>('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()')
  return Number(rows[0]!.deadlocks)
}

const hour = (day: string, h: number) => new Date(Date.parse(`${day}T00:00:00Z`) + h * 3600_000).toISOString()

t.test('parallel bookings by one member at a quota\'s edge: exactly the quota is booked, never more', async (t) => {
  await setTypeRules(t, 'freezer', { quotas: [{ period: 'day', max_bookings: 3 }, { period: 'week', max_duration: 'PT5H' }] })
  const freezers = [await createResource(app, 'freezer'), await createResource(app, 'freezer'), await createResource(app, 'freezer')]
  const deadlocksBefore = await deadlocks()
  for (const [round, day] of ['2031-05-05', '2031-05-12', '2031-05-19'].entries()) {
    const racer = await createAccount(app, 'member')
    // Twelve one-hour bookings of the same Monday, spread over three freezers, all at once: the day allows three.
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      post(`/api/resources/${freezers[i % 3]!.id}/allocations`, { starts_at: hour(day, i), ends_at: hour(day, i + 1) }, racer)))
    const statuses = results.map((r) => r.status)
    t.equal(statuses.filter((s) => s === 201).length, 3, `round ${round + 1}: exactly three 201s (${statuses.join(' ')})`)
    t.ok(results.every((r) => r.status === 201 || r.body.code === 'RULE_QUOTA'), 'the others hear RULE_QUOTA')
    const [{ n }] = await sql<{ n: number }>(app, 'SELECT count(*)::int AS n FROM allocation WHERE owner_id = $1 AND status = \'confirmed\'', [racer.id]) as [{ n: number }]
    t.equal(n, 3, 'three rows in the database')
    // The same member, the rest of the week: five hours at most, asked for in twelve parallel hours on Tuesday to Friday.
    const week = await Promise.all(Array.from({ length: 12 }, (_, i) => {
      const start = Date.parse(`${day}T00:00:00Z`) + (1 + (i % 4)) * 86_400_000 + Math.floor(i / 4) * 3600_000
      return post(`/api/resources/${freezers[i % 3]!.id}/allocations`,
        { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 3600_000).toISOString() }, racer)
    }))
    t.equal(week.filter((r) => r.status === 201).length, 2, `round ${round + 1}: the week's five hours hold: two more`)
    const [{ hours }] = await sql<{ hours: number }>(app, `
      SELECT extract(epoch FROM sum(upper(during) - lower(during)))::int / 3600 AS hours FROM allocation WHERE owner_id = $1 AND status = 'confirmed'`, [racer.id]) as [{ hours: number }]
    t.equal(hours, 5, 'five hours booked in all')
  }
  t.equal(await deadlocks() - deadlocksBefore, 0, 'no deadlock was detected')
})

t.test('parallel book-any-free and a series by one member at a quota\'s edge', async (t) => {
  const site = await createSite(app)
  await setTypeRules(t, 'car', { time_zone: 'Europe/Lisbon', quotas: [{ period: 'day', max_bookings: 4 }] })
  for (let i = 0; i < 4; i++) await createResource(app, 'car', { site_id: site.id })
  const seriesCar = await createResource(app, 'car', { site_id: site.id })
  const racer = await createAccount(app, 'member')
  const results = await Promise.all([
    ...Array.from({ length: 8 }, (_, i) => post('/api/allocations', { type: 'car', site_id: site.id, starts_at: hour('2031-06-02', 8 + i), ends_at: hour('2031-06-02', 9 + i) }, racer)),
    post(`/api/resources/${seriesCar.id}/series`,
      { starts_at: hour('2031-06-02', 20), ends_at: hour('2031-06-02', 21), time_zone: 'UTC', rrule: 'FREQ=WEEKLY;COUNT=3', mode: 'skip_conflicts' }, racer)
  ])
  t.ok(results.every((r) => r.status === 201 || r.body.code === 'RULE_QUOTA' || r.body.code === 'NO_AVAILABILITY'), results.map((r) => r.body.code ?? r.status).join(' '))
  const [{ n }] = await sql<{ n: number }>(app, `
    SELECT count(*)::int AS n FROM allocation
    WHERE owner_id = $1 AND status = 'confirmed' AND during && tstzrange('2031-06-01 23:00Z', '2031-06-02 23:00Z')`, [racer.id]) as [{ n: number }]
  t.equal(n, 4, 'exactly four bookings that Lisbon day, whoever won')
})

t.test('psql: PostgreSQL itself refuses a quota whose max_duration is no interval or is negative (also on PostgreSQL 15)', async (t) => {
  const setQuotas = (quotas: unknown) => sql(app, 'UPDATE resource_type_rule SET quotas = $1::jsonb WHERE type = \'car\'', [JSON.stringify(quotas)])
  await sql(app, 'INSERT INTO resource_type_rule (type) VALUES (\'car\') ON CONFLICT (type) DO NOTHING')
  t.teardown(() => sql(app, 'UPDATE resource_type_rule SET quotas = NULL WHERE type = \'car\''))
  for (const maxDuration of ['a fortnight', '-PT1H', 'P99999999999Y']) {
    await t.rejects(setQuotas([{ period: 'day', max_duration: maxDuration }]), { code: '23514', constraint: 'resource_type_rule_quotas_valid' }, `max_duration ${maxDuration}`)
  }
  await t.resolves(setQuotas([{ period: 'day', max_duration: 'PT10H' }, { period: 'week', max_duration: '40 hours', max_bookings: 5 }]), 'an ISO 8601 duration, and interval text as psql writes it')
})
