// HTTPS, as enabled by conf.d/tls.conf with a certificate in tls/ (here a
// self-signed one made with openssl): the API over TLS with HSTS, port 80
// redirecting to HTTPS, no HSTS on the plain port.
import { brief, isJsonError, request } from '../lib/http.mjs'

export default async function tls (t, topo) {
  const tlsOpts = { ca: topo.tls.ca, servername: 'localhost' }
  const https = (method, path, opts = {}) => request(topo.ports.https, method, path, { token: topo.adminToken, tls: tlsOpts, ...opts })
  {
    const r = await https('GET', '/api/sites?limit=2', { headers: { host: 'localhost' } })
    t.ok(r.status === 200 && Array.isArray(r.json), 'HTTPS (the mounted certificate, verified): GET /api/sites through nginx: 200', brief(r))
    t.match(r.headers['strict-transport-security'] ?? '', /^max-age=\d{7,}/, 'HTTPS answers carry Strict-Transport-Security',
      { headers: r.headers })
    t.ok(r.headers['x-content-type-options'] === 'nosniff' && /^[0-9a-f]{32}$/.test(r.headers['x-request-id'] ?? ''),
      '... and the same security headers and request id as the plain port', { headers: r.headers })
    const m = await https('GET', '/metrics')
    t.ok(isJsonError(m, 404) && Boolean(m.headers['strict-transport-security']), 'HTTPS: /metrics is a JSON 404, with HSTS (error pages too)',
      brief(m))
  }
  {
    const g = await request(topo.ports.http, 'GET', '/api/sites?limit=1', { headers: { host: 'localhost' } })
    t.ok(g.status === 308 && g.headers.location === 'https://localhost/api/sites?limit=1',
      'HTTP on port 80: 308 to the same URL on https://', { status: g.status, location: g.headers.location })
    const p = await request(topo.ports.http, 'POST', '/api/sites', { headers: { host: 'localhost' }, body: { name: 'x' } })
    t.ok(p.status === 308 && p.headers.location === 'https://localhost/api/sites', '... for a POST too (308 keeps the method)',
      { status: p.status, location: p.headers.location })
  }
  {
    const plain = await topo.via('GET', '/health')
    t.ok(plain.status === 200 && plain.headers['strict-transport-security'] === undefined, 'the plain port (1337) sends no HSTS',
      { headers: plain.headers })
    const nh = await topo.via('GET', '/nginx-health')
    t.ok(nh.status === 200 && nh.json?.status === 'ok', "GET /nginx-health on the plain port: nginx's own liveness (the container's healthcheck)",
      brief(nh))
  }
}
