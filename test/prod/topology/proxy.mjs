// Through nginx: health, security headers, the docs, the API's own errors,
// CRUD, a booking and its conflict, request ids across both logs, both
// replicas used, no token in any log.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { brief, isJsonError, logEntries, waitFor } from '../lib/http.mjs'
import { sleep, tail } from '../lib/procs.mjs'

export default async function proxy (t, topo) {
  const via = (...a) => topo.via(...a)
  {
    const r = await via('GET', '/health')
    t.ok(r.status === 200 && r.json?.status === 'ok', 'GET /health through nginx: 200 {"status":"ok"}', brief(r))
    const h = r.headers
    t.ok(h['x-content-type-options'] === 'nosniff' && h['x-frame-options'] === 'DENY' && h['referrer-policy'] === 'no-referrer' &&
      /default-src 'none'/.test(h['content-security-policy'] ?? ''),
    'security headers (nosniff, X-Frame-Options, Referrer-Policy, CSP)', { headers: h })
    t.equal(h.server, 'nginx', 'nginx does not reveal its version')
    t.match(h['x-request-id'] ?? '', /^[0-9a-f]{32}$/, 'nginx gives a request without X-Request-Id one of its own')
  }
  {
    const r = await via('GET', '/docs/json')
    t.ok(r.status === 200 && typeof r.json?.openapi === 'string', 'GET /docs/json through nginx: the OpenAPI document', brief(r))
    const d = await via('GET', '/docs')
    t.ok(d.status >= 200 && d.status < 400, `GET /docs through nginx: ${d.status}`, brief(d))
    const u = await via('GET', '/api/no-such-thing')
    t.ok(isJsonError(u, 404), 'unknown route: JSON 404 from the API', brief(u))
  }

  // Without a token, through nginx: the API's JSON 401 and its challenge, untouched.
  {
    const r = await via('GET', '/api/sites', { headers: { authorization: '' } })
    t.ok(isJsonError(r, 401) && /^Bearer/.test(r.headers['www-authenticate'] ?? ''),
      'no token through nginx: JSON 401 with WWW-Authenticate: Bearer', brief(r))
  }

  // CRUD through nginx.
  {
    const name = `prodtest site ${randomBytes(4).toString('hex')}`
    const c = await via('POST', '/api/sites', { body: { name } })
    const siteId = c.json?.id
    t.ok(c.status === 201 && c.json?.name === name && siteId !== undefined && Boolean(c.headers.location),
      'POST /api/sites through nginx: 201 with Location', brief(c))
    const g = await via('GET', `/api/sites/${siteId}`)
    t.ok(g.status === 200 && g.json?.id === siteId, 'GET /api/sites/:id: 200', brief(g))
    const p = await via('PATCH', `/api/sites/${siteId}`, { body: { contact: 'ops@example.test' } })
    t.ok(p.status === 200 && p.json?.contact === 'ops@example.test', 'PATCH /api/sites/:id: 200, changed', brief(p))
    const d = await via('DELETE', `/api/sites/${siteId}`)
    t.equal(d.status, 204, 'DELETE /api/sites/:id: 204', brief(d))
    const g2 = await via('GET', `/api/sites/${siteId}`)
    t.ok(isJsonError(g2, 404), 'GET of the deleted site: JSON 404', brief(g2))
  }

  // Booking and its conflict.
  {
    const car = await via('POST', '/api/cars', { body: { name: `prodtest-car-${randomBytes(4).toString('hex')}` } })
    topo.carId = car.json?.id
    t.ok(car.status === 201 && topo.carId, 'POST /api/cars: 201', brief(car))
    const slot = { starts_at: '2030-01-01T10:00:00Z', ends_at: '2030-01-01T12:00:00Z' }
    const a1 = await via('POST', `/api/resources/${topo.carId}/allocations`, { body: slot })
    t.equal(a1.status, 201, 'POST /api/resources/:id/allocations: 201', brief(a1))
    const a2 = await via('POST', `/api/resources/${topo.carId}/allocations`, {
      body: { starts_at: '2030-01-01T11:00:00Z', ends_at: '2030-01-01T13:00:00Z' },
    })
    t.ok(isJsonError(a2, 409) && a2.json.code === 'ALLOCATION_CONFLICT', 'an overlapping booking: 409 ALLOCATION_CONFLICT', brief(a2))
  }

  // Request ids, load balancing, the client address.
  const { apiA, apiB } = topo
  const rid = `prodtest-${randomBytes(8).toString('hex')}`
  const r = await via('GET', '/api/resource-types', { headers: { 'x-request-id': rid, 'x-forwarded-for': '203.0.113.9' } })
  t.ok(r.status === 200 && r.headers['x-request-id'] === rid, "the client's X-Request-Id comes back in the response", brief(r))
  const bad = await via('GET', '/api/resource-types', { headers: { 'x-request-id': 'two words' } })
  t.match(bad.headers['x-request-id'] ?? '', /^[0-9a-f]{32}$/, 'a malformed X-Request-Id is replaced by one from nginx')
  const gen = await via('GET', '/api/resource-types')
  const genId = gen.headers['x-request-id']
  const inLog = (id) => [apiA, apiB].flatMap((a) => logEntries(a.log)).filter((e) => e.reqId === id)
  const entries = await waitFor('the request id in the API log', () => (inLog(rid).length ? inLog(rid) : null), 5000).catch(() => [])
  t.ok(entries.length > 0, `the client's X-Request-Id is the reqId in the API's log (${entries.length} lines)`,
    { missing: rid, log: tail(apiA.log, 5) })
  const asText = JSON.stringify(entries)
  t.ok(entries.length > 0 && !asText.includes('203.0.113.9'), 'a client-supplied X-Forwarded-For does not reach the API log (nginx replaces it)',
    { entries })
  if (asText.includes('remoteAddress')) t.ok(asText.includes('127.0.0.1'), 'the API logs the client address nginx saw', { entries })
  const genEntries = await waitFor('the generated id', () => (inLog(genId).length ? inLog(genId) : null), 5000).catch(() => [])
  t.ok(genEntries.length > 0, "nginx's generated request id is the reqId in the API's log", { id: genId })

  // Both replicas get traffic.
  const ridsLb = []
  for (let i = 0; i < 6; i++) {
    const id = `prodtest-lb-${i}-${randomBytes(4).toString('hex')}`
    ridsLb.push(id)
    await via('GET', '/api/resource-types', { headers: { 'x-request-id': id } })
  }
  await sleep(300)
  const hits = (rec) => logEntries(rec.log).filter((e) => ridsLb.includes(e.reqId)).length
  t.ok(hits(apiA) > 0 && hits(apiB) > 0, `nginx spreads requests over both replicas (a: ${hits(apiA)}, b: ${hits(apiB)} log lines)`)

  // A calendar feed: public through nginx by its secret address, which no log shows.
  const feed = await via('POST', '/api/feeds', { body: { label: 'prod test', type: 'car' } })
  t.equal(feed.status, 201, 'a calendar feed is created through nginx', brief(feed))
  const feedUrl = feed.json?.url ?? '/feeds/none.ics'
  const ics = await via('GET', feedUrl, { headers: { authorization: '' } })
  t.ok(ics.status === 200 && /^text\/calendar/.test(ics.headers['content-type'] ?? ''), 'GET /feeds/<secret>.ics through nginx without a token: the calendar', brief(ics))
  await sleep(300)
  const feedSecret = feedUrl.slice('/feeds/'.length, -'.ics'.length)
  const access = logEntries(join(topo.ngxDir, 'access.log'))
  t.ok(access.some((e) => e.uri === '/feeds/[redacted].ics'), "nginx's access log shows the feed address as /feeds/[redacted].ics")

  // Many authenticated requests so far: the token and the feed secret are in none of the logs.
  const secret = topo.adminToken.slice('invsys_'.length)
  for (const [what, value] of [['the bearer token', secret], ['the feed secret', feedSecret]]) {
    const leaks = [apiA.log, apiB.log, join(topo.ngxDir, 'access.log'), join(topo.ngxDir, 'error.log')]
      .filter((file) => readFileSync(file, 'utf8').includes(value))
    t.same(leaks, [], `${what} appears in no API log and in no nginx log`)
  }

  t.ok(access.some((e) => e.request_id === rid && /^127\.0\.0\.1:\d+$/.test(e.upstream)),
    "nginx's JSON access log has the request id and the upstream", { last: access.slice(-2) })
}
