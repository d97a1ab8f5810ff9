// nginx's limits: body size, gzip of a large list, the rate limit; and the
// errors nginx answers itself.
import { Buffer } from 'node:buffer'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { curl } from '../lib/curl.mjs'
import { brief, isJsonError, logEntries, rawRequest } from '../lib/http.mjs'
import { sleep } from '../lib/procs.mjs'

export default async function limits (t, topo) {
  const via = (...a) => topo.via(...a)

  // 413 from nginx: a 2 MB body never reaches the API.
  {
    const big = Buffer.alloc(2 * 1024 * 1024, 'a')
    const r = await via('POST', '/api/sites', {
      body: Buffer.concat([Buffer.from('{"name":"'), big, Buffer.from('"}')]),
      headers: { 'content-type': 'application/json' }
    })
    t.ok(isJsonError(r, 413), 'a 2 MB body: JSON 413', brief(r))
  }

  // A large list, gzipped. The 300 sites go straight to one replica (not
  // through nginx, whose rate limit is the next probe's business).
  {
    const total = 300
    let made = 0
    const queue = Array.from({ length: total }, (_, i) => i)
    await Promise.all(Array.from({ length: 10 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const r = await topo.direct(topo.ports.a, 'POST', '/api/sites', { body: { name: `prodtest bulk ${i} ${'x'.repeat(40)}` } })
        if (r.status === 201) made++
      }
    }))
    t.equal(made, total, `${total} sites created directly on one replica`)
    const r = await via('GET', '/api/sites?limit=1000', { headers: { 'accept-encoding': 'gzip' } })
    t.ok(r.status === 200 && r.headers['content-encoding'] === 'gzip' && Array.isArray(r.json) && r.json.length >= total,
      `GET /api/sites?limit=1000 with Accept-Encoding: gzip: gzipped (${r.raw.length} bytes for ${r.json?.length} sites)`,
      { status: r.status, headers: r.headers, length: r.json?.length })
    t.match(r.headers.vary ?? '', /accept-encoding/i, 'Vary: Accept-Encoding')
    const plain = await via('GET', '/api/sites?limit=1000')
    t.ok(plain.status === 200 && !plain.headers['content-encoding'] && Array.isArray(plain.json), 'without Accept-Encoding: plain JSON',
      { headers: plain.headers })
  }

  // Rate limit: a burst over the rate gets JSON 429.
  {
    await sleep(2500) // let the bucket refill
    const burst = await Promise.all(Array.from({ length: 120 }, () => via('GET', '/api/resource-types', { timeoutMs: 15_000 })))
    const c200 = burst.filter((r) => r.status === 200).length
    const limited = burst.filter((r) => r.status === 429)
    t.ok(c200 > 0 && limited.length > 0 && c200 + limited.length === burst.length,
      `a burst of ${burst.length} requests: ${c200} x 200, ${limited.length} x 429`, { statuses: burst.map((r) => r.status).join(' ') })
    t.ok(limited.length > 0 && limited.every((r) => isJsonError(r, 429)), '429 answers are JSON in the API error shape', brief(limited[0]))
    t.ok(limited.length > 0 && limited[0].headers['retry-after'] === '1', '429 carries Retry-After', { headers: limited[0]?.headers })
    const h = await via('GET', '/health')
    t.equal(h.status, 200, '/health is not rate limited', brief(h))
    await sleep(2500)
  }
}

// nginx's own errors, as JSON: a long URI, an oversized header, a malformed
// request; /metrics is never served through nginx.
export async function ownErrors (t, topo) {
  const port = topo.ports.nginx
  {
    const r = curl(port, `/api/sites?name=${'a'.repeat(20 * 1024)}`, ['-H', `Authorization: Bearer ${topo.adminToken}`])
    t.ok(isJsonError(r, 414), 'a 20 kB URI (curl): JSON 414 from nginx', brief(r))
    t.match(r.headers['x-request-id'] ?? '', /^[0-9a-f]{32}$/, '... with the security headers and a request id', { headers: r.headers })
  }
  {
    const r = curl(port, '/api/sites', ['-H', `X-Big: ${'b'.repeat(20 * 1024)}`])
    t.ok(isJsonError(r, 431), 'a 20 kB request header (curl): JSON 431 from nginx', brief(r))
  }
  {
    const r = await rawRequest(port, 'GET /health HTTP/1.1\r\nHost: a b\r\n\r\n')
    t.ok(isJsonError(r, 400), 'a malformed request (a Host with a space): JSON 400 from nginx', brief(r))
  }
  {
    const rid = `prodtest-metrics-${randomBytes(4).toString('hex')}`
    const r = await topo.via('GET', '/metrics', { headers: { 'x-request-id': rid } })
    const sub = await topo.via('GET', '/metrics/anything')
    const access = logEntries(join(topo.ngxDir, 'access.log')).find((e) => e.request_id === rid)
    t.ok(isJsonError(r, 404) && isJsonError(sub, 404) && access && access.upstream === '',
      'GET /metrics (and /metrics/…) through nginx: JSON 404 from nginx itself, never passed to the API', { r: brief(r), sub: brief(sub), access })
  }
}
