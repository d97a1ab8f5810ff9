import t from 'tap'
import { book, buildTestApp, call, createResource, createSite, sql } from './helpers.js'

const app = await buildTestApp(t)

const ok = async (res: Promise<{ statusCode: number, body: string }>) => {
  const reply = await res
  if (reply.statusCode !== 201) throw new Error(`not booked: ${reply.body}`)
  return JSON.parse(reply.body) as { id: string }
}
const day = (hour: string) => `2030-01-10T${hour}:00Z`
const q = (params: Record<string, string>) => new URLSearchParams(params).toString()

t.test('free gaps of one resource against a hand-computed schedule', async (t) => {
  const car = await createResource(app, 'car')
  // Open start until 07:00; 09-10 and 10-11 back to back; 12-13 cancelled; 14-15 a live
  // hold; 15-16 a hold that ran out; open end from 18:00.
  await ok(book(app, car.id, null, day('07:00')))
  await ok(book(app, car.id, day('09:00'), day('10:00')))
  await ok(book(app, car.id, day('10:00'), day('11:00')))
  const cancelled = await ok(book(app, car.id, day('12:00'), day('13:00')))
  await call(app, 'DELETE', `/api/allocations/${cancelled.id}`)
  await ok(book(app, car.id, day('14:00'), day('15:00'), { status: 'held', hold_seconds: 600 }))
  const stale = await ok(book(app, car.id, day('15:00'), day('16:00'), { status: 'held', hold_seconds: 600 }))
  await sql(app, 'UPDATE allocation SET created_at = now() - interval \'2 hours\', expires_at = now() - interval \'1 hour\' WHERE id = $1', [stale.id])
  await ok(book(app, car.id, day('18:00'), null, { kind: 'maintenance' }))

  const res = await call(app, 'GET', `/api/resources/${car.id}/free?${q({ from: day('06:00'), to: day('20:00') })}`)
  t.equal(res.statusCode, 200)
  t.same(res.json(), [
    { starts_at: day('07:00'), ends_at: day('09:00') },
    { starts_at: day('11:00'), ends_at: day('14:00') },
    { starts_at: day('15:00'), ends_at: day('18:00') }
  ])

  const inside = await call(app, 'GET', `/api/cars/${car.id}/free?${q({ from: '2030-01-10T11:30:00+02:00', to: '2030-01-10T14:30:00+02:00' })}`)
  t.same(inside.json(), [{ starts_at: day('11:00'), ends_at: day('12:30') }],
    'offsets are read, the window clips the gaps, and the per-type alias answers the same')
  const busy = await call(app, 'GET', `/api/resources/${car.id}/free?${q({ from: day('19:00'), to: '2030-02-01T00:00:00Z' })}`)
  t.equal(busy.statusCode, 200)
  t.same(busy.json(), [], 'nothing free after the open-ended block')

  const page = await call(app, 'GET', `/api/resources/${car.id}/free?${q({ from: day('06:00'), to: day('20:00'), limit: '2' })}`)
  t.equal(page.json().length, 2)
  t.match(page.headers.link, /offset=2>; rel="next"$/)
  const next = await call(app, 'GET', `/api/resources/${car.id}/free?${q({ from: day('06:00'), to: day('20:00'), limit: '2', offset: '2' })}`)
  t.same(next.json(), [{ starts_at: day('15:00'), ends_at: day('18:00') }])
})

t.test('free time: unknown resources are 404 and bad windows are 400 naming the field', async (t) => {
  const car = await createResource(app, 'car')
  const lorry = await createResource(app, 'lorry')
  const window = q({ from: day('06:00'), to: day('20:00') })
  t.equal((await call(app, 'GET', `/api/resources/00000000-0000-4000-8000-000000000000/free?${window}`)).statusCode, 404)
  t.equal((await call(app, 'GET', `/api/cars/${lorry.id}/free?${window}`)).statusCode, 404, 'a lorry is not a car')
  t.same((await call(app, 'GET', `/api/resources/${car.id}/free?${window}`)).json(), [{ starts_at: day('06:00'), ends_at: day('20:00') }])
  const cases: Array<[string, RegExp]> = [
    [q({ to: day('20:00') }), /querystring\/from is required/],
    [q({ from: day('06:00') }), /querystring\/to is required/],
    [q({ from: day('20:00'), to: day('06:00') }), /querystring\/from must be before to/],
    [q({ from: day('06:00'), to: day('06:00') }), /querystring\/from must be before to/],
    [q({ from: '2030-01-10T06:00:00', to: day('20:00') }), /querystring\/from must be an RFC 3339 date-time with an offset/],
    [q({ from: 'tomorrow', to: day('20:00') }), /querystring\/from/],
    [`${window}&kind=booking`, /querystring\/kind is not an accepted property/]
  ]
  for (const [query, message] of cases) {
    const res = await call(app, 'GET', `/api/resources/${car.id}/free?${query}`)
    t.equal(res.statusCode, 400, query)
    t.match(res.json().message, message, query)
  }
})

t.test('slot search across the resources of a type, by duration', async (t) => {
  const north = await createSite(app)
  const south = await createSite(app)
  const a = await createResource(app, 'truck', { name: 'a-truck', site_id: north.id })
  const b = await createResource(app, 'truck', { name: 'b-truck', site_id: north.id })
  const c = await createResource(app, 'truck', { name: 'c-truck', site_id: south.id })
  const elsewhere = await createResource(app, 'lorry', { site_id: north.id })
  await ok(book(app, elsewhere.id, day('06:00'), day('07:00')))
  await ok(book(app, a.id, day('08:00'), day('12:00')))
  await ok(book(app, a.id, day('13:00'), null))
  await ok(book(app, b.id, day('09:00'), day('10:00')))
  const slot = (r: { id: string, name: string }, from: string, to: string) => ({ resource_id: r.id, resource_name: r.name, starts_at: day(from), ends_at: day(to) })
  const search = async (params: Record<string, string>) => {
    const res = await call(app, 'GET', `/api/slots?${q({ type: 'truck', from: day('08:00'), to: day('18:00'), ...params })}`)
    if (res.statusCode !== 200) throw new Error(`search failed: ${res.body}`)
    return { body: res.json(), link: res.headers.link }
  }

  t.same((await search({ duration: 'PT2H' })).body, [slot(c, '08:00', '18:00'), slot(b, '10:00', '18:00')])
  t.same((await search({ duration: 'PT2H', site_id: String(north.id) })).body, [slot(b, '10:00', '18:00')])
  t.same((await search({ duration: 'PT1H' })).body,
    [slot(b, '08:00', '09:00'), slot(c, '08:00', '18:00'), slot(b, '10:00', '18:00'), slot(a, '12:00', '13:00')],
    'a gap exactly as long as the duration counts; ties on start go by name')
  t.same((await search({ duration: 'PT61M' })).body, [slot(c, '08:00', '18:00'), slot(b, '10:00', '18:00')])
  t.same((await search({ duration: 'PT0.5H' })).body.length, 4)
  t.same((await search({ duration: 'PT10H' })).body, [slot(c, '08:00', '18:00')])
  t.same((await search({ duration: 'P1D' })).body, [], 'nothing a day long fits in ten hours')
  t.same((await search({ duration: 'P1DT2H30M', to: '2030-01-12T00:00:00Z' })).body, [
    { resource_id: c.id, resource_name: c.name, starts_at: day('08:00'), ends_at: '2030-01-12T00:00:00Z' },
    { resource_id: b.id, resource_name: b.name, starts_at: day('10:00'), ends_at: '2030-01-12T00:00:00Z' }
  ])
  const first = await search({ duration: 'PT1H', limit: '2' })
  t.same(first.body, [slot(b, '08:00', '09:00'), slot(c, '08:00', '18:00')])
  t.match(first.link, /^<\/api\/slots\?.*offset=2>; rel="next"$/)
  t.same((await search({ duration: 'PT1H', limit: '2', offset: '2' })).body, [slot(b, '10:00', '18:00'), slot(a, '12:00', '13:00')])
})

t.test('slot search refuses bad input with a 400 naming the field', async (t) => {
  const base = { type: 'truck', from: day('08:00'), to: day('18:00'), duration: 'PT2H' }
  const cases: Array<[Record<string, string | undefined>, RegExp]> = [
    [{ duration: 'PT0H' }, /querystring\/duration must be longer than zero/],
    [{ duration: 'P0D' }, /querystring\/duration must be longer than zero/],
    [{ duration: 'PT0.0S' }, /querystring\/duration must be longer than zero/],
    [{ duration: '-PT2H' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: 'PT-2H' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: 'P' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: 'PT' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: 'P2H' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: '2 hours' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: '7200' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: 'PT2H3' }, /querystring\/duration must be an ISO 8601 duration/],
    [{ duration: undefined }, /querystring\/duration is required/],
    [{ type: undefined }, /querystring\/type is required/],
    [{ type: 'spaceship' }, /querystring\/type must be one of/],
    [{ from: day('18:00'), to: day('08:00') }, /querystring\/from must be before to/],
    [{ to: '2031-01-11T08:00:01Z' }, /querystring\/to must be at most 366 days after from/],
    [{ site_id: '0' }, /querystring\/site_id/],
    [{ limit: '1001' }, /querystring\/limit/],
    [{ resource_id: '00000000-0000-4000-8000-000000000000' }, /querystring\/resource_id is not an accepted property/]
  ]
  for (const [change, message] of cases) {
    const params = Object.fromEntries(Object.entries({ ...base, ...change }).filter(([, v]) => v !== undefined)) as Record<string, string>
    const res = await call(app, 'GET', `/api/slots?${q(params)}`)
    t.equal(res.statusCode, 400, JSON.stringify(change))
    t.match(res.json().message, message, JSON.stringify(change))
  }
  const huge = await call(app, 'GET', `/api/slots?${q({ ...base, duration: 'P999999999Y' })}`)
  t.equal(huge.statusCode, 400, 'an interval PostgreSQL cannot hold is bad input, not a 500')
  t.equal((await call(app, 'GET', `/api/slots?${q({ ...base, to: '2031-01-11T08:00:00Z' })}`)).statusCode, 200, '366 days is allowed')
})
