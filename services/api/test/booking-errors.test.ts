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

t.test('odd input to the booking routes never produces a 500; refusals are JSON', async (t) => {
  const car = await createResource(app, 'car')
  const held = (await book(app, car.id, null, null, { status: 'held', hold_seconds: 5 })).json()
  t.equal(held.status, 'held', 'a hold of forever is a hold like any other')
  const requests: Array<[string, string, unknown?, Record<string, string>?]> = [
    ['GET', `/api/resources/${car.id}/free?from=0000-01-01T00:00:00Z&to=0001-01-01T00:00:00Z`],
    ['GET', `/api/resources/${car.id}/free?from=9999-12-31T00:00:00Z&to=9999-12-31T23:59:60Z`],
    ['GET', '/api/slots?type=car&from=0000-01-01T00:00:00Z&to=0000-06-01T00:00:00Z&duration=PT1H'],
    ['GET', '/api/slots?type=car&from=2030-01-01T00:00:00Z&to=2030-06-01T00:00:00Z&duration=P999999999M'],
    ['GET', '/api/slots?type=car&from=2030-01-01T00:00:00Z&to=2030-06-01T00:00:00Z&duration=PT999999999H'],
    ['GET', '/api/slots?type=car&from=2030-01-01T00:00:00Z&to=2030-06-01T00:00:00Z&duration=P999999999W'],
    ['GET', '/api/slots?type=car&type=lorry&from=2030-01-01T00:00:00Z&to=2030-06-01T00:00:00Z&duration=PT1H'],
    ['GET', `/api/resources/${car.id}/calendar.ics?from=0000-01-01T00:00:00Z&to=0000-01-02T00:00:00Z`],
    ['GET', `/api/allocations/${held.id}/history?limit=0`],
    ['POST', '/api/allocations', { type: 'car', starts_at: '0000-01-01T00:00:00Z', ends_at: '0000-01-02T00:00:00Z' }],
    ['POST', '/api/allocations', { type: 'car', starts_at: '2030-01-01T00:00:00Z', ends_at: '2030-01-02T00:00:00Z', data: [] }],
    ['POST', '/api/allocations', 'not json', { 'content-type': 'text/plain' }],
    ['POST', '/api/allocations', '{"type":', { 'content-type': 'application/json' }],
    ['POST', `/api/allocations/${held.id}/confirm`, 'yes', { 'content-type': 'text/plain' }],
    ['POST', `/api/allocations/${held.id}/confirm`, '[]', { 'content-type': 'application/json' }],
    ['POST', '/api/allocations', { type: 'car', starts_at: null, ends_at: null, description: 'x'.repeat(2_000_000) }]
  ]
  for (const [method, url, payload, headers] of requests) {
    const res = await app.inject({ method: method as 'GET' | 'POST', url, headers, ...(payload === undefined ? {} : { payload: payload as string }) })
    t.ok(res.statusCode < 500, `${method} ${url.slice(0, 90)} → ${res.statusCode}`)
    if (res.statusCode >= 400) t.match(res.json(), { statusCode: res.statusCode, code: String, message: String })
  }
})
