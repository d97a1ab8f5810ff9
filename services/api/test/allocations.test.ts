import t from 'tap'
import { book, buildTestApp, call, createResource, createSite } from './helpers.js'

const app = await buildTestApp(t)

// The existing allocation in every matrix case: 10:00 to 12:00 UTC on 1 March 2030,
// written with a +02:00 offset to prove offsets are honoured, not dropped.
const EXISTING = { starts_at: '2030-03-01T12:00:00+02:00', ends_at: '2030-03-01T14:00:00+02:00' }
const at = (hhmm: string) => `2030-03-01T${hhmm}:00Z`

const matrix: Array<{ name: string, starts_at: string | null, ends_at: string | null, status: 201 | 409 }> = [
  { name: 'entirely before', starts_at: at('08:00'), ends_at: at('09:00'), status: 201 },
  { name: 'entirely after', starts_at: at('13:00'), ends_at: at('14:00'), status: 201 },
  { name: 'back-to-back before (ends as it starts)', starts_at: at('09:00'), ends_at: at('10:00'), status: 201 },
  { name: 'back-to-back after (starts as it ends)', starts_at: at('12:00'), ends_at: at('13:00'), status: 201 },
  { name: 'back-to-back before, in another offset', starts_at: '2030-03-01T04:00:00-05:00', ends_at: '2030-03-01T05:00:00-05:00', status: 201 },
  { name: 'contained', starts_at: at('10:30'), ends_at: at('11:30'), status: 409 },
  { name: 'containing', starts_at: at('09:00'), ends_at: at('13:00'), status: 409 },
  { name: 'equal', starts_at: at('10:00'), ends_at: at('12:00'), status: 409 },
  { name: 'equal, in another offset', starts_at: '2030-03-01T15:30:00+05:30', ends_at: '2030-03-01T17:30:00+05:30', status: 409 },
  { name: 'partial over the start', starts_at: at('09:00'), ends_at: at('10:30'), status: 409 },
  { name: 'partial over the end', starts_at: at('11:30'), ends_at: at('12:30'), status: 409 },
  { name: 'one minute over the start', starts_at: at('09:00'), ends_at: at('10:01'), status: 409 },
  { name: 'open start ending as it starts', starts_at: null, ends_at: at('10:00'), status: 201 },
  { name: 'open start reaching into it', starts_at: null, ends_at: at('10:01'), status: 409 },
  { name: 'open end starting as it ends', starts_at: at('12:00'), ends_at: null, status: 201 },
  { name: 'open end starting inside it', starts_at: at('11:59'), ends_at: null, status: 409 },
  { name: 'forever', starts_at: null, ends_at: null, status: 409 }
]

t.test('the overlap matrix: the database refuses exactly the overlapping ranges', async (t) => {
  for (const c of matrix) {
    const car = await createResource(app, 'car')
    const existing = (await book(app, car.id, EXISTING.starts_at, EXISTING.ends_at)).json()
    const res = await book(app, car.id, c.starts_at, c.ends_at)
    t.equal(res.statusCode, c.status, c.name)
    if (c.status === 409) {
      t.match(res.json(), { statusCode: 409, code: 'ALLOCATION_CONFLICT', error: 'Conflict' }, `${c.name}: error body`)
      t.same(res.json().conflicts.map((a: { id: string }) => a.id), [existing.id], `${c.name}: names the conflicting allocation`)
    } else {
      t.match(res.json(), { starts_at: c.starts_at && new Date(c.starts_at).toISOString().replace('.000Z', 'Z'), ends_at: c.ends_at && new Date(c.ends_at).toISOString().replace('.000Z', 'Z') }, `${c.name}: stored as sent, in UTC`)
    }
  }
})

t.test('open-ended and forever allocations block what they cover', async (t) => {
  const car = await createResource(app, 'car')
  const forever = await book(app, car.id, null, null, { kind: 'maintenance', description: 'scrapped' })
  t.equal(forever.statusCode, 201)
  t.match(forever.json(), { starts_at: null, ends_at: null, kind: 'maintenance' })
  t.equal((await book(app, car.id, '1970-01-01T00:00:00Z', '1970-01-01T01:00:00Z')).statusCode, 409)
  t.equal((await book(app, car.id, '9999-12-31T00:00:00Z', null)).statusCode, 409)

  const truck = await createResource(app, 'truck')
  t.equal((await book(app, truck.id, at('10:00'), null)).statusCode, 201, 'until further notice')
  t.equal((await book(app, truck.id, '2099-01-01T00:00:00Z', '2099-01-02T00:00:00Z')).statusCode, 409, 'the far future is taken')
  t.equal((await book(app, truck.id, at('09:00'), at('10:00'))).statusCode, 201, 'just before it is free')
})

t.test('a cancelled allocation stays as history and no longer blocks its slot', async (t) => {
  const car = await createResource(app, 'car')
  const first = (await book(app, car.id, at('10:00'), at('12:00'))).json()
  const cancel = await call(app, 'DELETE', `/api/allocations/${first.id}`)
  t.equal(cancel.statusCode, 204)
  t.equal(cancel.body, '')
  t.equal((await call(app, 'DELETE', `/api/allocations/${first.id}`)).statusCode, 204, 'cancelling twice is still 204')
  const history = (await call(app, 'GET', `/api/allocations/${first.id}`)).json()
  t.match(history, { status: 'cancelled', cancelled_at: /Z$/ })
  const again = (await call(app, 'GET', `/api/allocations/${first.id}`)).json()
  t.equal(again.cancelled_at, history.cancelled_at, 'the second cancel changes nothing')
  t.equal((await book(app, car.id, at('10:00'), at('12:00'))).statusCode, 201, 'the slot is free again')
  const listed = (await call(app, 'GET', `/api/resources/${car.id}/allocations`)).json()
  t.equal(listed.length, 1, 'the default list shows confirmed only')
  const cancelled = (await call(app, 'GET', `/api/resources/${car.id}/allocations?status=cancelled`)).json()
  t.same(cancelled.map((a: { id: string }) => a.id), [first.id])
  t.equal((await call(app, 'GET', `/api/resources/${car.id}/allocations?status=all`)).json().length, 2)
  t.equal((await call(app, 'DELETE', '/api/allocations/00000000-0000-4000-8000-000000000000')).statusCode, 404)
})

t.test('PATCH moves an allocation, checked by the same constraint', async (t) => {
  const car = await createResource(app, 'car')
  const morning = (await book(app, car.id, at('08:00'), at('10:00'))).json()
  const noon = (await book(app, car.id, at('12:00'), at('14:00'), { description: 'lunch run', data: { job: 7 } })).json()

  const into = await call(app, 'PATCH', `/api/allocations/${noon.id}`, { starts_at: at('09:00') })
  t.equal(into.statusCode, 409, 'moving into a neighbour is refused')
  t.match(into.json(), { code: 'ALLOCATION_CONFLICT' })
  t.same(into.json().conflicts.map((a: { id: string }) => a.id), [morning.id])
  t.same((await call(app, 'GET', `/api/allocations/${noon.id}`)).json(), noon, 'the refused move changed nothing')

  const moved = await call(app, 'PATCH', `/api/allocations/${noon.id}`, { starts_at: at('10:00'), ends_at: at('11:00') })
  t.equal(moved.statusCode, 200)
  t.match(moved.json(), { starts_at: at('10:00'), ends_at: at('11:00'), description: 'lunch run', data: { job: 7 } })
  t.equal((await call(app, 'PATCH', `/api/allocations/${morning.id}`, { ends_at: at('10:30') })).statusCode, 409, 'stretching into it is refused too')
  t.equal((await call(app, 'PATCH', `/api/allocations/${morning.id}`, { ends_at: null })).statusCode, 409, 'so is opening the end')
  const inverted = await call(app, 'PATCH', `/api/allocations/${noon.id}`, { ends_at: at('09:00') })
  t.equal(inverted.statusCode, 400)
  t.match(inverted.json().message, /starts_at must be before ends_at/)
  const described = await call(app, 'PATCH', `/api/allocations/${noon.id}`, { description: null, kind: 'maintenance' })
  t.match(described.json(), { description: null, kind: 'maintenance', starts_at: at('10:00') })
  t.ok(described.json().updated_at > noon.updated_at, 'updated_at moves')

  await call(app, 'DELETE', `/api/allocations/${morning.id}`)
  const cancelledMove = await call(app, 'PATCH', `/api/allocations/${morning.id}`, { starts_at: at('07:00') })
  t.equal(cancelledMove.statusCode, 409, 'a cancelled allocation is history')
  t.match(cancelledMove.json(), { code: 'ALLOCATION_CANCELLED' })
  t.equal((await call(app, 'PATCH', '/api/allocations/00000000-0000-4000-8000-000000000000', { description: 'x' })).statusCode, 404)
  t.equal((await call(app, 'PATCH', `/api/allocations/${noon.id}`, { status: 'confirmed' })).statusCode, 400, 'status is not patchable')
})

t.test('times keep their precision and come back in UTC; data round-trips', async (t) => {
  const car = await createResource(app, 'car')
  const res = await book(app, car.id, '2030-05-01T10:00:00.123456+05:30', '2030-05-01T11:00:00-00:30',
    { data: { nested: { list: [1, 'two', null] }, unicode: 'Zürich ✓' }, description: 'précis' })
  t.equal(res.statusCode, 201)
  t.match(res.json(), {
    starts_at: '2030-05-01T04:30:00.123456Z',
    ends_at: '2030-05-01T11:30:00Z',
    data: { nested: { list: [1, 'two', null] }, unicode: 'Zürich ✓' },
    description: 'précis',
    kind: 'booking',
    status: 'confirmed',
    resource_type: 'car',
    resource_id: car.id,
    cancelled_at: null
  })
  t.equal(res.headers.location, `/api/allocations/${res.json().id}`)
})

t.test('listing: ordered by start, windowed, filtered, across resources', async (t) => {
  const site = await createSite(app)
  const car = await createResource(app, 'car', { site_id: site.id })
  const lorry = await createResource(app, 'lorry', { site_id: site.id })
  const late = (await book(app, car.id, '2031-01-03T00:00:00Z', '2031-01-04T00:00:00Z')).json()
  const early = (await book(app, car.id, '2031-01-01T00:00:00Z', '2031-01-02T00:00:00Z')).json()
  const open = (await book(app, car.id, null, '2030-12-01T00:00:00Z', { kind: 'maintenance' })).json()
  const lorryBooking = (await book(app, lorry.id, '2031-01-01T12:00:00Z', '2031-01-01T13:00:00Z')).json()
  const ids = (res: { json: () => Array<{ id: string }> }) => res.json().map((a) => a.id)

  t.same(ids(await call(app, 'GET', `/api/resources/${car.id}/allocations`)), [open.id, early.id, late.id], 'open start first, then by start')
  t.same(ids(await call(app, 'GET', `/api/resources/${car.id}/allocations?from=2031-01-01T12:00:00Z&to=2031-01-03T00:00:00Z`)), [early.id], 'window overlap is half-open too')
  t.same(ids(await call(app, 'GET', `/api/resources/${car.id}/allocations?kind=maintenance`)), [open.id])
  t.same(ids(await call(app, 'GET', `/api/allocations?site_id=${site.id}&from=2031-01-01T00:00:00Z`)), [early.id, lorryBooking.id, late.id])
  t.same(ids(await call(app, 'GET', `/api/allocations?site_id=${site.id}&type=lorry`)), [lorryBooking.id])
  t.same(ids(await call(app, 'GET', `/api/allocations?resource_id=${car.id}&limit=1&offset=1`)), [early.id])
  const inverted = await call(app, 'GET', '/api/allocations?from=2031-01-02T00:00:00Z&to=2031-01-01T00:00:00Z')
  t.equal(inverted.statusCode, 400)
  t.match(inverted.json().message, /from must be before to/)
  t.equal((await call(app, 'GET', '/api/allocations?type=boat')).statusCode, 400)
  t.equal((await call(app, 'GET', '/api/resources/00000000-0000-4000-8000-000000000000/allocations')).statusCode, 404)
})

t.test('per-type allocation routes fix the type', async (t) => {
  const car = await createResource(app, 'car')
  const otherCar = await createResource(app, 'car')
  const lorry = await createResource(app, 'lorry')
  const res = await call(app, 'POST', `/api/cars/${car.id}/allocations`, { starts_at: at('10:00'), ends_at: at('11:00') })
  t.equal(res.statusCode, 201)
  const id = res.json().id
  t.equal(res.headers.location, `/api/cars/${car.id}/allocations/${id}`)
  t.equal((await call(app, 'GET', `/api/cars/${car.id}/allocations/${id}`)).statusCode, 200)
  t.equal((await call(app, 'GET', `/api/cars/${car.id}/allocations`)).json().length, 1)
  t.equal((await call(app, 'GET', `/api/cars/${otherCar.id}/allocations/${id}`)).statusCode, 404, 'another car\'s path')
  t.equal((await call(app, 'GET', `/api/lorries/${car.id}/allocations/${id}`)).statusCode, 404, 'a car at a lorry path')
  t.equal((await call(app, 'POST', `/api/cars/${lorry.id}/allocations`, { starts_at: at('10:00'), ends_at: at('11:00') })).statusCode, 404, 'a lorry at a car path')
  t.equal((await call(app, 'GET', `/api/cars/${lorry.id}/allocations`)).statusCode, 404)
  t.equal((await call(app, 'PATCH', `/api/cars/${car.id}/allocations/${id}`, { ends_at: at('12:00') })).json().ends_at, at('12:00'))
  t.equal((await call(app, 'DELETE', `/api/cars/${otherCar.id}/allocations/${id}`)).statusCode, 404)
  t.equal((await call(app, 'DELETE', `/api/cars/${car.id}/allocations/${id}`)).statusCode, 204)
  t.equal((await call(app, 'GET', `/api/allocations/${id}`)).json().status, 'cancelled')
})
