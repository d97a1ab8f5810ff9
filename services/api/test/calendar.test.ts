import ICAL from 'ical.js'
import t from 'tap'
import { book, buildTestApp, call, createResource, sql } from './helpers.js'

const app = await buildTestApp(t)

interface Parsed {
  calendar: InstanceType<typeof ICAL.Component>
  events: Map<string, InstanceType<typeof ICAL.Event>>
}

/** Parses with ical.js, as a calendar client would; throws on anything it cannot read. */
function parse (text: string): Parsed {
  const calendar = new ICAL.Component(ICAL.parse(text))
  const events = new Map(calendar.getAllSubcomponents('vevent').map((v) => {
    const event = new ICAL.Event(v)
    return [event.uid, event] as const
  }))
  return { calendar, events }
}

const iso = (time: InstanceType<typeof ICAL.Time>) => time.toJSDate().toISOString().replace('.000Z', 'Z')

async function feed (path: string) {
  const res = await call(app, 'GET', path)
  if (res.statusCode !== 200) throw new Error(`feed not read: ${res.statusCode} ${res.body}`)
  return { res, ...parse(res.body) }
}

const ok = async (reply: Promise<{ statusCode: number, body: string }>) => {
  const res = await reply
  if (res.statusCode !== 201) throw new Error(`not booked: ${res.body}`)
  return JSON.parse(res.body) as { id: string, expires_at: string | null }
}

t.test('one event per blocking allocation, parsed by ical.js', async (t) => {
  const car = await createResource(app, 'car', { name: 'AV-07 Comma, Semicolon; Backslash\\' })
  const tricky = 'Airport run, terminal 2; gate "B"\\C, file C:\\new\\, \\;\nSecond line\r\nThird line — Überführung nach Köln 🚗 ' + 'ß'.repeat(60)
  const plain = await ok(book(app, car.id, '2030-01-10T09:00:00+01:00', '2030-01-10T17:30:00+01:00', { description: tricky }))
  const held = await ok(book(app, car.id, '2030-01-11T09:00:00Z', '2030-01-11T10:00:00Z', { status: 'held', hold_seconds: 600 }))
  const maintenance = await ok(book(app, car.id, '2030-01-12T00:00:00Z', null, { kind: 'maintenance' }))
  const cancelled = await ok(book(app, car.id, '2030-01-09T09:00:00Z', '2030-01-09T10:00:00Z'))
  await call(app, 'DELETE', `/api/allocations/${cancelled.id}`)
  const stale = await ok(book(app, car.id, '2030-01-08T09:00:00Z', '2030-01-08T10:00:00Z', { status: 'held', hold_seconds: 60 }))
  await sql(app, 'UPDATE allocation SET created_at = now() - interval \'2 hours\', expires_at = now() - interval \'1 hour\' WHERE id = $1', [stale.id])
  const outside = await ok(book(app, car.id, '2029-12-01T09:00:00Z', '2029-12-01T10:00:00Z'))

  const { res, calendar, events } = await feed(`/api/resources/${car.id}/calendar.ics?from=2030-01-01T00:00:00Z&to=2030-02-01T00:00:00Z`)
  t.match(res.headers['content-type'], /^text\/calendar; charset=utf-8$/)
  t.equal(calendar.name, 'vcalendar')
  t.equal(calendar.getFirstPropertyValue('version'), '2.0')
  t.ok(calendar.getFirstPropertyValue('prodid'))
  t.equal(calendar.getFirstPropertyValue('x-wr-calname'), 'AV-07 Comma, Semicolon; Backslash\\ (car)', 'escaped TEXT reads back exactly')
  t.same([...events.keys()].sort(), [plain.id, held.id, maintenance.id].sort(), 'cancelled, run-out and out-of-window allocations are left out')
  t.notOk(events.has(outside.id))

  const booking = events.get(plain.id)!
  t.equal(iso(booking.startDate), '2030-01-10T08:00:00Z')
  t.equal(iso(booking.endDate), '2030-01-10T16:30:00Z')
  t.equal(booking.startDate.zone?.tzid, 'UTC', 'DTSTART is in UTC')
  t.equal(booking.endDate.zone?.tzid, 'UTC', 'DTEND is in UTC')
  t.equal(booking.summary, tricky.replace(/\r\n/g, '\n'), 'commas, semicolons, backslashes, newlines and UTF-8 survive escaping and folding')
  t.ok(booking.description.includes(tricky.replace(/\r\n/g, '\n')))
  t.ok(booking.component.getFirstPropertyValue('dtstamp'), 'every event has a DTSTAMP')
  t.equal(booking.component.getFirstPropertyValue('status'), 'CONFIRMED')

  const hold = events.get(held.id)!
  t.equal(hold.component.getFirstPropertyValue('status'), 'TENTATIVE')
  t.match(hold.summary, /^Held: /)
  t.ok(hold.description.includes(held.expires_at!))

  const open = events.get(maintenance.id)!
  t.equal(iso(open.startDate), '2030-01-12T00:00:00Z')
  t.equal(iso(open.endDate), '2030-02-01T00:00:00Z', 'an open end is cut off at the window')
  t.match(open.description, /Open end: allocated until further notice/)
  t.equal(open.component.getFirstPropertyValue('categories'), 'MAINTENANCE')
})

t.test('the text itself: CRLF line ends and lines folded at 75 octets', async (t) => {
  const car = await createResource(app, 'car')
  await ok(book(app, car.id, '2030-03-01T09:00:00Z', '2030-03-01T10:00:00Z', { description: '€'.repeat(200) + ' ' + 'a'.repeat(200) }))
  const { res } = await feed(`/api/cars/${car.id}/calendar.ics?from=2030-03-01T00:00:00Z&to=2030-03-02T00:00:00Z`)
  t.ok(res.body.endsWith('\r\n'))
  const lines = res.body.slice(0, -2).split('\r\n')
  t.notOk(lines.some((line) => line.includes('\n') || line.includes('\r')), 'no bare LF or CR')
  const longest = Math.max(...lines.map((line) => Buffer.byteLength(line)))
  t.ok(longest <= 75, `no line longer than 75 octets (longest ${longest})`)
  t.ok(lines.filter((line) => line.startsWith(' ')).length > 5, 'long values were folded')
  t.notOk(lines.some((line) => line.includes('\uFFFD')), 'no UTF-8 sequence was cut')
})

t.test('open starts, sub-second times and the default window', async (t) => {
  const car = await createResource(app, 'car')
  const openStart = await ok(book(app, car.id, null, '2030-04-01T12:00:00Z'))
  const fractional = await ok(book(app, car.id, '2030-04-02T09:00:00.250Z', '2030-04-02T10:00:00.000001Z'))
  const { events } = await feed(`/api/resources/${car.id}/calendar.ics?from=2030-03-31T00:00:00%2B02:00&to=2030-04-03T00:00:00Z`)
  t.equal(iso(events.get(openStart.id)!.startDate), '2030-03-30T22:00:00Z', 'an open start is cut off at the window, in UTC')
  t.match(events.get(openStart.id)!.description, /Open start/)
  t.equal(iso(events.get(fractional.id)!.startDate), '2030-04-02T09:00:00Z', 'fractions round the start down')
  t.equal(iso(events.get(fractional.id)!.endDate), '2030-04-02T10:00:01Z', 'and the end up, so the event covers the allocation')

  const other = await createResource(app, 'lorry')
  const day = 24 * 60 * 60 * 1000
  const at = (offsetDays: number, hours: number) => new Date(Date.now() + offsetDays * day + hours * 3600_000).toISOString()
  const recent = await ok(book(app, other.id, at(-20, 0), at(-20, 1)))
  const old = await ok(book(app, other.id, at(-40, 0), at(-40, 1)))
  const nextYear = await ok(book(app, other.id, at(300, 0), at(300, 1)))
  const tooFar = await ok(book(app, other.id, at(400, 0), at(400, 1)))
  const defaults = await feed(`/api/lorries/${other.id}/calendar.ics`)
  t.same([...defaults.events.keys()].sort(), [recent.id, nextYear.id].sort(), 'by default 30 days back to a year ahead')
  t.notOk(defaults.events.has(old.id) || defaults.events.has(tooFar.id))
  const empty = await feed(`/api/resources/${other.id}/calendar.ics?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z`)
  t.equal(empty.events.size, 0, 'an empty window is a valid, empty calendar')
})

t.test('bad requests are 4xx naming the field', async (t) => {
  const car = await createResource(app, 'car')
  const lorry = await createResource(app, 'lorry')
  t.equal((await call(app, 'GET', '/api/resources/00000000-0000-4000-8000-000000000000/calendar.ics')).statusCode, 404)
  t.equal((await call(app, 'GET', `/api/cars/${lorry.id}/calendar.ics`)).statusCode, 404, 'a lorry is not a car')
  const cases: Array<[string, RegExp]> = [
    ['from=2030-02-01T00:00:00Z&to=2030-01-01T00:00:00Z', /querystring\/from must be before to/],
    ['from=2030-01-01T00:00:00Z&to=2033-01-02T00:00:00Z', /querystring\/to must be at most 1096 days after from/],
    ['from=2030-01-01', /querystring\/from must be an RFC 3339 date-time/],
    ['to=soon', /querystring\/to/],
    ['from=2999-01-01T00:00:00Z', /querystring\/from must be before to/],
    ['format=json', /querystring\/format is not an accepted property/]
  ]
  for (const [query, message] of cases) {
    const res = await call(app, 'GET', `/api/resources/${car.id}/calendar.ics?${query}`)
    t.equal(res.statusCode, 400, query)
    t.match(res.json().message, message, query)
  }
  const bad = await call(app, 'GET', '/api/resources/nope/calendar.ics')
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /params\/id/)
})
