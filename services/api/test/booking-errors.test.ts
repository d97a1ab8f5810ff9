import t from 'tap'
import { book, buildTestApp, call, createResource } from './helpers.js'

const app = await buildTestApp(t)

t.test('a 409 without overlapping allocations is still a JSON 409 (changing a cancelled allocation)', async (t) => {
  const car = await createResource(app, 'car')
  const allocation = (await book(app, car.id, '2030-01-01T00:00:00Z', '2030-01-02T00:00:00Z')).json()
  t.equal((await call(app, 'DELETE', `/api/allocations/${allocation.id}`)).statusCode, 204)
  const res = await call(app, 'PATCH', `/api/allocations/${allocation.id}`, { description: 'too late' })
  t.equal(res.statusCode, 409)
  t.match(res.json(), { statusCode: 409, code: 'ALLOCATION_CANCELLED', error: 'Conflict', message: /cancelled/ })
  t.notOk('conflicts' in res.json())
})
