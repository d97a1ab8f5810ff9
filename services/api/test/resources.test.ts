import t from 'tap'
import { book, buildTestApp, call, createResource, createSite, unique } from './helpers.js'

const app = await buildTestApp(t)
const UUID = '3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b'

t.test('resource types are listed as seeded', async (t) => {
  const res = await call(app, 'GET', '/api/resource-types')
  t.equal(res.statusCode, 200)
  t.same(res.json(), [
    { name: 'car', plural: 'cars', category: 'vehicle' },
    { name: 'computer', plural: 'computers', category: 'instrument' },
    { name: 'freezer', plural: 'freezers', category: 'instrument' },
    { name: 'lorry', plural: 'lorries', category: 'vehicle' },
    { name: 'truck', plural: 'trucks', category: 'vehicle' }
  ])
  const page = await call(app, 'GET', '/api/resource-types?limit=2&offset=2')
  t.same(page.json().map((r: { name: string }) => r.name), ['freezer', 'lorry'])
  t.equal(page.headers.link, '</api/resource-types?limit=2&offset=4>; rel="next"')
})

t.test('POST /api/resources creates; names are unique per type only', async (t) => {
  const site = await createSite(app)
  const res = await call(app, 'POST', '/api/resources', { type: 'car', name: 'Aurora', site_id: site.id })
  t.equal(res.statusCode, 201)
  t.match(res.json(), { id: String, type: 'car', name: 'Aurora', site_id: site.id, mac: null })
  t.equal(res.headers.location, `/api/resources/${res.json().id}`)
  const duplicate = await call(app, 'POST', '/api/resources', { type: 'car', name: 'Aurora' })
  t.equal(duplicate.statusCode, 409)
  t.match(duplicate.json(), { code: 'DUPLICATE', message: /name/ })
  t.equal((await call(app, 'POST', '/api/resources', { type: 'truck', name: 'Aurora' })).statusCode, 201, 'same name, other type')
  const unknownType = await call(app, 'POST', '/api/resources', { type: 'boat', name: 'Dinghy' })
  t.equal(unknownType.statusCode, 400)
  t.match(unknownType.json().message, /body\/type must be one of car, computer, freezer, lorry, truck/)
  const noSite = await call(app, 'POST', '/api/resources', { type: 'car', name: unique('car'), site_id: 987654 })
  t.equal(noSite.statusCode, 409)
  t.match(noSite.json(), { code: 'REFERENCE_NOT_FOUND', message: /site_id/ })
})

t.test('a MAC is unique, normalised, and allowed only on computers', async (t) => {
  const pc = await call(app, 'POST', '/api/computers', { name: unique('pc'), mac: '08-00-2B-AA-BB-CC' })
  t.equal(pc.statusCode, 201)
  t.equal(pc.json().mac, '08:00:2b:aa:bb:cc')
  const again = await call(app, 'POST', '/api/computers', { name: unique('pc'), mac: '08:00:2b:aa:bb:cc' })
  t.equal(again.statusCode, 409)
  t.match(again.json().message, /mac is already used/)
  const onCar = await call(app, 'POST', '/api/cars', { name: unique('car'), mac: '08:00:2b:aa:bb:cd' })
  t.equal(onCar.statusCode, 400)
  t.match(onCar.json().message, /mac is allowed only on computers/)
  const garbage = await call(app, 'POST', '/api/computers', { name: unique('pc'), mac: 'not-a-mac' })
  t.equal(garbage.statusCode, 400)
  t.match(garbage.json().message, /body\/mac must be a MAC address/)
  const turnIntoCar = await call(app, 'PATCH', `/api/resources/${pc.json().id}`, { type: 'car' })
  t.equal(turnIntoCar.statusCode, 400, 'a computer with a MAC cannot become a car')
  t.equal((await call(app, 'GET', `/api/resources/${pc.json().id}`)).json().type, 'computer', 'and it did not')
})

t.test('per-type families: list, create, get, put, patch, delete with the type fixed', async (t) => {
  const car = await call(app, 'POST', '/api/cars', { name: unique('car') })
  t.equal(car.statusCode, 201)
  t.equal(car.json().type, 'car')
  t.equal(car.headers.location, `/api/cars/${car.json().id}`)
  const lorry = await createResource(app, 'lorry')
  t.equal((await call(app, 'GET', `/api/cars/${car.json().id}`)).statusCode, 200)
  t.equal((await call(app, 'GET', `/api/cars/${lorry.id}`)).statusCode, 404, 'a lorry at a car path is 404')
  t.equal((await call(app, 'PATCH', `/api/cars/${lorry.id}`, { name: 'x' })).statusCode, 404)
  t.equal((await call(app, 'DELETE', `/api/cars/${lorry.id}`)).statusCode, 404)
  t.equal((await call(app, 'GET', `/api/lorries/${lorry.id}`)).statusCode, 200)
  t.equal((await call(app, 'POST', '/api/cars', { type: 'car', name: unique('car') })).statusCode, 400, 'the path fixes the type')
  const cars = (await call(app, 'GET', '/api/cars?limit=1000')).json()
  t.ok(cars.length >= 1 && cars.every((r: { type: string }) => r.type === 'car'), 'lists only cars')
  t.ok(cars.some((r: { id: string }) => r.id === car.json().id))

  const put = await call(app, 'PUT', `/api/trucks/${UUID}`, { name: 'Chosen truck' })
  t.equal(put.statusCode, 201)
  t.match(put.json(), { id: UUID, type: 'truck' })
  t.equal(put.headers.location, `/api/trucks/${UUID}`)
  const replaced = await call(app, 'PUT', `/api/trucks/${UUID}`, { name: 'Renamed truck' })
  t.equal(replaced.statusCode, 200)
  t.equal(replaced.json().name, 'Renamed truck')
  t.equal((await call(app, 'PUT', `/api/cars/${UUID}`, { name: 'hijack' })).statusCode, 404, 'a per-type PUT does not take over another type\'s id')
  t.equal((await call(app, 'GET', `/api/trucks/${UUID}`)).json().name, 'Renamed truck')
})

t.test('generic PUT upserts with a client uuid, then POSTs still work', async (t) => {
  const id = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'
  const created = await call(app, 'PUT', `/api/resources/${id}`, { type: 'freezer', name: unique('freezer') })
  t.equal(created.statusCode, 201)
  const replaced = await call(app, 'PUT', `/api/resources/${id}`, { type: 'freezer', name: 'Freezer -80C' })
  t.equal(replaced.statusCode, 200)
  t.match(replaced.json(), { id, name: 'Freezer -80C', site_id: null })
  t.equal((await call(app, 'POST', '/api/resources', { type: 'freezer', name: unique('freezer') })).statusCode, 201)
  t.equal((await call(app, 'PUT', '/api/resources/not-a-uuid', { type: 'car', name: 'x' })).statusCode, 400)
})

t.test('available_from/available_to keep resources with no live allocation in the window', async (t) => {
  const site = await createSite(app)
  const busy = await createResource(app, 'car', { site_id: site.id })
  const free = await createResource(app, 'car', { site_id: site.id })
  const cancelled = await createResource(app, 'car', { site_id: site.id })
  await book(app, busy.id, '2032-01-01T10:00:00Z', '2032-01-01T12:00:00Z')
  const gone = (await book(app, cancelled.id, '2032-01-01T10:00:00Z', '2032-01-01T12:00:00Z')).json()
  await call(app, 'DELETE', `/api/allocations/${gone.id}`)
  const names = async (query: string) => (await call(app, 'GET', `/api/resources?site_id=${site.id}&${query}`)).json().map((r: { id: string }) => r.id).sort()
  t.same(await names('available_from=2032-01-01T11:00:00Z&available_to=2032-01-01T13:00:00Z'), [cancelled.id, free.id].sort())
  t.same(await names('available_from=2032-01-01T12:00:00Z&available_to=2032-01-01T13:00:00Z'), [busy.id, cancelled.id, free.id].sort(), 'back-to-back is available')
  t.same(await names('available_from=2032-01-01T11:59:00%2B01:00'), [cancelled.id, free.id].sort(), 'an open window end, in another offset')
  t.same(await names('type=car'), [busy.id, cancelled.id, free.id].sort())
  t.equal((await call(app, 'GET', '/api/resources?available_from=2032-01-02T00:00:00Z&available_to=2032-01-01T00:00:00Z')).statusCode, 400)
  t.equal((await call(app, 'GET', '/api/resources?available_from=2032-01-02')).statusCode, 400, 'a date without time and offset')
})

t.test('DELETE refuses while allocations have not ended, unless force; past ones go with it', async (t) => {
  const car = await createResource(app, 'car')
  const past = (await book(app, car.id, '2001-01-01T00:00:00Z', '2001-01-02T00:00:00Z')).json()
  const future = (await book(app, car.id, '2040-01-01T00:00:00Z', '2040-01-02T00:00:00Z')).json()
  const refused = await call(app, 'DELETE', `/api/resources/${car.id}`)
  t.equal(refused.statusCode, 409)
  t.match(refused.json(), { code: 'IN_USE', message: /1 allocation that has not ended/ })
  t.equal((await call(app, 'GET', `/api/allocations/${future.id}`)).statusCode, 200, 'nothing was deleted')
  await call(app, 'DELETE', `/api/allocations/${future.id}`)
  t.equal((await call(app, 'DELETE', `/api/resources/${car.id}`)).statusCode, 204, 'only past and cancelled ones left')
  t.equal((await call(app, 'GET', `/api/allocations/${past.id}`)).statusCode, 404)

  const truck = await createResource(app, 'truck')
  const open = (await book(app, truck.id, '2001-01-01T00:00:00Z', null)).json()
  t.equal((await call(app, 'DELETE', `/api/trucks/${truck.id}`)).statusCode, 409, 'an open-ended allocation has not ended')
  t.equal((await call(app, 'DELETE', `/api/trucks/${truck.id}?force=true`)).statusCode, 204)
  t.equal((await call(app, 'GET', `/api/allocations/${open.id}`)).statusCode, 404, 'force took it along')
  t.equal((await call(app, 'DELETE', `/api/trucks/${truck.id}`)).statusCode, 404)
  t.equal((await call(app, 'DELETE', `/api/resources/${truck.id}?force=maybe`)).statusCode, 400)
})

t.test('containers live only in freezers', async (t) => {
  const freezer = await createResource(app, 'freezer')
  const otherFreezer = await createResource(app, 'freezer')
  const car = await createResource(app, 'car')
  const created = await call(app, 'POST', `/api/freezers/${freezer.id}/containers`, { description: 'Box 1' })
  t.equal(created.statusCode, 201)
  const box = created.json()
  t.match(box, { freezer_id: freezer.id, description: 'Box 1' })
  t.equal(created.headers.location, `/api/containers/${box.id}`)
  t.equal((await call(app, 'POST', `/api/freezers/${freezer.id}/containers`, {})).json().description, null)
  t.equal((await call(app, 'GET', `/api/freezers/${freezer.id}/containers`)).json().length, 2)
  t.equal((await call(app, 'POST', `/api/freezers/${car.id}/containers`, { description: 'x' })).statusCode, 404, 'a car is no freezer')
  t.equal((await call(app, 'GET', `/api/freezers/${car.id}/containers`)).statusCode, 404)
  const moveToCar = await call(app, 'PATCH', `/api/containers/${box.id}`, { freezer_id: car.id })
  t.equal(moveToCar.statusCode, 409, 'the database refuses a container in a car')
  t.match(moveToCar.json().message, /freezer_id/)
  const moved = await call(app, 'PATCH', `/api/containers/${box.id}`, { freezer_id: otherFreezer.id })
  t.equal(moved.statusCode, 200)
  t.match(moved.json(), { freezer_id: otherFreezer.id, description: 'Box 1' })
  t.equal((await call(app, 'PATCH', `/api/resources/${otherFreezer.id}`, { type: 'car' })).statusCode, 409, 'a freezer holding containers stays a freezer')
  const inUse = await call(app, 'DELETE', `/api/freezers/${otherFreezer.id}`)
  t.equal(inUse.statusCode, 409)
  t.match(inUse.json(), { code: 'IN_USE', message: /containers/ })
  t.equal((await call(app, 'DELETE', `/api/freezers/${otherFreezer.id}?force=true`)).statusCode, 204)
  t.equal((await call(app, 'GET', `/api/containers/${box.id}`)).statusCode, 404, 'force took its containers')
  const last = (await call(app, 'GET', `/api/freezers/${freezer.id}/containers`)).json()[0]
  t.equal((await call(app, 'DELETE', `/api/containers/${last.id}`)).statusCode, 204)
  t.equal((await call(app, 'DELETE', `/api/containers/${last.id}`)).statusCode, 404)
})

t.test('instruments: computers and freezers with their site name', async (t) => {
  const site = await createSite(app, { name: 'Instrument Hall' })
  const pc = await createResource(app, 'computer', { site_id: site.id, mac: 'a4:bb:6d:00:00:01' })
  const freezer = await createResource(app, 'freezer', { site_id: site.id })
  await createResource(app, 'car', { site_id: site.id })
  const res = await call(app, 'GET', `/api/instruments?site_id=${site.id}`)
  t.equal(res.statusCode, 200)
  t.same(res.json(), [
    { id: pc.id, type: 'computer', name: pc.name, site_id: site.id, site_name: 'Instrument Hall', mac: 'a4:bb:6d:00:00:01' },
    { id: freezer.id, type: 'freezer', name: freezer.name, site_id: site.id, site_name: 'Instrument Hall', mac: null }
  ])
})
