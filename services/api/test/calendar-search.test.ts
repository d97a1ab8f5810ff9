import t from 'tap'
import { buildTestApp, call, createAccount, createResource, createSite, sql } from './helpers.js'

/**
 * Search shows a member what they could book under the calendar-shaped rules: free time,
 * slots and available resources keep to the opening hours, start and end on the grid, and
 * leave out periods whose quotas are used up; what they show books. An admin sees all.
 */

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const asMember = { token: member.token }

interface Gap { starts_at: string, ends_at: string }
interface Slot extends Gap { resource_id: string, resource_name: string }

async function setRules (resourceId: string, rules: Record<string, unknown>): Promise<void> {
  const res = await call(app, 'PUT', `/api/resources/${resourceId}/rules`, rules)
  if (res.statusCode !== 200) throw new Error(`rules not set: ${res.body}`)
}

const free = async (resourceId: string, from: string, to: string, options: { token?: string } = asMember): Promise<Gap[]> =>
  (await call(app, 'GET', `/api/resources/${resourceId}/free?${new URLSearchParams({ from, to })}`, undefined, options)).json()

/** The open time psql gives for the resource within [from, to), as ranges of RFC 3339 text. */
async function openTime (resourceId: string, from: string, to: string): Promise<Gap[]> {
  const rows = await sql<{ starts_at: Date, ends_at: Date }>(app,
    'SELECT lower(r) AS starts_at, upper(r) AS ends_at FROM unnest(resource_open_time($1, tstzrange($2, $3))) AS r', [resourceId, from, to])
  return rows.map((row) => ({ starts_at: row.starts_at.toISOString().replace('.000Z', 'Z'), ends_at: row.ends_at.toISOString().replace('.000Z', 'Z') }))
}

/** Minutes past local midnight in `zone` of an instant. */
function localMinutes (time: string, zone: string): number {
  const parts = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(new Date(time))
  return Number(parts.find((p) => p.type === 'hour')!.value) * 60 + Number(parts.find((p) => p.type === 'minute')!.value)
}

t.test('free time: a member sees only open time, cut to the grid; every gap books whole; an admin sees all', async (t) => {
  // Kolkata (UTC+05:30), Monday 6 January 2031: open 09:10 to 12:50 and 14:00 to 18:00; a 20-minute grid.
  const computer = await createResource(app, 'computer')
  await setRules(computer.id, { time_zone: 'Asia/Kolkata', opening_hours: { mon: [['09:10', '12:50'], ['14:00', '18:00']] }, slot_grid: 'PT20M' })
  await call(app, 'POST', `/api/resources/${computer.id}/allocations`, { starts_at: '2031-01-06T05:05:00Z', ends_at: '2031-01-06T05:35:00Z' })
  const [from, to] = ['2031-01-06T00:00:00Z', '2031-01-07T00:00:00Z']
  const gaps = await free(computer.id, from, to)
  t.same(gaps, [
    { starts_at: '2031-01-06T03:50:00Z', ends_at: '2031-01-06T04:50:00Z' },
    { starts_at: '2031-01-06T05:50:00Z', ends_at: '2031-01-06T07:10:00Z' },
    { starts_at: '2031-01-06T08:30:00Z', ends_at: '2031-01-06T12:30:00Z' }
  ], 'open at 09:10 IST (03:40 UTC), on the grid from 09:20; before the admin\'s 10:35 to 11:05, to 10:20, and after it from 11:20; 12:50 cut to 12:40')
  const open = await openTime(computer.id, from, to)
  t.same(open, [{ starts_at: '2031-01-06T03:40:00Z', ends_at: '2031-01-06T07:20:00Z' }, { starts_at: '2031-01-06T08:30:00Z', ends_at: '2031-01-06T12:30:00Z' }], 'psql: resource_open_time()')
  for (const gap of gaps) {
    t.ok(open.some((o) => o.starts_at <= gap.starts_at && gap.ends_at <= o.ends_at), `${gap.starts_at}: within the open time`)
    for (const time of [gap.starts_at, gap.ends_at]) t.equal(localMinutes(time, 'Asia/Kolkata') % 20, 0, `${time}: on the grid`)
  }
  for (const gap of gaps) {
    const booked = await call(app, 'POST', `/api/resources/${computer.id}/allocations`, gap, asMember)
    t.equal(booked.statusCode, 201, `the member books ${gap.starts_at} to ${gap.ends_at} whole`)
  }
  t.same(await free(computer.id, from, to), [], 'and then nothing is free')
  t.same(await free(computer.id, '2031-01-07T00:00:00Z', '2031-01-08T00:00:00Z'), [], 'Tuesday is closed')
  t.same(await free(computer.id, '2031-01-07T00:00:00Z', '2031-01-08T00:00:00Z', {}), [{ starts_at: '2031-01-07T00:00:00Z', ends_at: '2031-01-08T00:00:00Z' }], 'to an admin, all of it is free')
  const long = await call(app, 'GET', `/api/resources/${computer.id}/free?from=2031-01-01T00:00:00Z&to=2032-01-03T00:00:00Z`, undefined, asMember)
  t.match(long.json(), { statusCode: 400, message: 'querystring/to must be at most 366 days after from' }, 'a member\'s window spans at most 366 days')
  t.equal((await call(app, 'GET', `/api/resources/${computer.id}/free?from=2031-01-01T00:00:00Z&to=2033-01-01T00:00:00Z`)).statusCode, 200, 'an admin\'s need not')
})

t.test('free time across daylight saving is the open time, to the minute', async (t) => {
  const car = await createResource(app, 'car')
  await setRules(car.id, { time_zone: 'Europe/Lisbon', opening_hours: { sun: [['01:30', '05:00'], ['22:00', '24:00']], mon: [['00:00', '02:00']] } })
  for (const [from, to] of [['2031-03-29T12:00:00Z', '2031-03-31T12:00:00Z'], ['2031-10-25T12:00:00Z', '2031-10-27T12:00:00Z']]) {
    t.same(await free(car.id, from!, to!), await openTime(car.id, from!, to!), `${from}: free time is resource_open_time() when nothing is booked`)
  }
  t.same(await free(car.id, '2031-03-29T12:00:00Z', '2031-03-31T12:00:00Z'), [
    { starts_at: '2031-03-30T01:00:00Z', ends_at: '2031-03-30T04:00:00Z' },
    { starts_at: '2031-03-30T21:00:00Z', ends_at: '2031-03-31T01:00:00Z' }
  ], 'spring: from 02:00 WEST (01:30 does not exist); Sunday 22:00 to Monday 02:00 joined')
})

t.test('slots: a member gets slots that start on the grid, within the opening hours, and each books', async (t) => {
  const site = await createSite(app)
  const runway = await createResource(app, 'truck', { site_id: site.id, name: 'runway 09L' })
  const pad = await createResource(app, 'truck', { site_id: site.id, name: 'runway 27R' })
  for (const resource of [runway, pad]) {
    await setRules(resource.id, { time_zone: 'Asia/Kolkata', opening_hours: { mon: [['06:07', '09:00']] }, slot_grid: 'PT15M', min_duration: 'PT15M', max_duration: 'PT15M' })
  }
  await call(app, 'POST', `/api/resources/${pad.id}/allocations`, { starts_at: '2031-01-06T01:00:00Z', ends_at: '2031-01-06T02:10:00Z' })
  const query = (duration: string) => new URLSearchParams({ type: 'truck', site_id: String(site.id), from: '2031-01-06T00:00:00Z', to: '2031-01-06T06:00:00Z', duration })
  const slots: Slot[] = (await call(app, 'GET', `/api/slots?${query('PT15M')}`, undefined, asMember)).json()
  t.same(slots, [
    { resource_id: runway.id, resource_name: runway.name, starts_at: '2031-01-06T00:45:00Z', ends_at: '2031-01-06T03:30:00Z' },
    { resource_id: pad.id, resource_name: pad.name, starts_at: '2031-01-06T00:45:00Z', ends_at: '2031-01-06T01:00:00Z' },
    { resource_id: pad.id, resource_name: pad.name, starts_at: '2031-01-06T02:15:00Z', ends_at: '2031-01-06T03:30:00Z' }
  ], 'open from 06:07 IST: the first grid time is 06:15 (00:45 UTC); the admin\'s booking ends at 07:40, the next grid time is 07:45')
  for (const slot of slots) {
    t.equal(localMinutes(slot.starts_at, 'Asia/Kolkata') % 15, 0, `${slot.starts_at}: starts on the grid`)
    const end = new Date(Date.parse(slot.starts_at) + 15 * 60_000).toISOString()
    t.equal((await call(app, 'POST', `/api/resources/${slot.resource_id}/allocations`, { starts_at: slot.starts_at, ends_at: end }, asMember)).statusCode, 201, `${slot.starts_at} on ${slot.resource_name} books`)
  }
  t.same((await call(app, 'GET', `/api/slots?${query('PT20M')}`, undefined, asMember)).json(), [], 'no 20-minute booking ends on a 15-minute grid (nor fits the length rules)')
  const adminSlots: Slot[] = (await call(app, 'GET', `/api/slots?${query('PT15M')}`)).json()
  t.equal(adminSlots[0]!.starts_at, '2031-01-06T00:00:00Z', 'an admin\'s slots start with the window')
})

t.test('quotas in search: periods a member has used up are not shown to them; others still see them', async (t) => {
  const site = await createSite(app)
  const lorry = await createResource(app, 'lorry', { site_id: site.id })
  await setRules(lorry.id, { time_zone: 'Europe/Lisbon', quotas: [{ period: 'day', max_duration: 'PT3H' }] })
  const day = (time: string) => `2031-02-03T${time}Z`
  t.equal((await call(app, 'POST', `/api/resources/${lorry.id}/allocations`, { starts_at: day('08:00:00'), ends_at: day('10:00:00') }, asMember)).statusCode, 201, 'two of the three hours')
  t.same(await free(lorry.id, day('00:00:00'), '2031-02-05T00:00:00Z'), [
    { starts_at: day('00:00:00'), ends_at: day('08:00:00') },
    { starts_at: day('10:00:00'), ends_at: '2031-02-05T00:00:00Z' }
  ], 'free time: an hour is left that day, so it is shown')
  const slots = async (duration: string, options: { token?: string } = asMember) => (await call(app, 'GET', `/api/slots?${new URLSearchParams({
    type: 'lorry', site_id: String(site.id), from: day('00:00:00'), to: '2031-02-05T00:00:00Z', duration
  })}`, undefined, options)).json<Slot[]>().map((s) => [s.starts_at, s.ends_at])
  t.same(await slots('PT1H'), [[day('00:00:00'), day('08:00:00')], [day('10:00:00'), '2031-02-05T00:00:00Z']], 'an hour fits that day')
  t.same(await slots('PT2H'), [['2031-02-04T00:00:00Z', '2031-02-05T00:00:00Z']], 'two hours do not: that day is left out')
  t.equal((await call(app, 'POST', `/api/resources/${lorry.id}/allocations`, { starts_at: day('12:00:00'), ends_at: day('13:00:00') }, asMember)).statusCode, 201, 'the last hour')
  t.same(await free(lorry.id, day('00:00:00'), '2031-02-05T00:00:00Z'), [{ starts_at: '2031-02-04T00:00:00Z', ends_at: '2031-02-05T00:00:00Z' }], 'then that day is not shown at all')
  const other = await createAccount(app, 'member')
  t.equal((await free(lorry.id, day('00:00:00'), '2031-02-04T00:00:00Z', { token: other.token })).length, 3, 'another member sees the day, around the bookings')
  const listed = async (from: string, to: string, options: { token?: string } = asMember) =>
    (await call(app, 'GET', `/api/lorries?site_id=${site.id}&available_from=${from}&available_to=${to}`, undefined, options)).json().map((r: { id: string }) => r.id)
  t.same(await listed(day('14:00:00'), day('15:00:00')), [], 'available resources: not for the member that day')
  t.same(await listed(day('14:00:00'), day('15:00:00'), { token: other.token }), [lorry.id], 'for another member, yes')
})

t.test('available resources with one end given: that end must be open and on the grid', async (t) => {
  const site = await createSite(app)
  const freezer = await createResource(app, 'freezer', { site_id: site.id })
  await setRules(freezer.id, { time_zone: 'Europe/Lisbon', opening_hours: { mon: [['08:00', '18:00']] }, slot_grid: 'PT30M' })
  const listed = async (query: Record<string, string>, options: { token?: string } = asMember) =>
    (await call(app, 'GET', `/api/freezers?${new URLSearchParams({ site_id: String(site.id), ...query })}`, undefined, options)).json().map((r: { id: string }) => r.id)
  t.same(await listed({ available_from: '2031-02-03T08:00:00Z' }), [freezer.id], 'from 08:00, open and on the grid')
  t.same(await listed({ available_from: '2031-02-03T07:30:00Z' }), [], 'from 07:30: closed')
  t.same(await listed({ available_from: '2031-02-03T08:10:00Z' }), [], 'from 08:10: off the grid')
  t.same(await listed({ available_to: '2031-02-03T18:00:00Z' }), [freezer.id], 'to 18:00: open until then')
  t.same(await listed({ available_to: '2031-02-03T18:30:00Z' }), [], 'to 18:30: closed before it')
  t.same(await listed({ available_from: '2031-02-03T09:00:00Z', available_to: '2031-02-03T18:00:00Z' }), [freezer.id], 'both ends, within the hours')
  t.same(await listed({ available_from: '2031-02-03T09:00:00Z', available_to: '2031-02-04T09:00:00Z' }), [], 'both ends, across the closed night')
  t.same(await listed({ available_from: '2031-02-03T07:30:00Z' }, {}), [freezer.id], 'an admin sees it')
})
