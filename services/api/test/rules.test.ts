import t from 'tap'
import { ERROR_CODES } from '../src/plugins/errors.js'
import { bearer, buildTestApp, call, createAccount, createResource, createSite, fetchJson, listen, sql, type Response } from './helpers.js'

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const asMember = { token: member.token }

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const iso = (ms: number) => new Date(ms).toISOString()
/** As the API writes a time: no fraction when there is none. */
const utc = (ms: number) => iso(ms).replace('.000Z', 'Z')
const at = (text: string) => Date.parse(text)

const NO_RULES = {
  min_duration: null,
  max_duration: null,
  min_notice: null,
  max_advance: null,
  buffer_before: null,
  buffer_after: null,
  members_may_book_open_ended: false,
  time_zone: null,
  opening_hours: null,
  slot_grid: null,
  quotas: null
}
/** Where the calendar-shaped rules come from when nobody has set them. */
const NO_CALENDAR_SOURCES = { time_zone: 'none', opening_hours: 'none', slot_grid: 'none', quotas: 'none' }

async function setRules (resourceId: string, rules: Record<string, unknown>): Promise<void> {
  const res = await call(app, 'PUT', `/api/resources/${resourceId}/rules`, rules)
  if (res.statusCode !== 200) throw new Error(`rules not set: ${res.body}`)
}

/** A booking of [start, end) (ms since the epoch, or null for an open end), by the admin unless a token is given. */
async function bookSpan (resourceId: string, start: number | null, end: number | null, options: { token?: string } = {}, extra: Record<string, unknown> = {}): Promise<Response> {
  return call(app, 'POST', `/api/resources/${resourceId}/allocations`,
    { starts_at: start === null ? null : iso(start), ends_at: end === null ? null : iso(end), ...extra }, options)
}

/** The database's clock: notice and advance are judged by it. */
async function dbNow (): Promise<number> {
  return (await sql<{ now: Date }>(app, 'SELECT now()'))[0]!.now.getTime()
}

t.test('no rules by default: everything reads null, and booking behaves as before', async (t) => {
  const types = (await call(app, 'GET', '/api/resource-types')).json<Array<{ name: string }>>()
  for (const { name } of types) {
    const res = await call(app, 'GET', `/api/resource-types/${name}/rules`, undefined, asMember)
    t.equal(res.statusCode, 200)
    t.same(res.json(), { type: name, ...NO_RULES }, `${name}: no rules`)
  }
  const car = await createResource(app, 'car')
  const rules = await call(app, 'GET', `/api/cars/${car.id}/rules`, undefined, asMember)
  t.same(rules.json(), {
    resource_id: car.id,
    type: 'car',
    ...NO_RULES,
    sources: { min_duration: 'none', max_duration: 'none', min_notice: 'none', max_advance: 'none', buffer_before: 'none', buffer_after: 'none', members_may_book_open_ended: 'none', ...NO_CALENDAR_SOURCES }
  })
  const first = await bookSpan(car.id, at('2031-01-01T09:00:00Z'), at('2031-01-01T10:00:00Z'), asMember)
  t.equal(first.statusCode, 201)
  t.match(first.json(), { buffer_before: null, buffer_after: null })
  t.equal((await bookSpan(car.id, at('2031-01-01T10:00:00Z'), at('2031-01-01T11:00:00Z'), asMember)).statusCode, 201, 'back to back, as ever')
  t.equal((await bookSpan(car.id, at('2031-01-01T11:00:00Z'), at('2041-01-01T11:00:00Z'), asMember)).statusCode, 201, 'ten years: no length rule')

  const open = await bookSpan(car.id, at('2042-01-01T00:00:00Z'), null, asMember)
  t.equal(open.statusCode, 422, 'members never book open-ended unless a rule allows it')
  t.same(open.json(), {
    statusCode: 422,
    code: 'RULE_OPEN_ENDED',
    error: 'Unprocessable Entity',
    message: 'members_may_book_open_ended is false: members may not book this resource with an open start or end; give both starts_at and ends_at',
    hint: ERROR_CODES.RULE_OPEN_ENDED.action,
    rule: { name: 'members_may_book_open_ended', limit: false, source: 'none', resource_id: car.id }
  })
  t.equal((await bookSpan(car.id, null, at('2030-01-01T00:00:00Z'), asMember)).json().code, 'RULE_OPEN_ENDED', 'an open start too')
  t.equal((await bookSpan(car.id, at('2042-01-01T00:00:00Z'), null)).statusCode, 201, 'admins may')
})

t.test('rules per type, overridden per resource; null inherits; each field says where it comes from', async (t) => {
  const example = { ...NO_RULES, min_duration: 'PT30M', max_duration: 'P3D', min_notice: 'PT2H', max_advance: 'P90D', buffer_before: null, buffer_after: 'PT1H', members_may_book_open_ended: false }
  t.equal((await call(app, 'PUT', '/api/resource-types/lorry/rules', example, asMember)).statusCode, 403, 'members may not set rules')
  const put = await call(app, 'PUT', '/api/resource-types/lorry/rules', example)
  t.equal(put.statusCode, 200)
  t.same(put.json(), { type: 'lorry', ...example })
  t.same((await call(app, 'GET', '/api/resource-types/lorry/rules', undefined, asMember)).json(), { type: 'lorry', ...example })

  const lorry = await createResource(app, 'lorry')
  const inherited = (await call(app, 'GET', `/api/resources/${lorry.id}/rules`, undefined, asMember)).json()
  t.same(inherited, {
    resource_id: lorry.id,
    type: 'lorry',
    ...example,
    sources: { min_duration: 'type', max_duration: 'type', min_notice: 'type', max_advance: 'type', buffer_before: 'none', buffer_after: 'type', members_may_book_open_ended: 'type', ...NO_CALENDAR_SOURCES }
  })

  t.equal((await call(app, 'PUT', `/api/lorries/${lorry.id}/rules`, { max_duration: 'P7D' }, asMember)).statusCode, 403)
  const override = await call(app, 'PUT', `/api/lorries/${lorry.id}/rules`, { max_duration: 'P7D', buffer_after: 'PT30M', min_notice: null, members_may_book_open_ended: true })
  t.equal(override.statusCode, 200)
  const expected = {
    resource_id: lorry.id,
    type: 'lorry',
    ...example,
    max_duration: 'P7D',
    buffer_after: 'PT30M',
    members_may_book_open_ended: true,
    sources: { min_duration: 'type', max_duration: 'resource', min_notice: 'type', max_advance: 'type', buffer_before: 'none', buffer_after: 'resource', members_may_book_open_ended: 'resource', ...NO_CALENDAR_SOURCES }
  }
  t.same(override.json(), expected, 'PUT answers with the rules now in force')
  t.same((await call(app, 'GET', `/api/resources/${lorry.id}/rules`, undefined, asMember)).json(), expected)
  t.same((await call(app, 'GET', `/api/lorries/${lorry.id}/rules`, undefined, asMember)).json(), expected, 'and per type')

  const view = await sql(app, 'SELECT * FROM effective_rule WHERE resource_id = $1', [lorry.id])
  t.match(view[0], { type: 'lorry', max_duration_source: 'resource', min_notice_source: 'type', buffer_before_source: 'none', members_may_book_open_ended: true }, 'psql: the effective_rule view')

  const replaced = await call(app, 'PUT', `/api/resources/${lorry.id}/rules`, { buffer_before: 'PT90M' })
  t.match(replaced.json(), { max_duration: 'P3D', buffer_before: 'PT1H30M', buffer_after: 'PT1H', members_may_book_open_ended: false, sources: { max_duration: 'type', buffer_before: 'resource' } },
    'PUT replaces the overrides whole; durations come back normalised')

  const car = await createResource(app, 'car')
  t.equal((await call(app, 'GET', `/api/lorries/${car.id}/rules`)).statusCode, 404, 'a car is not a lorry')
  t.equal((await call(app, 'PUT', `/api/lorries/${car.id}/rules`, { max_duration: 'P1D' })).statusCode, 404)
  t.same((await call(app, 'GET', `/api/cars/${car.id}/rules`)).json().max_duration, null, 'and was not changed')
  t.equal((await call(app, 'GET', '/api/resources/00000000-0000-4000-8000-000000000000/rules')).statusCode, 404)
  t.equal((await call(app, 'PUT', '/api/resources/00000000-0000-4000-8000-000000000000/rules', {})).statusCode, 404)
  t.match((await call(app, 'GET', '/api/resource-types/spaceship/rules')).json(), { statusCode: 404, code: 'NOT_FOUND', message: 'no resource type spaceship' })
  t.equal((await call(app, 'PUT', '/api/resource-types/spaceship/rules', {})).statusCode, 404)

  t.same((await call(app, 'PUT', '/api/resource-types/lorry/rules', {})).json(), { type: 'lorry', ...NO_RULES }, 'an empty PUT clears the type\'s rules')
  t.match((await call(app, 'GET', `/api/resources/${lorry.id}/rules`)).json(), { ...NO_RULES, buffer_before: 'PT1H30M' }, 'the resource keeps its own')
})

t.test('bad rules are a 400 naming the field, never a 500', async (t) => {
  const car = await createResource(app, 'car')
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ min_duration: '30 minutes' }, /body\/min_duration must match/],
    [{ max_duration: 'P3X' }, /body\/max_duration must match/],
    [{ buffer_after: '-PT1H' }, /body\/buffer_after must match/],
    [{ min_notice: 'PT' }, /body\/min_notice must match/],
    [{ max_advance: 'P101Y' }, /body\/max_advance must be at most P100Y/],
    [{ buffer_before: 'PT999999999H' }, /body\/buffer_before must be at most P100Y/],
    [{ max_duration: 3 }, /body\/max_duration/],
    [{ members_may_book_open_ended: 'yes' }, /body\/members_may_book_open_ended/],
    [{ owner: 'me' }, /body\/owner is not an accepted property/],
    [{ min_duration: 'P2D', max_duration: 'P1D' }, /min_duration must not be longer than max_duration/]
  ]
  for (const [body, message] of cases) {
    for (const url of [`/api/resources/${car.id}/rules`, '/api/resource-types/car/rules']) {
      const res = await call(app, 'PUT', url, body)
      t.equal(res.statusCode, 400, `${url} ${JSON.stringify(body)}`)
      t.match(res.json().message, message)
    }
  }
  t.equal((await call(app, 'GET', '/api/resource-types/Car!/rules')).statusCode, 400, 'a type name is checked')
  t.same((await call(app, 'GET', '/api/resource-types/car/rules')).json(), { type: 'car', ...NO_RULES }, 'nothing stored')
})

t.test('length rules at their limits: exactly the limit is allowed; admins are exempt', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { min_duration: 'PT30M', max_duration: 'P3D' })
  const start = at('2031-02-01T00:00:00Z')
  t.equal((await bookSpan(car.id, start, start + 30 * MINUTE, asMember)).statusCode, 201, 'exactly min_duration')
  const short = await bookSpan(car.id, start + HOUR, start + HOUR + 30 * MINUTE - 1000, asMember)
  t.equal(short.statusCode, 422)
  t.same(short.json(), {
    statusCode: 422,
    code: 'RULE_MIN_DURATION',
    error: 'Unprocessable Entity',
    message: 'min_duration is PT30M: a booking of this resource must last at least PT30M',
    hint: ERROR_CODES.RULE_MIN_DURATION.action,
    rule: { name: 'min_duration', limit: 'PT30M', source: 'resource', resource_id: car.id }
  })
  t.equal((await bookSpan(car.id, start + DAY, start + 4 * DAY, asMember)).statusCode, 201, 'exactly max_duration')
  const long = await bookSpan(car.id, start + 10 * DAY, start + 13 * DAY + 1000, asMember)
  t.equal(long.statusCode, 422)
  t.match(long.json(), { code: 'RULE_MAX_DURATION', message: 'max_duration is P3D: a booking of this resource may last at most P3D', rule: { name: 'max_duration', limit: 'P3D', source: 'resource' } })
  t.equal((await bookSpan(car.id, start + 20 * DAY, start + 20 * DAY + MINUTE)).statusCode, 201, 'an admin books a minute')
  t.equal((await bookSpan(car.id, start + 30 * DAY, start + 60 * DAY, {}, { kind: 'maintenance' })).statusCode, 201, 'and a month of maintenance')
  t.equal((await bookSpan(car.id, start + 70 * DAY, start + 70 * DAY + MINUTE, asMember, { status: 'held', hold_seconds: 60 })).json().code, 'RULE_MIN_DURATION', 'holds are bookings too')
  const inverted = await bookSpan(car.id, start + 80 * DAY, start + 79 * DAY, asMember)
  t.match(inverted.json(), { statusCode: 400, message: 'starts_at must be before ends_at' }, 'an inverted pair is still a 400')
  const { rows } = await app.pg.pool.query('SELECT count(*)::int AS n FROM allocation WHERE resource_id = $1', [car.id])
  t.equal(rows[0].n, 4, 'a refused booking stores nothing')
})

t.test('notice and advance around their limits, by the database clock; exactly the limit is allowed', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { min_notice: 'PT2H', max_advance: 'P90D' })
  let now = await dbNow()
  t.equal((await bookSpan(car.id, now + 2 * HOUR + MINUTE, now + 3 * HOUR, asMember)).statusCode, 201, 'a minute more notice than needed')
  const soon = await bookSpan(car.id, now + 2 * HOUR - MINUTE, now + 2 * HOUR, asMember)
  t.equal(soon.statusCode, 422)
  t.match(soon.json(), { code: 'RULE_MIN_NOTICE', message: 'min_notice is PT2H: a booking of this resource must be made at least PT2H before it starts', rule: { name: 'min_notice', limit: 'PT2H', source: 'resource', resource_id: car.id } })
  now = await dbNow()
  t.equal((await bookSpan(car.id, now + 90 * DAY - MINUTE, now + 90 * DAY, asMember)).statusCode, 201, 'a minute inside max_advance')
  const far = await bookSpan(car.id, now + 90 * DAY + MINUTE, now + 91 * DAY, asMember)
  t.match(far.json(), { statusCode: 422, code: 'RULE_MAX_ADVANCE', message: 'max_advance is P90D: a booking of this resource may start at most P90D from now', rule: { name: 'max_advance', limit: 'P90D' } })
  t.equal((await bookSpan(car.id, now + MINUTE, now + HOUR)).statusCode, 201, 'admins are exempt from notice')
  t.equal((await bookSpan(car.id, now + 200 * DAY, now + 201 * DAY)).statusCode, 201, 'and from advance')
  t.equal((await bookSpan(car.id, now - DAY, now - DAY + HOUR, asMember)).json().code, 'RULE_MIN_NOTICE', 'a member cannot book the past')

  // Exactly at the limit, to the microsecond, with the clock fixed: the function the API asks.
  const judged = '2031-03-01T12:00:00Z'
  const violations = async (starts: string, ends: string) => (await sql<{ rule: string }>(app,
    'SELECT rule FROM booking_rule_violations($1, allocation_range($2::timestamptz, $3::timestamptz), $4) ORDER BY ordinal',
    [car.id, starts, ends, judged])).map((r) => r.rule)
  t.same(await violations('2031-03-01T14:00:00Z', '2031-03-01T15:00:00Z'), [], 'exactly min_notice ahead')
  t.same(await violations('2031-03-01T13:59:59.999999Z', '2031-03-01T15:00:00Z'), ['min_notice'], 'a microsecond less')
  t.same(await violations('2031-05-30T12:00:00Z', '2031-05-30T13:00:00Z'), [], 'exactly max_advance ahead')
  t.same(await violations('2031-05-30T12:00:00.000001Z', '2031-05-30T13:00:00Z'), ['max_advance'], 'a microsecond more')
  await setRules(car.id, { min_duration: 'PT1H', max_duration: 'PT2H' })
  t.same(await violations('2031-03-02T00:00:00Z', '2031-03-02T00:59:59.999999Z'), ['min_duration'])
  t.same(await violations('2031-03-02T00:00:00Z', '2031-03-02T02:00:00.000001Z'), ['max_duration'])
})

t.test('open-ended bookings follow members_may_book_open_ended, from the type or the resource', async (t) => {
  const truck = await createResource(app, 'truck')
  const other = await createResource(app, 'truck')
  const from = at('2032-01-01T00:00:00Z')
  t.equal((await bookSpan(truck.id, from, null, asMember)).json().code, 'RULE_OPEN_ENDED')
  t.equal((await call(app, 'PUT', '/api/resource-types/truck/rules', { members_may_book_open_ended: true, max_duration: 'P1D' })).statusCode, 200)
  t.teardown(() => call(app, 'PUT', '/api/resource-types/truck/rules', {}))
  const open = await bookSpan(truck.id, from, null, asMember)
  t.equal(open.statusCode, 201, 'allowed by the type; the length of an open-ended booking is not judged')
  t.match(open.json(), { ends_at: null, owner_id: member.id })
  t.equal((await bookSpan(truck.id, from - 2 * DAY, from - DAY + 1000, asMember)).json().code, 'RULE_MAX_DURATION', 'bounded bookings still are')
  await setRules(other.id, { members_may_book_open_ended: false })
  const refused = await bookSpan(other.id, from, null, asMember)
  t.match(refused.json(), { code: 'RULE_OPEN_ENDED', rule: { name: 'members_may_book_open_ended', limit: false, source: 'resource' } }, 'a resource may forbid what its type allows')
})

t.test('buffers hold for everyone, through the exclusion constraint, psql included', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { buffer_before: 'PT15M', buffer_after: 'PT30M' })
  const first = await bookSpan(car.id, at('2031-04-01T10:00:00Z'), at('2031-04-01T11:00:00Z'), asMember)
  t.equal(first.statusCode, 201)
  t.match(first.json(), { buffer_before: 'PT15M', buffer_after: 'PT30M' }, 'the allocation shows the buffers it was booked with')
  const firstId = first.json().id

  for (const [who, options] of [['member', asMember], ['admin', {}]] as const) {
    const res = await bookSpan(car.id, at('2031-04-01T11:00:00Z'), at('2031-04-01T12:00:00Z'), options)
    t.equal(res.statusCode, 409, `${who}: back to back is inside the buffers`)
    t.match(res.json(), { code: 'ALLOCATION_CONFLICT', message: 'the resource is already allocated during that time (1 overlapping allocation)' })
    t.same(res.json().conflicts.map((a: { id: string }) => a.id), [firstId], `${who}: the 409 names the neighbour`)
  }
  // The gap must be at least the earlier one's buffer_after plus the later one's buffer_before: 45 minutes.
  t.equal((await bookSpan(car.id, at('2031-04-01T11:44:59Z'), at('2031-04-01T12:00:00Z'))).statusCode, 409, 'a second short')
  t.equal((await bookSpan(car.id, at('2031-04-01T11:45:00Z'), at('2031-04-01T12:00:00Z'), asMember)).statusCode, 201, 'exactly 45 minutes after')
  t.equal((await bookSpan(car.id, at('2031-04-01T09:00:00Z'), at('2031-04-01T09:15:00.001Z'))).statusCode, 409, 'before it: a millisecond short')
  t.equal((await bookSpan(car.id, at('2031-04-01T09:00:00Z'), at('2031-04-01T09:15:00Z'), asMember)).statusCode, 201, 'exactly 45 minutes before')

  const insert = (starts: string, ends: string) => sql<{ buffer_before: string, buffer_after: string }>(app, `
    INSERT INTO allocation (resource_id, during, buffer_before, buffer_after)
    VALUES ($1, allocation_range($2, $3), '0', '0')
    RETURNING iso_duration(buffer_before) AS buffer_before, iso_duration(buffer_after) AS buffer_after`, [car.id, starts, ends])
  await t.rejects(insert('2031-04-01T12:00:00Z', '2031-04-01T12:30:00Z'), { code: '23P01', constraint: 'allocation_no_overlap' },
    'psql: an insert inside the buffers is refused, whatever buffers it claims')
  t.same(await insert('2031-04-01T12:45:00Z', '2031-04-01T13:00:00Z'), [{ buffer_before: 'PT15M', buffer_after: 'PT30M' }],
    'psql: at the exact gap it is stored, with the buffers of the rules')

  t.equal((await call(app, 'DELETE', `/api/allocations/${firstId}`)).statusCode, 204)
  const again = await bookSpan(car.id, at('2031-04-01T10:00:00Z'), at('2031-04-01T11:00:00Z'))
  t.equal(again.statusCode, 201, 'a cancelled booking keeps no buffer')

  await setRules(car.id, { buffer_before: 'PT15M', buffer_after: 'PT2H' })
  t.match((await call(app, 'GET', `/api/allocations/${again.json().id}`)).json(), { buffer_after: 'PT30M' }, 'changing a rule does not rewrite existing bookings')
  const next = await bookSpan(car.id, at('2031-04-01T13:45:00Z'), at('2031-04-01T14:00:00Z'))
  t.equal(next.statusCode, 201, 'the neighbour keeps its own 30 minutes')
  t.match(next.json(), { buffer_before: 'PT15M', buffer_after: 'PT2H' }, 'a new booking takes the rules in force')
  t.equal((await bookSpan(car.id, at('2031-04-01T16:14:59Z'), at('2031-04-01T17:00:00Z'))).statusCode, 409, 'and keeps its 2 hours (plus 15 minutes)')

  const after = (await bookSpan(car.id, at('2031-04-02T10:00:00Z'), at('2031-04-02T11:00:00Z'))).json()
  await sql(app, "UPDATE allocation SET buffer_after = '0' WHERE id = $1", [after.id])
  t.equal((await bookSpan(car.id, at('2031-04-02T11:15:00Z'), at('2031-04-02T12:00:00Z'))).statusCode, 201, 'an admin may waive a stored buffer in psql')

  const { rows } = await app.pg.pool.query(`
    SELECT count(*)::int AS n FROM allocation a JOIN allocation b ON a.resource_id = b.resource_id AND a.id < b.id
    WHERE a.resource_id = $1 AND a.status = 'confirmed' AND b.status = 'confirmed'
      AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after) && allocation_blocked_range(b.during, b.buffer_before, b.buffer_after)`, [car.id])
  t.equal(rows[0].n, 0, 'no two stored allocations meet once widened by their buffers')
})

t.test('a move (PATCH) is judged by the buffers and, for members, by the same rules', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { buffer_after: 'PT1H', max_duration: 'PT4H', min_notice: 'PT1H' })
  const day = (time: string) => at(`2031-05-01T${time}Z`)
  const a = (await bookSpan(car.id, day('09:00:00'), day('10:00:00'))).json()
  const b = (await bookSpan(car.id, day('11:00:00'), day('12:00:00'), asMember)).json()
  const move = (id: string, times: Record<string, string | null>, options: { token?: string } = asMember) => call(app, 'PATCH', `/api/allocations/${id}`, times, options)

  const clash = await move(b.id, { starts_at: iso(day('10:30:00')) })
  t.equal(clash.statusCode, 409)
  t.same(clash.json().conflicts.map((x: { id: string }) => x.id), [a.id], 'the 409 names the neighbour whose buffer it enters')
  t.equal((await move(b.id, { starts_at: iso(day('10:00:00')), ends_at: iso(day('11:00:00')) }, {})).statusCode, 409, 'admins too')
  const long = await move(b.id, { ends_at: iso(day('15:00:00.001')) })
  t.match(long.json(), { statusCode: 422, code: 'RULE_MAX_DURATION', rule: { name: 'max_duration', limit: 'PT4H' } })
  t.equal((await move(b.id, { ends_at: iso(day('15:00:00')) })).statusCode, 200, 'exactly max_duration')
  t.equal((await move(b.id, { ends_at: null })).json().code, 'RULE_OPEN_ENDED')
  t.equal((await move(b.id, { ends_at: iso(day('20:00:00')) }, {})).statusCode, 200, 'an admin may make it longer')

  const now = await dbNow()
  const soon = (await bookSpan(car.id, now + 2 * HOUR, now + 3 * HOUR, asMember)).json()
  await setRules(car.id, { min_notice: 'PT3H' })
  t.equal((await move(soon.id, { description: 'with coffee' })).statusCode, 200, 'a change that keeps the times is not judged')
  t.equal((await move(soon.id, { ends_at: iso(now + 4 * HOUR) })).statusCode, 200, 'nor is the notice of a move that keeps the start')
  t.match((await move(soon.id, { starts_at: iso(now + 2 * HOUR + MINUTE) })).json(), { statusCode: 422, code: 'RULE_MIN_NOTICE' }, 'a new start is')
  const kept = (await call(app, 'GET', `/api/allocations/${soon.id}`)).json()
  t.equal(at(kept.starts_at), now + 2 * HOUR, 'the refused move changed nothing')
  t.equal(kept.description, 'with coffee')
})

t.test('search honours the buffers for everyone and, for members, the rules', async (t) => {
  const site = await createSite(app)
  const car = await createResource(app, 'car', { site_id: site.id })
  await setRules(car.id, { buffer_before: 'PT15M', buffer_after: 'PT30M' })
  const day = (time: string) => `2031-06-01T${time}Z`
  const window = `from=${day('08:00:00')}&to=${day('14:00:00')}`
  await bookSpan(car.id, at(day('10:00:00')), at(day('11:00:00')))
  const free = await call(app, 'GET', `/api/resources/${car.id}/free?${window}`, undefined, asMember)
  t.same(free.json(), [{ starts_at: day('08:00:00'), ends_at: day('09:15:00') }, { starts_at: day('11:45:00'), ends_at: day('14:00:00') }],
    'free time leaves room for the neighbour\'s buffers and the new booking\'s own')
  // Every gap is bookable exactly to its edges.
  t.equal((await bookSpan(car.id, at(day('09:00:00')), at(day('09:15:00')), asMember)).statusCode, 201)
  t.equal((await bookSpan(car.id, at(day('11:45:00')), at(day('12:00:00')), asMember)).statusCode, 201)

  const slots = await call(app, 'GET', `/api/slots?type=car&site_id=${site.id}&${window}&duration=PT1H`, undefined, asMember)
  t.same(slots.json(), [{ resource_id: car.id, resource_name: car.name, starts_at: day('12:45:00'), ends_at: day('14:00:00') }], 'slots keep the buffers clear')

  const listed = async (from: string, to: string, options = {}) =>
    (await call(app, 'GET', `/api/cars?site_id=${site.id}&available_from=${from}&available_to=${to}`, undefined, options)).json().map((r: { id: string }) => r.id)
  t.same(await listed(day('12:15:00'), day('12:45:00')), [], 'available_from/to: inside the buffers is not available, even for an admin')
  t.same(await listed(day('12:45:00'), day('13:00:00')), [car.id], 'at the exact gap it is')
})

t.test('members see only what the rules let them book; admins see everything', async (t) => {
  const site = await createSite(app)
  const car = await createResource(app, 'car', { site_id: site.id })
  await setRules(car.id, { min_notice: 'P1D', max_advance: 'P10D' })
  const before = Math.floor(await dbNow() / 1000) * 1000
  const from = utc(before - HOUR)
  const to = utc(before + 20 * DAY)
  const seen = (await call(app, 'GET', `/api/cars/${car.id}/free?from=${from}&to=${to}`, undefined, asMember)).json<Array<{ starts_at: string, ends_at: string }>>()
  const after = await dbNow()
  t.equal(seen.length, 1)
  const [gap] = seen
  t.ok(at(gap!.starts_at) >= before + DAY && at(gap!.starts_at) <= after + DAY, 'a member\'s free time starts min_notice from now')
  t.ok(at(gap!.ends_at) >= before + 10 * DAY && at(gap!.ends_at) <= after + 10 * DAY, 'and ends max_advance from now')
  t.same((await call(app, 'GET', `/api/cars/${car.id}/free?from=${from}&to=${to}`)).json(), [{ starts_at: from, ends_at: to }], 'an admin sees the whole window')

  const slots = async (duration: string, options = {}) =>
    (await call(app, 'GET', `/api/slots?type=car&site_id=${site.id}&from=${from}&to=${to}&duration=${duration}`, undefined, options)).json<Array<{ starts_at: string }>>()
  const memberSlots = await slots('PT1H', asMember)
  t.equal(memberSlots.length, 1)
  t.ok(at(memberSlots[0]!.starts_at) >= before + DAY, 'no slot inside the notice')
  t.equal((await slots('PT1H'))[0]!.starts_at, from, 'an admin\'s slot starts with the window')

  const listed = async (start: number, end: number, options = {}) =>
    (await call(app, 'GET', `/api/cars?site_id=${site.id}&available_from=${iso(start)}&available_to=${iso(end)}`, undefined, options)).json().length
  t.equal(await listed(before + HOUR, before + 2 * HOUR, asMember), 0, 'available_from inside the notice: not for a member')
  t.equal(await listed(before + HOUR, before + 2 * HOUR), 1, 'but for an admin')
  t.equal(await listed(before + 2 * DAY, before + 3 * DAY, asMember), 1)
  t.equal(await listed(before + 11 * DAY, before + 12 * DAY, asMember), 0, 'beyond max_advance: not for a member')

  const short = await createResource(app, 'car', { site_id: site.id })
  await setRules(car.id, { max_duration: 'PT2H', min_duration: 'PT1H' })
  await setRules(short.id, { min_duration: 'PT2H' })
  const base = at('2031-07-01T00:00:00Z')
  await bookSpan(short.id, base + 9 * HOUR, base + 10 * HOUR)
  await bookSpan(short.id, base + 11 * HOUR, base + 12 * HOUR)
  const window = `from=${iso(base + 8 * HOUR)}&to=${iso(base + 20 * HOUR)}`
  t.same((await call(app, 'GET', `/api/cars/${short.id}/free?${window}`, undefined, asMember)).json().map((g: { starts_at: string }) => g.starts_at),
    [utc(base + 12 * HOUR)], 'a member is not shown a gap shorter than min_duration')
  t.equal((await call(app, 'GET', `/api/cars/${short.id}/free?${window}`)).json().length, 3, 'an admin is')
  const byResource = async (duration: string, options = {}) =>
    (await call(app, 'GET', `/api/slots?type=car&site_id=${site.id}&${window}&duration=${duration}`, undefined, options)).json().map((s: { resource_id: string }) => s.resource_id)
  t.same(await byResource('PT3H', asMember), [short.id], 'longer than max_duration: no slots on that car for a member')
  t.same(await byResource('PT90M', asMember), [car.id], 'shorter than min_duration: none on the other')
  t.same((await byResource('PT3H')).sort(), [car.id, short.id].sort(), 'an admin gets both')
  t.same(await listed(base + 13 * HOUR, base + 16 * HOUR, asMember), 1, 'available_from/to: a window longer than max_duration is not for a member')
})

t.test('book-any-free skips resources whose buffers or rules are in the way', async (t) => {
  const site = await createSite(app)
  const a = await createResource(app, 'lorry', { site_id: site.id, name: `${site.id}-a` })
  const b = await createResource(app, 'lorry', { site_id: site.id, name: `${site.id}-b` })
  await setRules(a.id, { buffer_after: 'PT1H', max_duration: 'PT2H' })
  const day = (time: string) => `2031-08-01T${time}Z`
  await bookSpan(a.id, at(day('09:00:00')), at(day('10:00:00')))
  const anyFree = (starts: string, ends: string, options = {}) => call(app, 'POST', '/api/allocations', { type: 'lorry', site_id: site.id, starts_at: starts, ends_at: ends }, options)

  const first = await anyFree(day('10:30:00'), day('11:00:00'), asMember)
  t.equal(first.statusCode, 201)
  t.equal(first.json().resource_id, b.id, 'the first lorry\'s buffer is in the way')
  const second = await anyFree(day('11:00:00'), day('12:00:00'), asMember)
  t.equal(second.json().resource_id, a.id, 'after the buffer, the first lorry again')

  const long = await anyFree(day('14:00:00'), day('17:00:00'), asMember)
  t.equal(long.json().resource_id, b.id, 'a member\'s 3 hours: only the second lorry\'s rules allow it')
  await setRules(b.id, { max_duration: 'PT2H30M' })
  const refused = await anyFree(day('18:00:00'), day('21:00:00'), asMember)
  t.equal(refused.statusCode, 422, 'when every lorry\'s rules forbid it, the member hears which rule')
  t.match(refused.json(), { code: 'RULE_MAX_DURATION', rule: { name: 'max_duration', limit: 'PT2H', source: 'resource', resource_id: a.id } })
  t.equal((await anyFree(day('18:00:00'), day('21:00:00'))).statusCode, 201, 'an admin is exempt')
  const busy = await anyFree(day('18:30:00'), day('19:00:00'), asMember)
  t.equal(busy.statusCode, 201, 'the other lorry is still free then')
  t.equal((await anyFree(day('18:30:00'), day('19:00:00'), asMember)).json().code, 'NO_AVAILABILITY', 'allowed by the rules but taken: no availability')
})

/** Deadlocks PostgreSQL has detected in this database. */
async function deadlocks (): Promise<number> {
  const { rows } = await app.pg.pool.query<{ deadlocks: string }>('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()')
  return Number(rows[0]!.deadlocks)
}

t.test('simultaneous neighbours that conflict only through buffers: exactly the right winners, no deadlock', async (t) => {
  const base = await listen(app)
  const cars = await Promise.all(Array.from({ length: 10 }, () => createResource(app, 'car')))
  for (const car of cars) await setRules(car.id, { buffer_before: 'PT15M', buffer_after: 'PT30M' })
  const deadlocksBefore = await deadlocks()
  // Per car: A and B are back to back (they meet only through the buffers), so exactly one
  // wins; C starts exactly 45 minutes after B ends, so it wins whichever of them did.
  const windows = { A: ['10:00', '11:00'], B: ['11:00', '12:00'], C: ['12:45', '13:45'] } as const
  const requests = cars.flatMap((car, i) => Object.entries(windows).map(([label, [s, e]]) => ({
    car: car.id,
    label,
    promise: fetchJson(`${base}/api/resources/${car.id}/allocations`, 'POST',
      { starts_at: `2031-09-01T${s}:00Z`, ends_at: `2031-09-01T${e}:00Z` },
      i % 2 === 0 ? bearer(member.token) : {})
  })))
  const results = await Promise.all(requests.map(async (r) => ({ ...r, res: await r.promise })))
  for (const car of cars) {
    const mine = results.filter((r) => r.car === car.id)
    const won = mine.filter((r) => r.res.status === 201).map((r) => r.label).sort()
    t.ok(won.length === 2 && won.includes('C') && (won.includes('A') !== won.includes('B')), `one of A and B, and C, won (${won.join(', ')})`)
    const lost = mine.find((r) => r.res.status !== 201)!
    t.equal(lost.res.status, 409)
    t.equal(lost.res.body.code, 'ALLOCATION_CONFLICT')
    const winner = mine.find((r) => r.label !== 'C' && r.res.status === 201)!
    t.same(lost.res.body.conflicts.map((c: { id: string }) => c.id), [winner.res.body.id], 'the loser is told who won')
  }
  t.equal(await deadlocks() - deadlocksBefore, 0, 'no deadlock')

  const site = await createSite(app)
  const lorries = await Promise.all(Array.from({ length: 5 }, () => createResource(app, 'lorry', { site_id: site.id })))
  for (const lorry of lorries) await setRules(lorry.id, { buffer_after: 'PT1H' })
  const anyFree = await Promise.all(Array.from({ length: 10 }, (_, i) => fetchJson(`${base}/api/allocations`, 'POST', {
    type: 'lorry', site_id: site.id, starts_at: i % 2 === 0 ? '2031-09-02T09:00:00Z' : '2031-09-02T10:00:00Z', ends_at: i % 2 === 0 ? '2031-09-02T10:00:00Z' : '2031-09-02T11:00:00Z'
  }, bearer(member.token))))
  t.equal(anyFree.filter((r) => r.status === 201).length, 5, 'book-any: each lorry takes exactly one of the back-to-back windows')
  t.ok(anyFree.filter((r) => r.status !== 201).every((r) => r.status === 409 && r.body.code === 'NO_AVAILABILITY'), 'the rest hear there is no availability')
  const { rows } = await app.pg.pool.query<{ n: number }>(`
    SELECT count(*)::int AS n FROM allocation WHERE resource_id = ANY ($1) GROUP BY resource_id`, [lorries.map((l) => l.id)])
  t.same(rows.map((r) => r.n), [1, 1, 1, 1, 1], 'one booking per lorry')
  t.equal(await deadlocks() - deadlocksBefore, 0, 'still no deadlock')
})
