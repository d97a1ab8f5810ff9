import t from 'tap'
import { buildTestApp, call, createResource, createSite } from './helpers.js'

const app = await buildTestApp(t)

const muffinLane = {
  name: 'Site 1',
  contact: 'John Smith',
  address: '123 Muffin Lane',
  state_or_region: 'MI',
  country: 'USA',
  postcode_or_zip: '48103'
}

t.test('POST creates a site with a Location, and GET reads it back', async (t) => {
  const res = await call(app, 'POST', '/api/sites', muffinLane)
  t.equal(res.statusCode, 201)
  const site = res.json()
  t.match(site, { ...muffinLane, id: Number })
  t.equal(res.headers.location, `/api/sites/${site.id}`)
  t.match(site.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
  const got = await call(app, 'GET', `/api/sites/${site.id}`)
  t.equal(got.statusCode, 200)
  t.same(got.json(), site)
})

t.test('optional fields default to null; unknown properties are refused', async (t) => {
  const res = await call(app, 'POST', '/api/sites', { name: 'Bare' })
  t.equal(res.statusCode, 201)
  t.equal(res.json().contact, null)
  const bad = await call(app, 'POST', '/api/sites', { name: 'Sneaky', id: 99, created_at: '2020-01-01T00:00:00Z' })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /body\/(id|created_at) is not an accepted property/)
})

t.test('GET /api/sites filters by case-insensitive substring, treating LIKE characters literally', async (t) => {
  await createSite(app, { name: 'Zeta 100% Depot' })
  await createSite(app, { name: 'Zeta North' })
  const res = await call(app, 'GET', '/api/sites?q=ZETA')
  t.same(res.json().map((s: { name: string }) => s.name).sort(), ['Zeta 100% Depot', 'Zeta North'])
  t.same((await call(app, 'GET', '/api/sites/?q=ZETA')).json().length, 2, 'a trailing slash names the collection too')
  const percent = await call(app, 'GET', '/api/sites?q=%25')
  t.same(percent.json().map((s: { name: string }) => s.name), ['Zeta 100% Depot'])
  const injection = await call(app, 'GET', `/api/sites?q=${encodeURIComponent("'; DROP TABLE site; --")}`)
  t.equal(injection.statusCode, 200)
  t.same(injection.json(), [])
  t.equal((await call(app, 'GET', '/api/sites?q=zeta')).json().length, 2, 'the table is still there')
})

t.test('pages are stable and linked with rel="next" while more may exist', async (t) => {
  for (let i = 0; i < 5; i++) await createSite(app, { name: `Paged ${i}` })
  const first = await call(app, 'GET', '/api/sites?q=Paged&limit=2')
  t.same(first.json().map((s: { name: string }) => s.name), ['Paged 0', 'Paged 1'])
  t.equal(first.headers.link, '</api/sites?q=Paged&limit=2&offset=2>; rel="next"')
  const last = await call(app, 'GET', '/api/sites?q=Paged&limit=2&offset=4')
  t.same(last.json().map((s: { name: string }) => s.name), ['Paged 4'])
  t.notOk(last.headers.link, 'no next link on the last page')
  const exact = await call(app, 'GET', '/api/sites?q=Paged&limit=5')
  t.notOk(exact.headers.link, 'a page that ends exactly at the end has no next link')
  for (const bad of ['limit=0', 'limit=1001', 'limit=abc', 'offset=-1']) {
    const res = await call(app, 'GET', `/api/sites?${bad}`)
    t.equal(res.statusCode, 400, bad)
    t.match(res.json().message, /querystring\/(limit|offset)/)
  }
})

t.test('PATCH changes only the given fields; null clears an optional one', async (t) => {
  const site = await createSite(app, { contact: 'A', country: 'France' })
  const res = await call(app, 'PATCH', `/api/sites/${site.id}`, { contact: null, address: '1 Rue de Rivoli' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { contact: null, address: '1 Rue de Rivoli', country: 'France' })
  t.equal((await call(app, 'PATCH', `/api/sites/${site.id}`, { name: null })).statusCode, 400, 'name cannot be cleared')
  t.equal((await call(app, 'PATCH', `/api/sites/${site.id}`, { name: '   ' })).statusCode, 400, 'nor blanked')
  t.equal((await call(app, 'PATCH', '/api/sites/999999', { contact: 'x' })).statusCode, 404)
})

t.test('PUT creates (201) then replaces (200), and later POSTs never collide with its id', async (t) => {
  const created = await call(app, 'PUT', '/api/sites/500', { name: 'Chosen', contact: 'C' })
  t.equal(created.statusCode, 201)
  t.equal(created.headers.location, '/api/sites/500')
  t.equal(created.json().id, 500)
  const replaced = await call(app, 'PUT', '/api/sites/500', { name: 'Chosen again' })
  t.equal(replaced.statusCode, 200)
  t.match(replaced.json(), { id: 500, name: 'Chosen again', contact: null }, 'a replace is whole: omitted fields become null')
  const next = await call(app, 'POST', '/api/sites', { name: 'After the PUT' })
  t.equal(next.statusCode, 201)
  t.ok(next.json().id > 500, 'generated ids move past the chosen one')
  // An id chosen just above the sequence, then POSTs racing over it, still never fail.
  const ahead = next.json().id + 1
  t.equal((await call(app, 'PUT', `/api/sites/${ahead}`, { name: 'Just ahead' })).statusCode, 201)
  const posts = await Promise.all(Array.from({ length: 10 }, (_, i) => call(app, 'POST', '/api/sites', { name: `burst ${i}` })))
  t.same(posts.map((r) => r.statusCode), Array(10).fill(201))
  t.equal((await call(app, 'PUT', '/api/sites/0', { name: 'zero' })).statusCode, 400)
  t.equal((await call(app, 'PUT', '/api/sites/1.5', { name: 'half' })).statusCode, 400)
})

t.test('DELETE answers 204, then 404; 409 while resources are at the site, and nothing changes', async (t) => {
  const site = await createSite(app)
  const car = await createResource(app, 'car', { site_id: site.id })
  const refused = await call(app, 'DELETE', `/api/sites/${site.id}`)
  t.equal(refused.statusCode, 409)
  t.match(refused.json(), { code: 'IN_USE', message: /still has resources/ })
  t.equal((await call(app, 'GET', `/api/sites/${site.id}`)).statusCode, 200, 'the site is still there')
  t.equal((await call(app, 'PATCH', `/api/resources/${car.id}`, { site_id: null })).statusCode, 200)
  const deleted = await call(app, 'DELETE', `/api/sites/${site.id}`)
  t.equal(deleted.statusCode, 204)
  t.equal(deleted.body, '')
  t.equal((await call(app, 'DELETE', `/api/sites/${site.id}`)).statusCode, 404)
  t.equal((await call(app, 'GET', `/api/sites/${site.id}`)).statusCode, 404)
})
