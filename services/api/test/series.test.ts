import t from 'tap'
import { bearer, book, buildTestApp, call, createAccount, createResource, fetchJson, listen, sql } from './helpers.js'

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const other = await createAccount(app, 'member')

interface Occurrence { starts_at: string, ends_at: string }
interface Allocation extends Occurrence { id: string, status: string, series_id: string | null, owner_id: number | null, kind: string }

/**
 * The expected occurrences, worked out independently of the code under test: dates by
 * walking the calendar a day at a time, UTC offsets from each zone's published rules.
 * Europe/Lisbon is UTC+1 from 01:00 UTC on the last Sunday of March to 01:00 UTC on the
 * last Sunday of October, UTC+0 otherwise. America/New_York is UTC-4 from the second
 * Sunday of March to the first Sunday of November (at 02:00 local), UTC-5 otherwise.
 * Every local time used with this helper is well away from the 01:00–03:00 changes.
 */
const lastSunday = (year: number, month: number) => {
  const last = new Date(Date.UTC(year, month + 1, 0))
  return last.getUTCDate() - last.getUTCDay()
}
const nthSunday = (year: number, month: number, n: number) => {
  const first = new Date(Date.UTC(year, month, 1)).getUTCDay()
  return 1 + ((7 - first) % 7) + 7 * (n - 1)
}
/** The offset in hours on a date, for a local time later in the day than the change. */
function offsetHours (zone: 'Europe/Lisbon' | 'America/New_York' | 'UTC', date: Date): number {
  const y = date.getUTCFullYear()
  const day = Date.UTC(y, date.getUTCMonth(), date.getUTCDate())
  const between = (from: number, to: number) => day >= from && day < to
  if (zone === 'UTC') return 0
  if (zone === 'Europe/Lisbon') return between(Date.UTC(y, 2, lastSunday(y, 2)), Date.UTC(y, 9, lastSunday(y, 9))) ? 1 : 0
  return between(Date.UTC(y, 2, nthSunday(y, 2, 2)), Date.UTC(y, 10, nthSunday(y, 10, 1))) ? -4 : -5
}

/** Local dates (YYYY-MM-DD) at a local time (hours, minutes) for `hours` hours, in UTC. */
function expected (zone: 'Europe/Lisbon' | 'America/New_York' | 'UTC', dates: string[], hour: number, minute: number, hours: number): Occurrence[] {
  return dates.map((d) => {
    const date = new Date(`${d}T00:00:00Z`)
    const start = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate(), hour, minute) - offsetHours(zone, date) * 3600_000
    return { starts_at: new Date(start).toISOString().replace('.000Z', 'Z'), ends_at: new Date(start + hours * 3600_000).toISOString().replace('.000Z', 'Z') }
  })
}

/** Calendar days from `from` on whose weekday (0 = Sunday) is in `weekdays`, `count` of them. */
function weekdays (from: string, days: number[], count: number): string[] {
  const out: string[] = []
  for (let d = Date.parse(`${from}T00:00:00Z`); out.length < count; d += 86_400_000) {
    if (days.includes(new Date(d).getUTCDay())) out.push(new Date(d).toISOString().slice(0, 10))
  }
  return out
}

const times = (allocations: Occurrence[]) => allocations.map(({ starts_at: s, ends_at: e }) => ({ starts_at: s, ends_at: e }))

async function series (resourceId: string, body: Record<string, unknown>, token?: string) {
  return call(app, 'POST', `/api/resources/${resourceId}/series`, body, token ? { token } : {})
}

const counts = async (resourceId: string) => (await sql<{ series: number, allocations: number }>(app, `
  SELECT (SELECT count(*)::int FROM series WHERE resource_id = $1) AS series,
         (SELECT count(*)::int FROM allocation WHERE resource_id = $1) AS allocations`, [resourceId]))[0]!

t.test('a weekly slot in Lisbon stays at 09:00 local across the March change (its UTC time moves)', async (t) => {
  const sequencer = await createResource(app, 'computer')
  const res = await series(sequencer.id, {
    starts_at: '2031-03-03T09:00:00+00:00',
    ends_at: '2031-03-03T11:00:00+00:00',
    time_zone: 'Europe/Lisbon',
    rrule: 'FREQ=WEEKLY;BYDAY=MO,WE;COUNT=20',
    description: 'spring term',
    data: { lab: 'genomics' }
  }, member.token)
  t.equal(res.statusCode, 201, res.body)
  const body = res.json()
  t.equal(res.headers.location, `/api/series/${body.id}`)
  t.match(body, { resource_id: sequencer.id, resource_type: 'computer', rrule: 'FREQ=WEEKLY;BYDAY=MO,WE;COUNT=20', time_zone: 'Europe/Lisbon', mode: 'all_or_nothing', kind: 'booking', owner_id: member.id, skipped: [] })
  const want = expected('Europe/Lisbon', weekdays('2031-03-03', [1, 3], 20), 9, 0, 2)
  t.same(times(body.allocations), want, 'every occurrence, compared with an independent expansion')
  t.equal(want[8]!.starts_at, '2031-03-31T08:00:00Z', 'after the change (30 March 2031) 09:00 Lisbon is 08:00 UTC')
  t.ok(body.allocations.every((a: Allocation) => a.series_id === body.id && a.owner_id === member.id && a.status === 'confirmed'), 'each carries series_id and its owner')
  t.same((await call(app, 'GET', `/api/series/${body.id}`)).json(), body, 'GET reads the same series')
  const listed = (await call(app, 'GET', `/api/resources/${sequencer.id}/allocations`)).json()
  t.same(times(listed), want, 'they are ordinary allocations of the resource')
  t.match(listed[0], { description: 'spring term', data: { lab: 'genomics' } })
})

t.test('and back at the October change', async (t) => {
  const res = await series((await createResource(app, 'computer')).id, {
    starts_at: '2031-10-20T08:00:00Z', ends_at: '2031-10-20T10:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20311105T235959Z'
  })
  t.equal(res.statusCode, 201, res.body)
  t.same(times(res.json().allocations), expected('Europe/Lisbon', weekdays('2031-10-20', [1, 3], 6), 9, 0, 2))
  t.same(res.json().allocations.map((a: Allocation) => a.starts_at.slice(11, 13)), ['08', '08', '09', '09', '09', '09'], 'the change is on 26 October 2031')
})

t.test('New York in both directions, and times that do not exist or exist twice', async (t) => {
  const nyc = async (startsAt: string, endsAt: string, rrule: string) => {
    const res = await series((await createResource(app, 'lorry')).id, { starts_at: startsAt, ends_at: endsAt, time_zone: 'America/New_York', rrule })
    t.equal(res.statusCode, 201, res.body)
    return times(res.json().allocations)
  }
  // Spring forward on Sunday 9 March 2031, fall back on Sunday 2 November 2031.
  t.same(await nyc('2031-03-07T14:00:00Z', '2031-03-07T15:00:00Z', 'FREQ=DAILY;COUNT=4'),
    expected('America/New_York', ['2031-03-07', '2031-03-08', '2031-03-09', '2031-03-10'], 9, 0, 1), 'spring: 09:00 EST, then 09:00 EDT')
  t.same(await nyc('2031-10-31T13:00:00Z', '2031-10-31T14:00:00Z', 'FREQ=DAILY;COUNT=4'),
    expected('America/New_York', ['2031-10-31', '2031-11-01', '2031-11-02', '2031-11-03'], 9, 0, 1), 'autumn: 09:00 EDT, then 09:00 EST')
  // 02:30 does not exist on 9 March: read with the offset before the gap (RFC 5545 3.3.5), it is 03:30 EDT.
  t.same(await nyc('2031-03-08T07:30:00Z', '2031-03-08T08:00:00Z', 'FREQ=DAILY;COUNT=3'), [
    { starts_at: '2031-03-08T07:30:00Z', ends_at: '2031-03-08T08:00:00Z' },
    { starts_at: '2031-03-09T07:30:00Z', ends_at: '2031-03-09T08:00:00Z' },
    { starts_at: '2031-03-10T06:30:00Z', ends_at: '2031-03-10T07:00:00Z' }
  ], 'the occurrence in the gap is kept, an hour later on the clock, and lasts as long')
  // 01:30 happens twice on 2 November: the first (EDT) is taken.
  t.same(await nyc('2031-11-01T05:30:00Z', '2031-11-01T06:00:00Z', 'FREQ=DAILY;COUNT=3'), [
    { starts_at: '2031-11-01T05:30:00Z', ends_at: '2031-11-01T06:00:00Z' },
    { starts_at: '2031-11-02T05:30:00Z', ends_at: '2031-11-02T06:00:00Z' },
    { starts_at: '2031-11-03T06:30:00Z', ends_at: '2031-11-03T07:00:00Z' }
  ], 'the ambiguous time is its first occurrence')
  // An occurrence across the change lasts exactly as long as the first (RFC 5545 3.8.5.3).
  t.same((await nyc('2031-03-08T05:00:00Z', '2031-03-08T09:00:00Z', 'FREQ=DAILY;COUNT=2'))[1],
    { starts_at: '2031-03-09T05:00:00Z', ends_at: '2031-03-09T09:00:00Z' }, '00:00–04:00 becomes 00:00–05:00 on the clock, four hours all the same')
})

t.test('month ends: BYMONTHDAY=31 skips the shorter months, -1 is the last day', async (t) => {
  const res = await series((await createResource(app, 'car')).id, {
    starts_at: '2031-01-31T10:00:00Z', ends_at: '2031-01-31T12:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=MONTHLY;BYMONTHDAY=31;COUNT=7'
  })
  t.equal(res.statusCode, 201, res.body)
  const months = ['2031-01-31', '2031-03-31', '2031-05-31', '2031-07-31', '2031-08-31', '2031-10-31', '2031-12-31']
  t.same(times(res.json().allocations), expected('Europe/Lisbon', months, 10, 0, 2))
  const last = await series((await createResource(app, 'car')).id, {
    starts_at: '2032-01-31T10:00:00Z', ends_at: '2032-01-31T12:00:00Z', time_zone: 'UTC', rrule: 'FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=4'
  })
  t.same(times(last.json().allocations), expected('UTC', ['2032-01-31', '2032-02-29', '2032-03-31', '2032-04-30'], 10, 0, 2), 'leap February included')
  const lastFriday = await series((await createResource(app, 'car')).id, {
    starts_at: '2031-01-31T10:00:00Z', ends_at: '2031-01-31T12:00:00Z', time_zone: 'UTC', rrule: 'FREQ=MONTHLY;BYDAY=-1FR;COUNT=3'
  })
  t.same(times(lastFriday.json().allocations), expected('UTC', ['2031-01-31', '2031-02-28', '2031-03-28'], 10, 0, 2), 'the last Friday of each month')
})

t.test('COUNT and UNTIL: the same series either way; UNTIL is inclusive', async (t) => {
  const rule = (end: string) => ({ starts_at: '2031-06-03T16:00:00Z', ends_at: '2031-06-03T17:00:00Z', time_zone: 'Europe/Lisbon', rrule: `FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;${end}` })
  const book6 = async (end: string) => {
    const res = await series((await createResource(app, 'truck')).id, rule(end))
    t.equal(res.statusCode, 201, `${end}: ${res.body}`)
    return times(res.json().allocations)
  }
  const byCount = await book6('COUNT=6')
  t.same(byCount, expected('Europe/Lisbon', ['2031-06-03', '2031-06-05', '2031-06-17', '2031-06-19', '2031-07-01', '2031-07-03'], 17, 0, 1))
  t.same(await book6('UNTIL=20310703T160000Z'), byCount, 'UNTIL at the last start includes it')
  t.same(await book6('UNTIL=20310703T155959Z'), byCount.slice(0, 5), 'a second earlier leaves it out')
  t.same(await book6('UNTIL=20310703'), byCount, 'a date alone takes in that whole local day')
  t.same(await book6('until=20310703T170000'), byCount, 'a date-time without Z is local time in time_zone; names are case-insensitive')
  for (const [end, message] of [['COUNT=6;UNTIL=20310703T160000Z', /both COUNT and UNTIL/], ['', /needs COUNT or UNTIL/], ['UNTIL=20310601T000000Z', /UNTIL is before starts_at/]] as const) {
    const truck = await createResource(app, 'truck')
    const res = await series(truck.id, rule(end))
    t.equal(res.statusCode, 400, end)
    t.match(res.json(), { code: 'VALIDATION_ERROR', message })
    t.same(await counts(truck.id), { series: 0, allocations: 0 }, `${end}: nothing stored`)
  }
})

t.test('limits and strict rules: 400 naming the field and the limit, nothing stored', async (t) => {
  const car = await createResource(app, 'car')
  const base = { starts_at: '2031-01-06T09:00:00Z', ends_at: '2031-01-06T10:00:00Z', time_zone: 'UTC' }
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ rrule: 'FREQ=DAILY;COUNT=501' }, /body\/rrule COUNT is 501: a series has at most 500 occurrences/],
    [{ rrule: 'FREQ=DAILY;UNTIL=20321231T000000Z' }, /body\/rrule gives more than 500 occurrences/],
    [{ rrule: 'FREQ=WEEKLY;COUNT=200' }, /body\/rrule .*at most 2 years/],
    [{ rrule: 'FREQ=MONTHLY;UNTIL=20340101T000000Z' }, /body\/rrule .*at most 2 years/],
    [{ rrule: 'FREQ=MONTHLY;INTERVAL=12;BYMONTHDAY=30;COUNT=2', starts_at: '2031-02-03T09:00:00Z', ends_at: '2031-02-03T10:00:00Z' }, /at most 2 years/],
    [{ rrule: 'FREQ=DAILY;BYHOUR=9;COUNT=3' }, /body\/rrule part BYHOUR is not supported/],
    [{ rrule: 'FREQ=YEARLY;COUNT=3' }, /body\/rrule FREQ must be DAILY, WEEKLY or MONTHLY/],
    [{ rrule: 'FREQ=HOURLY;COUNT=3' }, /FREQ must be DAILY, WEEKLY or MONTHLY/],
    [{ rrule: 'DTSTART:20310106T090000Z\nRRULE:FREQ=DAILY;COUNT=3' }, /body\/rrule must not contain DTSTART/],
    [{ rrule: 'FREQ=DAILY;COUNT=3;COUNT=4' }, /COUNT twice/],
    [{ rrule: 'FREQ=WEEKLY;BYDAY=1MO;COUNT=3' }, /BYDAY may number a weekday/],
    [{ rrule: 'FREQ=WEEKLY;BYMONTHDAY=3;COUNT=3' }, /BYMONTHDAY with FREQ=WEEKLY/],
    [{ rrule: 'FREQ=MONTHLY;BYMONTHDAY=32;COUNT=3' }, /BYMONTHDAY must be from -31 to 31/],
    [{ rrule: 'FREQ=DAILY;COUNT=0' }, /COUNT must be a whole number from 1/],
    [{ rrule: 'FREQ=DAILY;UNTIL=20310230T000000Z' }, /UNTIL must be a date-time/],
    [{ rrule: 'FREQ=DAILY;COUNT=3', time_zone: 'Mars/Olympus' }, /body\/time_zone must be an IANA time zone name/],
    [{ rrule: 'FREQ=DAILY;COUNT=3', time_zone: '+01:00' }, /body\/time_zone must be an IANA time zone name/],
    [{ rrule: 'FREQ=DAILY;COUNT=3', ends_at: '2031-01-07T10:00:00Z' }, /body\/ends_at is too late: each occurrence must end before the next starts/],
    [{ rrule: 'FREQ=DAILY;COUNT=3', ends_at: '2031-01-06T09:00:00Z' }, /body\/starts_at must be before ends_at/],
    [{ rrule: 'FREQ=DAILY;COUNT=3', status: 'held', hold_seconds: 600 }, /body\/status is not an accepted property/],
    [{ rrule: 'FREQ=DAILY;COUNT=3', mode: 'some' }, /body\/mode must be one of all_or_nothing, skip_conflicts/],
    [{ rrule: 'FREQ=DAILY;COUNT=3', starts_at: null }, /body\/starts_at/]
  ]
  for (const [fields, message] of cases) {
    const res = await series(car.id, { ...base, ...fields })
    t.equal(res.statusCode, 400, `${JSON.stringify(fields)}: 400`)
    t.match(res.json().message, message, JSON.stringify(fields))
  }
  t.same(await counts(car.id), { series: 0, allocations: 0 }, 'nothing stored')
  const twoYears = await series(car.id, { ...base, rrule: 'FREQ=MONTHLY;COUNT=25' })
  t.equal(twoYears.statusCode, 201, 'exactly two years is allowed')
  t.equal(twoYears.json().allocations.at(-1).starts_at, '2033-01-06T09:00:00Z')
  const most = await series(car.id, { ...base, starts_at: '2035-01-01T09:00:00Z', ends_at: '2035-01-01T10:00:00Z', rrule: 'freq=daily;count=500' })
  t.equal(most.statusCode, 201, '500 occurrences are allowed')
  t.equal(most.json().allocations.length, 500)
})

t.test('against existing bookings: all_or_nothing refuses with every collision, skip_conflicts books the rest', async (t) => {
  const car = await createResource(app, 'car')
  const body = { starts_at: '2031-09-01T08:00:00Z', ends_at: '2031-09-01T09:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=WEEKLY;COUNT=10' }
  // In the way of the 3rd (15 September) and 7th (13 October) occurrences.
  const a = (await book(app, car.id, '2031-09-15T08:30:00Z', '2031-09-15T10:00:00Z')).json()
  const b = (await book(app, car.id, '2031-10-13T07:00:00Z', '2031-10-13T08:00:01Z')).json()

  const refused = await series(car.id, body, member.token)
  t.equal(refused.statusCode, 409)
  t.match(refused.json(), { code: 'SERIES_CONFLICT', message: /2 occurrences of the series collide/ })
  t.same(refused.json().conflicts.map((c: { starts_at: string, ends_at: string, conflicts: Allocation[] }) => [c.starts_at, c.ends_at, c.conflicts.map((x) => x.id)]), [
    ['2031-09-15T08:00:00Z', '2031-09-15T09:00:00Z', [a.id]],
    ['2031-10-13T08:00:00Z', '2031-10-13T09:00:00Z', [b.id]]
  ], 'each colliding occurrence with the allocation it hits')
  t.same(await counts(car.id), { series: 0, allocations: 2 }, 'nothing of the series was stored')

  const partial = await series(car.id, { ...body, mode: 'skip_conflicts' }, member.token)
  t.equal(partial.statusCode, 201, partial.body)
  const created = partial.json()
  t.equal(created.mode, 'skip_conflicts')
  t.equal(created.allocations.length, 8)
  t.same(created.skipped.map((s: { starts_at: string, reason: string, conflicts: Allocation[] }) => [s.starts_at, s.reason, s.conflicts.map((x) => x.id)]), [
    ['2031-09-15T08:00:00Z', 'conflict', [a.id]],
    ['2031-10-13T08:00:00Z', 'conflict', [b.id]]
  ])
  t.same((await call(app, 'GET', `/api/series/${created.id}`)).json().skipped, created.skipped, 'GET still says what was skipped')
  t.same(await counts(car.id), { series: 1, allocations: 10 })
})

t.test('two series racing for the same slots over HTTP: no deadlock, never both win a slot', async (t) => {
  const base = await listen(app)
  const deadlocks = async () => Number((await sql<{ deadlocks: string }>(app, 'SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()'))[0]!.deadlocks)
  const before = await deadlocks()
  const post = (resourceId: string, body: Record<string, unknown>) => fetchJson(`${base}/api/resources/${resourceId}/series`, 'POST', body)
  // Mondays and Wednesdays against Wednesdays and Fridays: every Wednesday is wanted twice.
  const monWed = { starts_at: '2032-01-05T09:00:00Z', ends_at: '2032-01-05T11:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=WEEKLY;BYDAY=MO,WE;COUNT=40' }
  const wedFri = { starts_at: '2032-01-07T10:00:00Z', ends_at: '2032-01-07T12:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=WEEKLY;BYDAY=WE,FR;COUNT=40' }
  for (let round = 0; round < 4; round++) {
    const lorry = await createResource(app, 'lorry')
    const [x, y] = await Promise.all([post(lorry.id, monWed), post(lorry.id, wedFri)])
    t.same([x.status, y.status].sort(), [201, 409], `round ${round}: exactly one all_or_nothing series wins`)
    const loser = x.status === 409 ? x : y
    t.equal(loser.body.code, 'SERIES_CONFLICT')
    t.equal(loser.body.conflicts.length, 20, 'the loser hears about every Wednesday')
    t.same(await counts(lorry.id), { series: 1, allocations: 40 })
  }
  const lorry = await createResource(app, 'lorry')
  const replies = await Promise.all([post(lorry.id, { ...monWed, mode: 'skip_conflicts' }), post(lorry.id, { ...wedFri, mode: 'skip_conflicts' }),
    post(lorry.id, { ...monWed, mode: 'skip_conflicts' })])
  t.same(replies.map((r) => r.status), [201, 201, 201])
  const booked = replies.reduce((n, r) => n + r.body.allocations.length, 0)
  const skipped = replies.reduce((n, r) => n + r.body.skipped.length, 0)
  t.equal(booked, 60, 'skip_conflicts: every Monday, Wednesday and Friday booked exactly once between them')
  t.equal(skipped, 60, 'and every other wish reported as skipped')
  const overlapping = await sql<{ overlaps: number }>(app, `
    SELECT count(*)::int AS overlaps FROM allocation a JOIN allocation b
      ON a.resource_id = b.resource_id AND a.id < b.id AND a.during && b.during
    WHERE a.status = 'confirmed' AND b.status = 'confirmed'`)
  t.equal(overlapping[0]!.overlaps, 0, 'no two live allocations overlap anywhere')
  t.equal(await deadlocks() - before, 0, 'PostgreSQL detected no deadlock')
})

t.test('cancelling halfway through: past occurrences stay, the rest are cancelled; ?from= cancels from a time', async (t) => {
  const freezer = await createResource(app, 'freezer')
  const minute = Math.floor(Date.now() / 60_000) * 60_000
  const start = minute - 3.5 * 86_400_000
  const created = (await series(freezer.id, {
    starts_at: new Date(start).toISOString(), ends_at: new Date(start + 600_000).toISOString(), time_zone: 'UTC', rrule: 'FREQ=DAILY;COUNT=6'
  }, member.token)).json()
  t.equal(created.allocations.length, 6)
  t.equal((await call(app, 'DELETE', `/api/series/${created.id}`, undefined, { token: member.token })).statusCode, 204)
  const after = (await call(app, 'GET', `/api/series/${created.id}`)).json()
  t.same(after.allocations.map((a: Allocation) => a.status), ['confirmed', 'confirmed', 'confirmed', 'confirmed', 'cancelled', 'cancelled'],
    'the four that have started stay, the two ahead are cancelled')
  t.equal((await call(app, 'DELETE', `/api/series/${created.id}`, undefined, { token: member.token })).statusCode, 204, 'cancelling again is fine')

  const car = await createResource(app, 'car')
  const weekly = (await series(car.id, { starts_at: '2031-04-07T09:00:00Z', ends_at: '2031-04-07T10:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=WEEKLY;COUNT=10' })).json()
  const from = weekly.allocations[5].starts_at
  t.equal((await call(app, 'DELETE', `/api/series/${weekly.id}?from=${encodeURIComponent('2031-05-12T08:00:00+00:00')}`)).statusCode, 204)
  const statuses = (await call(app, 'GET', `/api/series/${weekly.id}`)).json().allocations.map((a: Allocation) => a.status)
  t.same(statuses, [...Array(5).fill('confirmed'), ...Array(5).fill('cancelled')], `from ${from} on, cancelled`)
  t.equal((await book(app, car.id, weekly.allocations[6].starts_at, weekly.allocations[6].ends_at)).statusCode, 201, 'a cancelled slot is free again')
  t.equal((await call(app, 'DELETE', '/api/series/00000000-0000-4000-8000-000000000000')).statusCode, 404)
  t.equal((await call(app, 'DELETE', `/api/series/${weekly.id}?from=soon`)).statusCode, 400)
})

t.test('ownership as for allocations: members cancel their own series; maintenance series are the admins\'', async (t) => {
  const truck = await createResource(app, 'truck')
  const body = { starts_at: '2031-02-03T09:00:00Z', ends_at: '2031-02-03T10:00:00Z', time_zone: 'UTC', rrule: 'FREQ=DAILY;COUNT=3' }
  const mine = (await series(truck.id, body, member.token)).json()
  t.equal((await call(app, 'GET', `/api/series/${mine.id}`, undefined, { token: other.token })).statusCode, 200, 'anyone may read it')
  const refused = await call(app, 'DELETE', `/api/series/${mine.id}`, undefined, { token: other.token })
  t.equal(refused.statusCode, 403)
  t.match(refused.json().message, /belongs to another account/)
  t.ok((await call(app, 'GET', `/api/series/${mine.id}`)).json().allocations.every((a: Allocation) => a.status === 'confirmed'), 'nothing cancelled')
  const maintenance = await series(truck.id, { ...body, starts_at: '2031-02-10T09:00:00Z', ends_at: '2031-02-10T10:00:00Z', kind: 'maintenance' }, member.token)
  t.equal(maintenance.statusCode, 403, 'members do not create maintenance series')
  const blocked = await series(truck.id, { ...body, starts_at: '2031-02-10T09:00:00Z', ends_at: '2031-02-10T10:00:00Z', kind: 'maintenance' })
  t.equal(blocked.statusCode, 201, 'admins do')
  t.ok(blocked.json().allocations.every((a: Allocation) => a.kind === 'maintenance'))
  // An admin turned one of the member's occurrences into maintenance: the member can no longer cancel the series whole.
  t.equal((await call(app, 'PATCH', `/api/allocations/${mine.allocations[2].id}`, { kind: 'maintenance' })).statusCode, 200)
  t.equal((await call(app, 'DELETE', `/api/series/${mine.id}?from=2031-01-01T00:00:00Z`, undefined, { token: member.token })).statusCode, 403)
  t.equal((await call(app, 'DELETE', `/api/series/${mine.id}?from=2031-01-01T00:00:00Z`)).statusCode, 204, 'an admin may')
  t.ok((await call(app, 'GET', `/api/series/${mine.id}`)).json().allocations.every((a: Allocation) => a.status === 'cancelled'))
})

t.test('per type, 404s, Idempotency-Key, history with the series id, single bookings without one', async (t) => {
  const car = await createResource(app, 'car')
  const lorry = await createResource(app, 'lorry')
  const body = { starts_at: '2031-05-05T09:00:00Z', ends_at: '2031-05-05T10:00:00Z', time_zone: 'Europe/Lisbon', rrule: 'FREQ=DAILY;COUNT=2' }
  const perType = await call(app, 'POST', `/api/cars/${car.id}/series`, body)
  t.equal(perType.statusCode, 201)
  t.equal(perType.json().resource_type, 'car')
  t.equal((await call(app, 'POST', `/api/cars/${lorry.id}/series`, body)).statusCode, 404, 'a lorry is no car')
  t.equal((await call(app, 'POST', '/api/resources/00000000-0000-4000-8000-000000000000/series', body)).statusCode, 404)
  t.equal((await call(app, 'GET', '/api/series/00000000-0000-4000-8000-000000000000')).statusCode, 404)

  const send = () => app.inject({ method: 'POST', url: `/api/resources/${lorry.id}/series`, payload: body, headers: { ...bearer(member.token), 'idempotency-key': 'term-1' } })
  const first = await send()
  const again = await send()
  t.equal(first.statusCode, 201)
  t.equal(again.statusCode, 201)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.json().id, first.json().id, 'the retry gets the same series')
  t.same(await counts(lorry.id), { series: 1, allocations: 2 }, 'booked once')

  const occurrence = first.json().allocations[1]
  const history = (await call(app, 'GET', `/api/allocations/${occurrence.id}/history`)).json()
  t.match(history[0], { operation: 'insert', actor_id: member.id, new: { series_id: first.json().id, owner_id: member.id } }, 'history records the creation with the series id')
  t.equal((await book(app, car.id, '2032-01-01T00:00:00Z', '2032-01-01T01:00:00Z')).json().series_id, null, 'a single booking has no series')
})

t.test('booking rules and buffers apply to each occurrence, as to a single booking', async (t) => {
  const rules = async (resourceId: string, body: Record<string, unknown>) => {
    const res = await call(app, 'PUT', `/api/resources/${resourceId}/rules`, body)
    if (res.statusCode !== 200) throw new Error(res.body)
  }
  // Weekly from tomorrow: occurrences 1 to 5 start within 30 days, 6 to 10 later.
  const start = Math.floor(Date.now() / 3600_000) * 3600_000 + 86_400_000
  const weekly = { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 3600_000).toISOString(), time_zone: 'UTC', rrule: 'FREQ=WEEKLY;COUNT=10' }
  const car = await createResource(app, 'car')
  await rules(car.id, { max_advance: 'P30D' })

  const refused = await series(car.id, weekly, member.token)
  t.equal(refused.statusCode, 422)
  t.match(refused.json(), { code: 'RULE_MAX_ADVANCE', message: /^5 occurrences of the series break a booking rule; the first, at .*max_advance is P30D/, rule: { name: 'max_advance', limit: 'P30D', source: 'resource' } })
  t.same(await counts(car.id), { series: 0, allocations: 0 }, 'all_or_nothing: nothing stored')

  const partial = await series(car.id, { ...weekly, mode: 'skip_conflicts' }, member.token)
  t.equal(partial.statusCode, 201)
  t.equal(partial.json().allocations.length, 5, 'skip_conflicts books the occurrences the rule allows')
  t.same(partial.json().skipped.map((s: { reason: string, rule: { name: string } }) => [s.reason, s.rule.name]), Array(5).fill(['rule', 'max_advance']))
  t.equal(partial.json().skipped[0].starts_at, new Date(start + 5 * 7 * 86_400_000).toISOString().replace('.000Z', 'Z'))

  const lorry = await createResource(app, 'lorry')
  await rules(lorry.id, { max_advance: 'P30D' })
  t.equal((await series(lorry.id, weekly)).statusCode, 201, 'admins are exempt from the member rules')

  // A buffer binds everyone: an hour kept free after each allocation of this truck.
  const truck = await createResource(app, 'truck')
  await rules(truck.id, { buffer_after: 'PT1H' })
  const before = (await book(app, truck.id, '2031-09-08T06:00:00Z', '2031-09-08T07:30:00Z')).json()
  const buffered = await series(truck.id, { starts_at: '2031-09-01T08:00:00Z', ends_at: '2031-09-01T09:00:00Z', time_zone: 'UTC', rrule: 'FREQ=WEEKLY;COUNT=3' })
  t.equal(buffered.statusCode, 409, 'an occurrence 30 minutes after a booking with a one-hour buffer collides')
  t.same(buffered.json().conflicts.map((c: { starts_at: string, conflicts: Allocation[] }) => [c.starts_at, c.conflicts.map((x) => x.id)]), [['2031-09-08T08:00:00Z', [before.id]]])
  const booked = await series(truck.id, { starts_at: '2031-09-01T08:30:00Z', ends_at: '2031-09-01T09:00:00Z', time_zone: 'UTC', rrule: 'FREQ=WEEKLY;COUNT=3' })
  t.equal(booked.statusCode, 201, 'exactly the buffer away is fine')
  t.ok(booked.json().allocations.every((a: { buffer_after: string | null }) => a.buffer_after === 'PT1H'), 'each occurrence keeps the buffer in force')
  const crowded = await series(truck.id, { starts_at: '2032-01-01T00:00:00Z', ends_at: '2032-01-01T23:30:00Z', time_zone: 'UTC', rrule: 'FREQ=DAILY;COUNT=3', mode: 'skip_conflicts' })
  t.equal(crowded.statusCode, 400, 'occurrences closer than the buffers allow are refused, whatever the mode')
  t.match(crowded.json(), { code: 'BAD_REQUEST', message: /comes too close to an earlier one of the same series/ })
  t.same(await counts(truck.id), { series: 1, allocations: 4 })
})
