import t, { type Test } from 'tap'
import { ERROR_CODES } from '../src/plugins/errors.js'
import { buildTestApp, call, createAccount, createResource, sql, type Response } from './helpers.js'

/**
 * The calendar-shaped rules (opening hours, slot grid, in a time zone) through the API:
 * set, read back normalised, inherited, refused when malformed, and judged for members'
 * bookings, moves, series and book-any-free at and around every boundary, across both
 * daylight-saving changes. Quotas have their own file (quotas.test.ts).
 */

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const asMember = { token: member.token }

const WEEKDAYS_8_TO_6 = { mon: [['08:00', '12:00'], ['13:00', '18:00']], tue: [['08:00', '18:00']], wed: [['08:00', '18:00']], thu: [['08:00', '18:00']], fri: [['08:00', '18:00']] }
const CLOSED = { mon: [], tue: [], wed: [], thu: [], fri: [], sat: [], sun: [] }

async function setRules (resourceId: string, rules: Record<string, unknown>): Promise<Response> {
  const res = await call(app, 'PUT', `/api/resources/${resourceId}/rules`, rules)
  if (res.statusCode !== 200) throw new Error(`rules not set: ${res.body}`)
  return res
}

/** A resource of `type` with `rules` of its own. */
async function withRules (type: string, rules: Record<string, unknown>): Promise<{ id: string, name: string }> {
  const resource = await createResource(app, type)
  await setRules(resource.id, rules)
  return resource
}

/** A booking of [starts_at, ends_at) as the member (or the admin with { token: undefined }). */
async function book (resourceId: string, startsAt: string, endsAt: string | null, options: Caller = asMember, extra: Record<string, unknown> = {}): Promise<Response> {
  return call(app, 'POST', `/api/resources/${resourceId}/allocations`, { starts_at: startsAt, ends_at: endsAt, ...extra }, options)
}

type Caller = { token?: string }

/** Books [start, end) as `options` says (the member by default), expecting `status`. */
async function expectBooking (t: Test, resourceId: string, span: [string, string | null], status: number, label: string, options: Caller = asMember): Promise<Response> {
  const res = await book(resourceId, span[0], span[1], options)
  t.equal(res.statusCode, status, `${label}: ${status}${res.statusCode === status ? '' : ` (${res.body})`}`)
  return res
}

t.test('the four fields: set per type and per resource, read back normalised, inherited with their sources', async (t) => {
  const put = await call(app, 'PUT', '/api/resource-types/freezer/rules', {
    time_zone: 'Europe/Lisbon',
    opening_hours: { tue: [['13:00', '18:00'], ['8:00', '12:00:00']], mon: [['08:00', '24:00']], sat: [] },
    slot_grid: 'PT90M',
    quotas: [{ period: 'week', max_duration: 'PT600M' }, { period: 'day', max_bookings: 2, max_duration: null }]
  })
  t.equal(put.statusCode, 200, put.body)
  t.teardown(() => call(app, 'PUT', '/api/resource-types/freezer/rules', {}))
  const typeRules = {
    time_zone: 'Europe/Lisbon',
    opening_hours: { mon: [['08:00', '24:00']], tue: [['08:00', '12:00'], ['13:00', '18:00']], wed: [], thu: [], fri: [], sat: [], sun: [] },
    slot_grid: 'PT1H30M',
    quotas: [{ period: 'week', max_duration: 'PT10H', max_bookings: null }, { period: 'day', max_duration: null, max_bookings: 2 }]
  }
  t.match(put.json(), { type: 'freezer', min_duration: null, members_may_book_open_ended: false, ...typeRules },
    'times come back HH:MM, every weekday in order, intervals by start; durations normalised')
  t.same(Object.keys(put.json().opening_hours), ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], 'weekdays in order')
  t.same(Object.keys(put.json().quotas[0]), ['period', 'max_duration', 'max_bookings'])
  t.match((await call(app, 'GET', '/api/resource-types/freezer/rules', undefined, asMember)).json(), typeRules, 'GET gives the same')

  const freezer = await createResource(app, 'freezer')
  const inherited = (await call(app, 'GET', `/api/freezers/${freezer.id}/rules`, undefined, asMember)).json()
  t.match(inherited, { ...typeRules, sources: { time_zone: 'type', opening_hours: 'type', slot_grid: 'type', quotas: 'type' } }, 'a resource inherits them')

  const own = await setRules(freezer.id, { time_zone: 'asia/kolkata', slot_grid: 'PT15M', quotas: [] })
  t.match(own.json(), {
    time_zone: 'asia/kolkata',
    opening_hours: typeRules.opening_hours,
    slot_grid: 'PT15M',
    quotas: [],
    sources: { time_zone: 'resource', opening_hours: 'type', slot_grid: 'resource', quotas: 'resource' }
  }, 'overrides: the zone as given; quotas shown are its own ([] is none of its own)')

  const [view] = await sql(app, 'SELECT time_zone, opening_hours, slot_grid::text, quotas, time_zone_source, opening_hours_source, slot_grid_source, quotas_source FROM effective_rule WHERE resource_id = $1', [freezer.id])
  t.match(view, { time_zone: 'asia/kolkata', opening_hours: { mon: [['08:00', '24:00']] }, slot_grid: '00:15:00', quotas: [], time_zone_source: 'resource', opening_hours_source: 'type', slot_grid_source: 'resource', quotas_source: 'resource' },
    'psql: the effective_rule view shows the new fields and their sources')

  const cleared = await setRules(freezer.id, {})
  t.match(cleared.json(), { ...typeRules, sources: { time_zone: 'type', quotas: 'type' } }, 'null inherits again')
  const p1d = await call(app, 'PUT', `/api/resources/${freezer.id}/rules`, { slot_grid: 'P1D' })
  t.equal(p1d.json().slot_grid, 'P1D', 'P1D, a local day')
  t.equal((await call(app, 'PUT', `/api/resources/${freezer.id}/rules`, { slot_grid: 'PT24H' })).json().slot_grid, 'PT24H', 'PT24H is the same grid, written as given')
})

t.test('malformed calendar rules are a 400 naming the field, and store nothing', async (t) => {
  const car = await createResource(app, 'car')
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ time_zone: 'Mars/Olympus_Mons' }, /^time_zone must be a time zone PostgreSQL knows/],
    [{ time_zone: '+01:00' }, /^body\/time_zone must be an IANA time zone name such as Europe\/Lisbon$/],
    [{ time_zone: '' }, /body\/time_zone/],
    [{ opening_hours: { mon: [['08:00', '25:00']] } }, /^body\/opening_hours\/mon\/0\/1 must be a time of day, HH:MM from 00:00 to 24:00$/],
    [{ opening_hours: { mon: [['08:60', '12:00']] } }, /^body\/opening_hours\/mon\/0\/0 must be a time of day/],
    [{ opening_hours: { tue: [['08:00', '12:00'], ['13:00', '12:30']] } }, /^body\/opening_hours\/tue\/1 must end after it starts \(13:00 to 12:30\)$/],
    [{ opening_hours: { wed: [['09:00', '09:00']] } }, /^body\/opening_hours\/wed\/0 must end after it starts/],
    [{ opening_hours: { thu: [['12:00', '18:00'], ['08:00', '12:30']] } }, /^body\/opening_hours\/thu\/0 overlaps body\/opening_hours\/thu\/1 \(12:00 to 18:00 and 08:00 to 12:30\)/],
    [{ opening_hours: { funday: [] } }, /^body\/opening_hours\/funday is not an accepted property$/],
    [{ opening_hours: { mon: [['08:00']] } }, /^body\/opening_hours\/mon\/0 must NOT have fewer than 2 items$/],
    [{ opening_hours: { mon: '08:00-18:00' } }, /^body\/opening_hours\/mon must be array$/],
    [{ opening_hours: [] }, /^body\/opening_hours/],
    [{ slot_grid: 'PT0M' }, /^body\/slot_grid must be longer than zero$/],
    [{ slot_grid: 'P0D' }, /^body\/slot_grid must be longer than zero$/],
    [{ slot_grid: '-PT15M' }, /^body\/slot_grid must match/],
    [{ slot_grid: 'PT7M' }, /^body\/slot_grid must divide a day evenly .*: PT7M does not$/],
    [{ slot_grid: 'PT25H' }, /^body\/slot_grid must be at most a day/],
    [{ slot_grid: 'P2D' }, /^body\/slot_grid must be at most a day/],
    [{ slot_grid: 'P1W' }, /^body\/slot_grid must be at most a day/],
    [{ slot_grid: 'P1M' }, /^body\/slot_grid must be at most a day/],
    [{ quotas: [{ period: 'year', max_bookings: 1 }] }, /^body\/quotas\/0\/period must be one of day, week, month$/],
    [{ quotas: [{ period: 'day', max_bookings: 1 }, { period: 'week' }] }, /^body\/quotas\/1 must set max_duration, max_bookings or both$/],
    [{ quotas: [{ period: 'day', max_bookings: -1 }] }, /^body\/quotas\/0\/max_bookings must be >= 0$/],
    [{ quotas: [{ period: 'day', max_bookings: 1.5 }] }, /^body\/quotas\/0\/max_bookings must be integer$/],
    [{ quotas: [{ period: 'day', max_duration: 'P101Y' }] }, /^body\/quotas\/0\/max_duration must be at most P100Y$/],
    [{ quotas: [{ period: 'day', max_duration: 'PT1H', per: 'member' }] }, /^body\/quotas\/0\/per is not an accepted property$/],
    [{ quotas: { period: 'day' } }, /^body\/quotas must be array$/]
  ]
  for (const [body, message] of cases) {
    for (const url of [`/api/resources/${car.id}/rules`, '/api/resource-types/car/rules']) {
      const res = await call(app, 'PUT', url, body)
      t.equal(res.statusCode, 400, `${url} ${JSON.stringify(body)}`)
      t.match(res.json().message, message, res.json().message)
    }
  }
  t.match((await call(app, 'GET', `/api/resources/${car.id}/rules`)).json(), { time_zone: null, opening_hours: null, slot_grid: null, quotas: null }, 'nothing stored')
  // psql is held to the same rules by the table's checks.
  for (const [column, value] of [['time_zone', 'Mars/Olympus_Mons'], ['opening_hours', '{"mon": [["18:00", "08:00"]]}'], ['slot_grid', 'PT7M'], ['quotas', '[{"period": "day"}]']]) {
    await t.rejects(sql(app, `INSERT INTO resource_rule (resource_id, ${column}) VALUES ($1, $2)`, [car.id, value]), { code: '23514' }, `psql: ${column} ${value}`)
  }
})

t.test('opening hours: a member books only within them; ending exactly at closing is allowed, a minute past is not', async (t) => {
  const lorry = await withRules('lorry', { time_zone: 'Europe/Lisbon', opening_hours: WEEKDAYS_8_TO_6 })
  // Monday 6 January 2031: Lisbon is on UTC in winter.
  await expectBooking(t, lorry.id, ['2031-01-06T08:00:00Z', '2031-01-06T12:00:00Z'], 201, 'opening to the lunch break')
  await expectBooking(t, lorry.id, ['2031-01-06T17:00:00Z', '2031-01-06T18:00:00Z'], 201, 'ending exactly at closing')
  const late = await expectBooking(t, lorry.id, ['2031-01-07T17:00:00Z', '2031-01-07T18:01:00Z'], 422, 'a minute past closing')
  t.same(late.json(), {
    statusCode: 422,
    code: 'RULE_OPENING_HOURS',
    error: 'Unprocessable Entity',
    message: `opening_hours: a booking of this resource must lie entirely within its opening hours, read in Europe/Lisbon (GET /api/resources/${lorry.id}/rules); an open-ended booking never does`,
    hint: ERROR_CODES.RULE_OPENING_HOURS.action,
    rule: {
      name: 'opening_hours',
      limit: { ...CLOSED, ...WEEKDAYS_8_TO_6 },
      source: 'resource',
      resource_id: lorry.id,
      time_zone: 'Europe/Lisbon'
    }
  }, 'the 422 names the rule, gives the hours and their zone')
  await expectBooking(t, lorry.id, ['2031-01-07T07:59:00Z', '2031-01-07T09:00:00Z'], 422, 'a minute before opening')
  await expectBooking(t, lorry.id, ['2031-01-06T12:00:00Z', '2031-01-06T13:00:00Z'], 422, 'the lunch break')
  await expectBooking(t, lorry.id, ['2031-01-06T11:30:00Z', '2031-01-06T13:30:00Z'], 422, 'across the lunch break')
  await expectBooking(t, lorry.id, ['2031-01-11T09:00:00Z', '2031-01-11T10:00:00Z'], 422, 'Saturday, left out: closed')
  await expectBooking(t, lorry.id, ['2031-01-08T17:00:00Z', '2031-01-09T09:00:00Z'], 422, 'overnight into the next opening: the night is closed')
  // Summer: Lisbon is on UTC+1, and 08:00 is 07:00 UTC.
  await expectBooking(t, lorry.id, ['2031-07-07T07:00:00Z', '2031-07-07T11:00:00Z'], 201, 'summer: 08:00 local is 07:00 UTC')
  await expectBooking(t, lorry.id, ['2031-07-08T16:00:00Z', '2031-07-08T17:01:00Z'], 422, 'summer: a minute past 18:00 local')
  // Holds are bookings; admins and maintenance are exempt.
  const held = await book(lorry.id, '2031-01-11T09:00:00Z', '2031-01-11T10:00:00Z', asMember, { status: 'held', hold_seconds: 60 })
  t.equal(held.json().code, 'RULE_OPENING_HOURS', 'a hold is judged as a booking')
  await expectBooking(t, lorry.id, ['2031-01-12T03:00:00Z', '2031-01-12T03:15:00Z'], 201, 'an admin books 03:00 on a Sunday', {})
  const maintenance = await book(lorry.id, '2031-01-12T04:00:00Z', '2031-01-12T05:00:00Z', {}, { kind: 'maintenance' })
  t.equal(maintenance.statusCode, 201, 'and maintenance')
  const open = await book(lorry.id, '2033-02-01T09:00:00Z', null, {})
  t.equal(open.statusCode, 201, 'an admin may book open-ended')
  await setRules(lorry.id, { time_zone: 'Europe/Lisbon', opening_hours: WEEKDAYS_8_TO_6, members_may_book_open_ended: true })
  t.equal((await book(lorry.id, '2031-03-03T09:00:00Z', null)).json().code, 'RULE_OPENING_HOURS', 'an open-ended booking never lies within opening hours')
})

t.test('opening hours that touch across midnight join: an overnight booking across them is allowed', async (t) => {
  const truck = await withRules('truck', {
    time_zone: 'Europe/Lisbon',
    opening_hours: { fri: [['18:00', '24:00']], sat: [['00:00', '24:00']], sun: [['00:00', '06:00']], mon: [['06:00', '08:00']] }
  })
  await expectBooking(t, truck.id, ['2031-01-10T20:00:00Z', '2031-01-12T06:00:00Z'], 201, 'Friday 20:00 to Sunday 06:00, ending exactly at closing')
  await expectBooking(t, truck.id, ['2031-01-17T18:00:00Z', '2031-01-19T06:01:00Z'], 422, 'a minute past Sunday 06:00')
  await expectBooking(t, truck.id, ['2031-01-17T17:59:00Z', '2031-01-18T06:00:00Z'], 422, 'a minute before Friday 18:00')
  await expectBooking(t, truck.id, ['2031-01-19T05:00:00Z', '2031-01-20T07:00:00Z'], 422, 'Sunday 06:00 to Monday 06:00 is closed: no join')
  await expectBooking(t, truck.id, ['2031-01-19T04:00:00Z', '2031-01-19T06:00:00Z'], 201, 'the early hours of Sunday')
})

t.test('daylight saving: opening hours follow the wall clock; a time the clocks skip begins at the next instant that exists', async (t) => {
  // Lisbon: clocks go from 01:00 to 02:00 on Sunday 30 March 2031 (01:00 UTC), and back from 02:00 to 01:00 on Sunday 26 October (01:00 UTC).
  const lisbon = await withRules('car', {
    time_zone: 'Europe/Lisbon',
    opening_hours: { sun: [['01:30', '05:00'], ['08:00', '18:00']], sat: [['00:00', '24:00']] }
  })
  await expectBooking(t, lisbon.id, ['2031-03-30T01:00:00Z', '2031-03-30T04:00:00Z'], 201, 'Lisbon spring: 01:30 does not exist; open from 02:00 (01:00 UTC) to 05:00 (04:00 UTC)')
  await expectBooking(t, lisbon.id, ['2031-03-30T00:59:00Z', '2031-03-30T01:30:00Z'], 422, 'Lisbon spring: 00:59 UTC is 00:59 local, before opening')
  await expectBooking(t, lisbon.id, ['2031-03-30T07:00:00Z', '2031-03-30T17:00:00Z'], 201, 'Lisbon spring: 08:00 to 18:00 local is 07:00 to 17:00 UTC')
  await expectBooking(t, lisbon.id, ['2031-03-30T16:00:00Z', '2031-03-30T17:01:00Z'], 422, 'Lisbon spring: a minute past 18:00 local')
  await expectBooking(t, lisbon.id, ['2031-10-26T08:00:00Z', '2031-10-26T18:00:00Z'], 201, 'Lisbon autumn: 08:00 to 18:00 local is 08:00 to 18:00 UTC again')
  await expectBooking(t, lisbon.id, ['2031-10-26T07:00:00Z', '2031-10-26T09:00:00Z'], 422, 'Lisbon autumn: 07:00 UTC is 07:00 local')
  await expectBooking(t, lisbon.id, ['2031-10-24T23:00:00Z', '2031-10-25T23:00:00Z'], 201, 'Lisbon autumn: the Saturday before, whole (WEST)')
  // The hour from 01:00 to 02:00 happens twice: 01:30 to 02:00 WEST (00:30 to 01:00 UTC) and 01:30 to 02:00 WET (01:30 to 02:00 UTC) are both open.
  await expectBooking(t, lisbon.id, ['2031-10-26T00:30:00Z', '2031-10-26T01:00:00Z'], 201, 'Lisbon autumn: 01:30 to 02:00 WEST, the first time')
  await expectBooking(t, lisbon.id, ['2031-10-26T01:30:00Z', '2031-10-26T05:00:00Z'], 201, 'Lisbon autumn: 01:30 WET, the second time, to 05:00')
  await expectBooking(t, lisbon.id, ['2031-10-26T00:00:00Z', '2031-10-26T00:30:00Z'], 422, 'Lisbon autumn: 01:00 to 01:30 WEST is closed')
  const lisbonDays = await withRules('car', { time_zone: 'Europe/Lisbon', opening_hours: { sun: [['00:00', '24:00']] } })
  await expectBooking(t, lisbonDays.id, ['2031-03-30T00:00:00Z', '2031-03-30T23:00:00Z'], 201, 'Lisbon spring: the whole Sunday is 23 hours')
  await expectBooking(t, lisbonDays.id, ['2031-04-06T00:00:00Z', '2031-04-07T00:00:00Z'], 422, 'Lisbon: a UTC day after it is not the local Sunday')
  await expectBooking(t, lisbonDays.id, ['2031-10-25T23:00:00Z', '2031-10-27T00:00:00Z'], 201, 'Lisbon autumn: the whole Sunday is 25 hours')

  // New York: clocks go from 02:00 to 03:00 on Sunday 9 March 2031 (07:00 UTC), and back from 02:00 to 01:00 on Sunday 2 November (06:00 UTC).
  const newYork = await withRules('car', {
    time_zone: 'America/New_York',
    opening_hours: { sun: [['02:30', '05:00'], ['08:00', '18:00']] }
  })
  await expectBooking(t, newYork.id, ['2031-03-09T07:00:00Z', '2031-03-09T09:00:00Z'], 201, 'New York spring: 02:30 does not exist; open from 03:00 EDT (07:00 UTC) to 05:00 EDT (09:00 UTC)')
  await expectBooking(t, newYork.id, ['2031-03-09T06:59:00Z', '2031-03-09T08:00:00Z'], 422, 'New York spring: 01:59 EST is closed')
  await expectBooking(t, newYork.id, ['2031-03-09T12:00:00Z', '2031-03-09T22:00:00Z'], 201, 'New York spring: 08:00 to 18:00 EDT is 12:00 to 22:00 UTC')
  await expectBooking(t, newYork.id, ['2031-03-09T21:00:00Z', '2031-03-09T22:01:00Z'], 422, 'New York spring: a minute past 18:00 EDT')
  await expectBooking(t, newYork.id, ['2031-11-02T13:00:00Z', '2031-11-02T23:00:00Z'], 201, 'New York autumn: 08:00 to 18:00 EST is 13:00 to 23:00 UTC')
  await expectBooking(t, newYork.id, ['2031-11-02T12:00:00Z', '2031-11-02T14:00:00Z'], 422, 'New York autumn: 12:00 UTC is 07:00 EST')
  await expectBooking(t, newYork.id, ['2031-11-02T22:00:00Z', '2031-11-02T23:01:00Z'], 422, 'New York autumn: a minute past 18:00 EST')

  // psql sees the same open time.
  const open = async (id: string, from: string, to: string) =>
    (await sql<{ r: string }>(app, "SELECT (unnest(resource_open_time($1, tstzrange($2, $3))))::text AS r FROM (SELECT set_config('TimeZone', 'UTC', false)) s", [id, from, to])).map((row) => row.r)
  t.same(await open(lisbon.id, '2031-03-29T00:00:00Z', '2031-03-31T00:00:00Z'), [
    '["2031-03-29 00:00:00+00","2031-03-30 00:00:00+00")', '["2031-03-30 01:00:00+00","2031-03-30 04:00:00+00")', '["2031-03-30 07:00:00+00","2031-03-30 17:00:00+00")'
  ], 'psql: resource_open_time() gives the same: the Saturday, the skipped 01:30 opening at 02:00, 08:00 to 18:00 WEST')
  t.same(await open(lisbon.id, '2031-10-26T00:00:00Z', '2031-10-27T00:00:00Z'), [
    '["2031-10-26 00:30:00+00","2031-10-26 01:00:00+00")', '["2031-10-26 01:30:00+00","2031-10-26 05:00:00+00")', '["2031-10-26 08:00:00+00","2031-10-26 18:00:00+00")'
  ], 'psql: on the autumn Sunday in Lisbon, 01:30 is open twice')
  t.same(await open(newYork.id, '2031-11-02T00:00:00Z', '2031-11-03T00:00:00Z'), [
    '["2031-11-02 07:30:00+00","2031-11-02 10:00:00+00")', '["2031-11-02 13:00:00+00","2031-11-02 23:00:00+00")'
  ], 'psql: on the autumn Sunday in New York, 02:30 to 05:00 EST and 08:00 to 18:00 EST')
  await t.rejects(sql(app, 'SELECT resource_open_time($1, tstzrange(now(), NULL))', [newYork.id]), { code: '22023' }, 'psql: open time over an unbounded span is an error, not an endless answer')
  t.same(await open((await createResource(app, 'car')).id, '2031-01-01T00:00:00Z', '2031-01-02T00:00:00Z'), ['["2031-01-01 00:00:00+00","2031-01-02 00:00:00+00")'], 'no opening hours: always open')
})

t.test('a wall-clock time the clocks repeat is open both times', async (t) => {
  const newYork = await withRules('car', { time_zone: 'America/New_York', opening_hours: { sun: [['01:00', '02:00']] } })
  await expectBooking(t, newYork.id, ['2031-11-02T05:00:00Z', '2031-11-02T07:00:00Z'], 201, '01:00 to 02:00 EDT, then 01:00 to 02:00 EST: two hours')
  await expectBooking(t, newYork.id, ['2031-11-09T06:00:00Z', '2031-11-09T07:00:00Z'], 201, 'a week later, one hour')
  await expectBooking(t, newYork.id, ['2031-11-09T05:00:00Z', '2031-11-09T06:00:00Z'], 422, 'a week later, 00:00 EST is closed')
})

t.test('the slot grid: bookings start and end on it, counted from local midnight; admins are exempt', async (t) => {
  // Asia/Kolkata is UTC+05:30: local midnight is 18:30 UTC, 08:00 is 02:30 UTC.
  const quarter = await withRules('computer', { time_zone: 'Asia/Kolkata', slot_grid: 'PT15M' })
  await expectBooking(t, quarter.id, ['2031-01-06T02:30:00Z', '2031-01-06T02:45:00Z'], 201, 'Kolkata PT15M: 08:00 to 08:15')
  await expectBooking(t, quarter.id, ['2031-01-06T03:15:00Z', '2031-01-06T07:00:00Z'], 201, 'Kolkata PT15M: 08:45 to 12:30')
  const off = await expectBooking(t, quarter.id, ['2031-01-06T10:07:00Z', '2031-01-06T10:15:00Z'], 422, 'Kolkata PT15M: starting at 15:37')
  t.same(off.json(), {
    statusCode: 422,
    code: 'RULE_SLOT_GRID',
    error: 'Unprocessable Entity',
    message: 'slot_grid is PT15M: a booking of this resource must start and end a whole number of PT15M steps after a local midnight in Asia/Kolkata',
    hint: ERROR_CODES.RULE_SLOT_GRID.action,
    rule: { name: 'slot_grid', limit: 'PT15M', source: 'resource', resource_id: quarter.id, time_zone: 'Asia/Kolkata' }
  })
  await expectBooking(t, quarter.id, ['2031-01-06T10:00:00Z', '2031-01-06T10:29:00Z'], 422, 'Kolkata PT15M: ending at 15:59')
  await expectBooking(t, quarter.id, ['2031-01-06T10:00:00Z', '2031-01-06T10:30:00.001Z'], 422, 'Kolkata PT15M: a millisecond off the grid')
  await expectBooking(t, quarter.id, ['2031-01-06T10:07:00Z', '2031-01-06T10:19:00Z'], 201, 'an admin books 10:07 to 10:19', {})

  const hourly = await withRules('computer', { time_zone: 'Asia/Kolkata', slot_grid: 'PT1H' })
  await expectBooking(t, hourly.id, ['2031-01-06T02:30:00Z', '2031-01-06T04:30:00Z'], 201, 'Kolkata PT1H: on the local hour, half past in UTC')
  await expectBooking(t, hourly.id, ['2031-01-06T05:00:00Z', '2031-01-06T06:00:00Z'], 422, 'Kolkata PT1H: on the UTC hour is half past locally')

  const daily = await withRules('computer', { time_zone: 'Asia/Kolkata', slot_grid: 'P1D' })
  await expectBooking(t, daily.id, ['2031-01-05T18:30:00Z', '2031-01-07T18:30:00Z'], 201, 'Kolkata P1D: two local days')
  await expectBooking(t, daily.id, ['2031-01-08T00:00:00Z', '2031-01-09T00:00:00Z'], 422, 'Kolkata P1D: UTC midnights are not local ones')

  // An interval resource: fixed 15-minute slots.
  const runway = await withRules('truck', { time_zone: 'Asia/Kolkata', slot_grid: 'PT15M', min_duration: 'PT15M', max_duration: 'PT15M' })
  await expectBooking(t, runway.id, ['2031-01-06T04:15:00Z', '2031-01-06T04:30:00Z'], 201, 'a runway slot')
  t.equal((await book(runway.id, '2031-01-06T04:30:00Z', '2031-01-06T05:00:00Z')).json().code, 'RULE_MAX_DURATION', 'two slots at once: too long')
  t.equal((await book(runway.id, '2031-01-06T04:37:00Z', '2031-01-06T04:52:00Z')).json().code, 'RULE_SLOT_GRID', 'fifteen minutes off the grid')
})

t.test('the slot grid across daylight saving: P1D is a local day of 23 or 25 hours; a skipped grid time begins where the clocks jump to', async (t) => {
  const daily = await withRules('car', { time_zone: 'America/New_York', slot_grid: 'P1D' })
  await expectBooking(t, daily.id, ['2031-03-09T05:00:00Z', '2031-03-10T04:00:00Z'], 201, 'New York spring: the 23-hour Sunday')
  await expectBooking(t, daily.id, ['2031-11-02T04:00:00Z', '2031-11-03T05:00:00Z'], 201, 'New York autumn: the 25-hour Sunday')
  await expectBooking(t, daily.id, ['2031-03-10T04:00:00Z', '2031-03-11T05:00:00Z'], 422, 'New York spring: a UTC day after it is not a local one')

  const ninety = await withRules('car', { time_zone: 'America/New_York', slot_grid: 'PT90M' })
  // Grid times on the spring Sunday: 00:00, 01:30, then 03:00 (01:30 + 90 minutes on the clock, 07:00 UTC), 04:30 EDT.
  await expectBooking(t, ninety.id, ['2031-03-09T06:30:00Z', '2031-03-09T07:00:00Z'], 201, 'New York spring PT90M: 01:30 EST to 03:00 EDT, half an hour')
  await expectBooking(t, ninety.id, ['2031-03-09T07:00:00Z', '2031-03-09T08:30:00Z'], 201, 'New York spring PT90M: 03:00 to 04:30 EDT')
  await expectBooking(t, ninety.id, ['2031-03-09T08:00:00Z', '2031-03-09T09:30:00Z'], 422, 'New York spring PT90M: 04:00 EDT is off the grid')

  const lisbon = await withRules('car', { time_zone: 'Europe/Lisbon', slot_grid: 'PT45M' })
  // 00:45, 01:30 (skipped: the clocks jump from 01:00 to 02:00 at 01:00 UTC), 02:15 WEST.
  await expectBooking(t, lisbon.id, ['2031-03-30T00:45:00Z', '2031-03-30T01:00:00Z'], 201, 'Lisbon spring PT45M: from 00:45 to where the skipped 01:30 begins (02:00 WEST)')
  await expectBooking(t, lisbon.id, ['2031-03-30T01:00:00Z', '2031-03-30T01:15:00Z'], 201, 'Lisbon spring PT45M: from there to 02:15 WEST')
  await expectBooking(t, lisbon.id, ['2031-03-30T00:30:00Z', '2031-03-30T00:45:00Z'], 422, 'Lisbon spring PT45M: 00:30 is off the grid')
  const sql45 = await sql<{ on: boolean }>(app, 'SELECT slot_grid_contains(interval \'PT45M\', \'Europe/Lisbon\', t) AS on FROM unnest($1::timestamptz[]) AS t',
    [['2031-10-26T00:30:00Z', '2031-10-26T01:30:00Z', '2031-10-26T01:15:00Z']])
  t.same(sql45.map((r) => r.on), [true, true, false], 'psql: Lisbon autumn PT45M: 01:30 WEST and 01:30 WET are both on the grid')
})

t.test('a move (PATCH) is judged by the opening hours and the grid; an admin\'s is not', async (t) => {
  const car = await withRules('car', { time_zone: 'Europe/Lisbon', opening_hours: WEEKDAYS_8_TO_6, slot_grid: 'PT30M' })
  const booked = await expectBooking(t, car.id, ['2031-01-08T09:00:00Z', '2031-01-08T10:00:00Z'], 201, 'a Wednesday morning')
  const id = booked.json().id as string
  const move = (body: Record<string, unknown>, options: Caller = asMember) => call(app, 'PATCH', `/api/allocations/${id}`, body, options)
  t.equal((await move({ starts_at: '2031-01-08T17:30:00Z', ends_at: '2031-01-08T18:30:00Z' })).json().code, 'RULE_OPENING_HOURS', 'into the evening')
  t.equal((await move({ ends_at: '2031-01-08T10:10:00Z' })).json().code, 'RULE_SLOT_GRID', 'an end off the grid')
  t.equal((await move({ ends_at: '2031-01-08T18:00:00Z' })).statusCode, 200, 'to closing time exactly')
  t.equal((await move({ description: 'kept' })).statusCode, 200, 'a change that keeps the times is not judged')
  t.equal((await move({ starts_at: '2031-01-11T09:00:00Z', ends_at: '2031-01-11T09:10:00Z' }, {})).statusCode, 200, 'an admin moves it to Saturday, off the grid')
  t.match((await call(app, 'GET', `/api/allocations/${id}`)).json(), { starts_at: '2031-01-11T09:00:00Z', ends_at: '2031-01-11T09:10:00Z', description: 'kept' })
})

t.test('a rule change does not touch existing bookings', async (t) => {
  const car = await createResource(app, 'car')
  const booked = await expectBooking(t, car.id, ['2031-01-11T03:07:00Z', '2031-01-11T04:19:00Z'], 201, 'Saturday night, off any grid, before any rule')
  await setRules(car.id, { time_zone: 'Europe/Lisbon', opening_hours: WEEKDAYS_8_TO_6, slot_grid: 'PT1H' })
  t.match((await call(app, 'GET', `/api/allocations/${booked.json().id}`)).json(), { status: 'confirmed', starts_at: '2031-01-11T03:07:00Z', ends_at: '2031-01-11T04:19:00Z' }, 'still booked, as it was')
  t.equal((await call(app, 'PATCH', `/api/allocations/${booked.json().id}`, { description: 'still mine' }, asMember)).statusCode, 200, 'and may be changed without moving')
  t.equal((await call(app, 'PATCH', `/api/allocations/${booked.json().id}`, { ends_at: '2031-01-11T05:00:00Z' }, asMember)).json().code, 'RULE_OPENING_HOURS', 'a move is judged by the rules in force')
  t.equal((await call(app, 'DELETE', `/api/allocations/${booked.json().id}`, undefined, asMember)).statusCode, 204, 'and cancelled')
})

t.test('series: an occurrence outside the opening hours or off the grid fails all_or_nothing and is skipped in skip_conflicts', async (t) => {
  const car = await withRules('car', { time_zone: 'Europe/Lisbon', opening_hours: WEEKDAYS_8_TO_6, slot_grid: 'PT1H' })
  // Monday to Saturday, 09:00 to 10:00 Lisbon, for two weeks: the Saturdays are closed.
  const series = (mode: string, startsAt = '2031-01-06T09:00:00Z', endsAt = '2031-01-06T10:00:00Z', options: Caller = asMember) => call(app, 'POST', `/api/resources/${car.id}/series`, {
    starts_at: startsAt, ends_at: endsAt, time_zone: 'Europe/Lisbon', rrule: 'FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR,SA;COUNT=12', mode
  }, options)
  const all = await series('all_or_nothing')
  t.equal(all.statusCode, 422)
  t.match(all.json(), {
    code: 'RULE_OPENING_HOURS',
    message: /^2 occurrences of the series break a booking rule; the first, at 2031-01-11T09:00:00Z: opening_hours:/,
    rule: { name: 'opening_hours', time_zone: 'Europe/Lisbon', resource_id: car.id }
  })
  t.equal((await sql(app, 'SELECT 1 FROM allocation WHERE resource_id = $1', [car.id])).length, 0, 'nothing booked')
  const skip = await series('skip_conflicts')
  t.equal(skip.statusCode, 201, skip.body)
  t.equal(skip.json().allocations.length, 10, 'the ten weekdays are booked')
  t.match(skip.json().skipped, [
    { starts_at: '2031-01-11T09:00:00Z', reason: 'rule', rule: { name: 'opening_hours' }, conflicts: [] },
    { starts_at: '2031-01-18T09:00:00Z', reason: 'rule', rule: { name: 'opening_hours' }, conflicts: [] }
  ], 'the Saturdays are skipped, with the rule')
  const offGrid = await series('all_or_nothing', '2031-02-03T09:30:00Z', '2031-02-03T10:30:00Z')
  t.match(offGrid.json(), { statusCode: 422, code: 'RULE_SLOT_GRID' }, 'off the grid')
  t.equal((await series('all_or_nothing', '2031-02-03T09:30:00Z', '2031-02-03T10:30:00Z', {})).statusCode, 201, 'an admin\'s series is not judged')
})

t.test('book-any-free: members get only resources open at that time; when none is, the first one\'s refusal', async (t) => {
  const site = (await call(app, 'POST', '/api/sites', { name: 'Calendar depot' })).json()
  const weekdays = await createResource(app, 'lorry', { site_id: site.id, name: 'A weekdays' })
  await setRules(weekdays.id, { time_zone: 'Europe/Lisbon', opening_hours: WEEKDAYS_8_TO_6 })
  const weekends = await createResource(app, 'lorry', { site_id: site.id, name: 'B weekends' })
  await setRules(weekends.id, { time_zone: 'Europe/Lisbon', opening_hours: { sat: [['00:00', '24:00']], sun: [['00:00', '24:00']] }, slot_grid: 'PT1H' })
  const any = (startsAt: string, endsAt: string, options: Caller = asMember) =>
    call(app, 'POST', '/api/allocations', { type: 'lorry', site_id: site.id, starts_at: startsAt, ends_at: endsAt }, options)
  t.match((await any('2031-01-06T09:00:00Z', '2031-01-06T10:00:00Z')).json(), { resource_id: weekdays.id }, 'Monday: the weekday lorry')
  t.match((await any('2031-01-11T09:00:00Z', '2031-01-11T10:00:00Z')).json(), { resource_id: weekends.id }, 'Saturday: the weekend lorry')
  const none = await any('2031-01-11T09:30:00Z', '2031-01-11T10:30:00Z')
  t.match(none.json(), { statusCode: 422, code: 'RULE_OPENING_HOURS', rule: { resource_id: weekdays.id } }, 'off the weekend grid and outside weekday hours: the first lorry\'s refusal')
  t.match((await any('2031-01-11T09:30:00Z', '2031-01-11T10:30:00Z', {})).json(), { resource_id: weekdays.id }, 'an admin gets the first free one')
})

t.test('without calendar rules a member books as before', async (t) => {
  const car = await createResource(app, 'car')
  await expectBooking(t, car.id, ['2031-01-12T03:07:00Z', '2031-01-12T03:19:00Z'], 201, 'a member books 03:07 to 03:19 on a Sunday')
  t.same(await sql(app, 'SELECT * FROM booking_rule_violations($1, tstzrange(\'2031-01-12 03:07Z\', \'2031-01-12 03:19Z\'), now())', [car.id]), [], 'psql: no rule is broken')
  t.same(await sql(app, 'SELECT * FROM booking_quota_breach($1, tstzrange(\'2031-01-12 03:07Z\', \'2031-01-12 03:19Z\'), $2)', [car.id, member.id]), [], 'psql: no quota either')
})
