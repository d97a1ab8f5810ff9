import t from 'tap'
import { bearer, buildTestApp, call, createResource, createSite } from './helpers.js'

const app = await buildTestApp(t)
const site = await createSite(app, { name: 'Untouchable' })
const car = await createResource(app, 'car', { site_id: site.id })
const booking = (await call(app, 'POST', `/api/resources/${car.id}/allocations`, { starts_at: '2030-01-01T10:00:00Z', ends_at: '2030-01-01T12:00:00Z' })).json()

/** Everything stored, to prove a refused request changed nothing. */
async function snapshot () {
  const pool = app.pg.pool
  const [sites, resources, allocations] = await Promise.all([
    pool.query('SELECT * FROM site ORDER BY id'),
    pool.query('SELECT * FROM resource ORDER BY id'),
    pool.query('SELECT * FROM allocation ORDER BY id')
  ])
  return JSON.stringify([sites.rows, resources.rows, allocations.rows])
}

interface Case {
  name: string
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  url: string
  body?: string
  contentType?: string
  status: number
  message?: RegExp
}

const alloc = `/api/resources/${car.id}/allocations`
const json = (value: unknown) => JSON.stringify(value)
const cases: Case[] = [
  { name: 'malformed uuid in the path', method: 'GET', url: '/api/resources/123', status: 400, message: /params\/id must be a valid uuid/ },
  { name: 'malformed uuid in a nested path', method: 'DELETE', url: `/api/cars/${car.id}/allocations/zzz`, status: 400, message: /params\/allocation_id/ },
  { name: 'malformed escape in the path', method: 'GET', url: '/api/sites/%zz', status: 400, message: /not a valid url/ },
  { name: 'repeated query parameter', method: 'GET', url: '/api/sites?limit=10&limit=20', status: 400, message: /querystring\/limit/ },
  { name: 'site id that is not a number', method: 'GET', url: '/api/sites/abc', status: 400, message: /params\/id/ },
  { name: 'site id beyond 2^53', method: 'GET', url: '/api/sites/99999999999999999999', status: 400, message: /params\/id/ },
  { name: 'time without an offset', method: 'POST', url: alloc, body: json({ starts_at: '2030-02-01T10:00:00', ends_at: '2030-02-01T11:00:00Z' }), status: 400, message: /body\/starts_at must be an RFC 3339 date-time with an offset/ },
  { name: 'date only', method: 'POST', url: alloc, body: json({ starts_at: '2030-02-01', ends_at: '2030-02-02' }), status: 400, message: /body\/starts_at/ },
  { name: 'impossible date', method: 'POST', url: alloc, body: json({ starts_at: '2030-02-30T10:00:00Z', ends_at: null }), status: 400, message: /body\/starts_at/ },
  { name: 'year zero', method: 'POST', url: alloc, body: json({ starts_at: '0000-01-01T00:00:00Z', ends_at: '0001-01-01T00:00:00Z' }), status: 400 },
  { name: 'not a time at all', method: 'POST', url: alloc, body: json({ starts_at: 'tomorrow', ends_at: null }), status: 400, message: /body\/starts_at/ },
  { name: 'inverted range', method: 'POST', url: alloc, body: json({ starts_at: '2030-02-01T12:00:00Z', ends_at: '2030-02-01T10:00:00Z' }), status: 400, message: /starts_at must be before ends_at/ },
  { name: 'empty range', method: 'POST', url: alloc, body: json({ starts_at: '2030-02-01T12:00:00Z', ends_at: '2030-02-01T12:00:00Z' }), status: 400, message: /starts_at must be before ends_at/ },
  { name: 'empty range across offsets', method: 'POST', url: alloc, body: json({ starts_at: '2030-02-01T12:00:00Z', ends_at: '2030-02-01T14:00:00+02:00' }), status: 400, message: /starts_at must be before ends_at/ },
  { name: 'missing ends_at', method: 'POST', url: alloc, body: json({ starts_at: '2030-02-01T12:00:00Z' }), status: 400, message: /body\/ends_at is required/ },
  { name: 'unknown property', method: 'POST', url: alloc, body: json({ starts_at: null, ends_at: null, cancelled_at: '2030-01-01T00:00:00Z' }), status: 400, message: /body\/cancelled_at is not an accepted property/ },
  { name: 'creating an allocation already cancelled', method: 'POST', url: alloc, body: json({ starts_at: null, ends_at: null, status: 'cancelled' }), status: 400, message: /body\/status must be one of confirmed, held/ },
  { name: 'owner smuggled into a site', method: 'POST', url: '/api/sites', body: json({ name: 'x', id: 1 }), status: 400, message: /body\/id is not an accepted property/ },
  { name: 'wrong kind', method: 'POST', url: alloc, body: json({ starts_at: null, ends_at: null, kind: 'party' }), status: 400, message: /body\/kind must be one of booking, maintenance/ },
  { name: 'data that is not an object', method: 'POST', url: alloc, body: json({ starts_at: null, ends_at: null, data: 'text' }), status: 400, message: /body\/data/ },
  { name: 'a number where a name belongs', method: 'POST', url: '/api/sites', body: json({ name: 42 }), status: 400, message: /body\/name must be string/ },
  { name: 'empty name', method: 'POST', url: '/api/sites', body: json({ name: '' }), status: 400, message: /body\/name/ },
  { name: 'blank name', method: 'POST', url: '/api/cars', body: json({ name: '   ' }), status: 400, message: /body\/name/ },
  { name: 'name too long', method: 'POST', url: '/api/sites', body: json({ name: 'x'.repeat(201) }), status: 400, message: /body\/name/ },
  { name: 'NUL byte in text', method: 'POST', url: '/api/sites', body: json({ name: 'nul\u0000byte' }), status: 400 },
  { name: 'NUL byte inside data', method: 'POST', url: alloc, body: json({ starts_at: null, ends_at: null, data: { a: 'nul\u0000' } }), status: 400 },
  { name: 'invalid JSON', method: 'POST', url: '/api/sites', body: '{"name": ', status: 400 },
  { name: 'JSON null body', method: 'POST', url: '/api/sites', body: 'null', status: 400 },
  { name: 'JSON array body', method: 'POST', url: '/api/sites', body: '[]', status: 400 },
  { name: 'empty body with a JSON content type', method: 'POST', url: '/api/sites', body: '', status: 400 },
  { name: 'prototype poisoning', method: 'POST', url: '/api/sites', body: '{"name": "p", "__proto__": {"admin": true}}', status: 400 },
  { name: 'text/plain body', method: 'POST', url: '/api/sites', body: 'name=x', contentType: 'text/plain', status: 415 },
  { name: 'form body', method: 'POST', url: '/api/sites', body: 'name=x', contentType: 'application/x-www-form-urlencoded', status: 415 },
  { name: 'body over the limit', method: 'POST', url: '/api/sites', body: json({ name: 'big', contact: 'x'.repeat(1_100_000) }), status: 413 },
  { name: 'limit out of range', method: 'GET', url: '/api/allocations?limit=100000', status: 400, message: /querystring\/limit/ },
  { name: 'negative offset', method: 'GET', url: '/api/resources?offset=-5', status: 400, message: /querystring\/offset/ },
  { name: 'unknown query parameter', method: 'GET', url: '/api/resources?site=1', status: 400, message: /querystring\/site is not an accepted property/ },
  { name: 'SQL in a search string', method: 'GET', url: `/api/sites?q=${encodeURIComponent("x' OR '1'='1")}`, status: 200 },
  { name: 'naive time in a query', method: 'GET', url: '/api/allocations?from=2030-01-01T00:00:00', status: 400, message: /querystring\/from/ },
  { name: 'inverted query window', method: 'GET', url: '/api/allocations?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z', status: 400, message: /from must be before to/ },
  { name: 'patch of a site to a null name', method: 'PATCH', url: `/api/sites/${site.id}`, body: json({ name: null }), status: 400, message: /body\/name/ },
  { name: 'move into an empty range', method: 'PATCH', url: `/api/allocations/${booking.id}`, body: json({ ends_at: '2030-01-01T10:00:00Z' }), status: 400, message: /starts_at must be before ends_at/ },
  { name: 'method the route does not have', method: 'PUT', url: '/api/allocations', body: '{}', status: 404 },
  { name: 'route that does not exist', method: 'GET', url: '/api/boats', status: 404 }
]

t.test('bad input gets a 4xx JSON error naming the problem, and changes nothing stored', async (t) => {
  const before = await snapshot()
  for (const c of cases) {
    const res = await app.inject({
      method: c.method,
      url: c.url,
      headers: { ...bearer(app.adminToken), ...(c.body === undefined ? {} : { 'content-type': c.contentType ?? 'application/json' }) },
      ...(c.body === undefined ? {} : { payload: c.body })
    })
    t.equal(res.statusCode, c.status, `${c.name}: status`)
    t.match(res.headers['content-type'], /^application\/json/, `${c.name}: JSON`)
    if (c.status >= 400) {
      const body = res.json()
      t.same(Object.keys(body).sort(), ['code', 'error', 'hint', 'message', 'statusCode'], `${c.name}: error body shape`)
      t.equal(body.statusCode, c.status, `${c.name}: statusCode field`)
      t.notMatch(body.message, /\n\s+at /, `${c.name}: no stack trace`)
      if (c.message) t.match(body.message, c.message, `${c.name}: message`)
    }
  }
  t.equal(await snapshot(), before, 'nothing stored was lost or changed')
})
