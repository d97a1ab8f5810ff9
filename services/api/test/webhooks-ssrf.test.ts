import t from 'tap'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { buildTestApp, call } from './helpers.js'
import { eventually, receiver } from './webhook-receiver.js'

/**
 * No server-side request forgery. This app allows no range (WEBHOOK_ALLOWED_CIDRS empty,
 * the default) and resolves names through a stub the test controls, so that a name can
 * point anywhere, and change, without DNS. The only traffic is to 127.0.0.1, where a
 * receiver counts connections: a refused address is refused before any connection.
 */
const names = new Map<string, string[]>()
const lookups: string[] = []
const resolve = async (hostname: string) => {
  lookups.push(hostname)
  const addresses = names.get(hostname)
  if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
  return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
}

// The test app gives the database and its admin; the app under test is built on it with the stub.
const base = await buildTestApp(t)
await base.close()
const app = await buildApp({ ...loadConfig({ LOG_LEVEL: 'silent', MAX_EVENT_LOOP_DELAY_MS: '0', WEBHOOK_RETRY_SCHEDULE: '0,0.2,0.2' }), databaseUrl: base.databaseUrl }, { resolve })
t.teardown(() => app.close())
const as = { token: base.adminToken }

t.test('at creation: a host that is or resolves to an address inside is refused, 400 naming url, and nothing is connected to', async (t) => {
  const hook = await receiver(t)
  names.set('metadata.test', ['169.254.169.254'])
  names.set('mixed.test', ['203.0.113.5', '10.1.2.3'])
  names.set('inside.test', ['fd12:3456::1'])
  for (const [url, reason] of [
    ['http://169.254.169.254/latest/meta-data/', '169.254.169.254 is a link-local address'],
    ['http://10.0.0.1/hook', '10.0.0.1 is a private address'],
    [`http://[::ffff:127.0.0.1]:${hook.port}/hook`, 'is a loopback address'],
    [`http://127.0.0.1:${hook.port}/hook`, '127.0.0.1 is a loopback address'],
    ['http://[::1]/', '::1 is a loopback address'],
    ['http://0.0.0.0/', '0.0.0.0 is an unspecified address'],
    ['http://224.0.0.251/', 'is a multicast address'],
    ['http://[fe80::1]/', 'is a link-local address'],
    ['http://[64:ff9b::a00:1]/', 'carries 10.0.0.1, which is a private address'],
    ['http://metadata.test/', 'metadata.test resolves to 169.254.169.254 is a link-local address'],
    ['https://mixed.test/', 'mixed.test resolves to 10.1.2.3 is a private address'],
    ['https://inside.test/', 'is a private address'],
    ['http://nowhere.test/', 'nowhere.test does not resolve']
  ] as const) {
    const res = await call(app, 'POST', '/api/webhooks', { url }, as)
    t.equal(res.statusCode, 400, url)
    t.match(res.json(), { code: 'URL_NOT_ALLOWED', message: new RegExp(`^body/url is not allowed: .*${reason.replace(/[.[\]]/g, '\\$&')}`) }, `${url}: ${reason}`)
  }
  t.equal(hook.connections, 0, 'no connection to the receiver behind the loopback addresses')
  t.equal((await call(app, 'GET', '/api/webhooks', undefined, as)).json().length, 0, 'nothing was registered')
  names.set('public.test', ['203.0.113.9'])
  const fine = await call(app, 'POST', '/api/webhooks', { url: 'https://public.test/hook', types: ['resource.deleted'] }, as)
  t.equal(fine.statusCode, 201, 'a public address is fine')
  // Gone before anything could be sent there: this test sends nothing off loopback.
  t.equal((await call(app, 'DELETE', `/api/webhooks/${fine.json().id}`, undefined, as)).statusCode, 204)
})

t.test('at every connection: a name that resolves elsewhere later (DNS rebinding) is refused before any connection', async (t) => {
  const hook = await receiver(t)
  names.set('rebind.test', ['203.0.113.7'])
  const created = await call(app, 'POST', '/api/webhooks', { url: `http://rebind.test:${hook.port}/hook`, types: ['allocation.created'] }, as)
  t.equal(created.statusCode, 201, 'public when registered')
  const id = created.json().id
  // Before any event is owed to it, the name is pointed inside.
  names.set('rebind.test', ['127.0.0.1'])
  const before = lookups.length
  const car = (await call(app, 'POST', '/api/resources', { type: 'car', name: 'ssrf-car' }, as)).json()
  t.equal((await call(app, 'POST', `/api/resources/${car.id}/allocations`, { starts_at: '2035-01-01T09:00:00Z', ends_at: '2035-01-01T10:00:00Z' }, as)).statusCode, 201)
  t.ok(await eventually(async () => !(await call(app, 'GET', `/api/webhooks/${id}`, undefined, as)).json().enabled), 'every attempt refused: disabled')
  t.ok(lookups.length - before >= 3, 'the name was looked up again for each attempt')
  t.equal(hook.connections, 0, 'and the receiver it now pointed to was never connected to')
  const attempts = (await call(app, 'GET', `/api/webhooks/${id}/deliveries`, undefined, as)).json()
  t.equal(attempts.length, 3)
  t.ok(attempts.every((a: { response_status: number | null, error: string }) => a.response_status === null && /^refused: rebind\.test resolves to 127\.0\.0\.1 is a loopback address/.test(a.error)),
    'each attempt: refused, naming the address')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /^invsys_webhook_deliveries_total\{outcome="refused"\} 3$/m, 'counted as refused')

  // Pointed inside before it is enabled again: nothing is ever sent outside loopback.
  for (const inside of ['169.254.169.254', '10.0.0.1', '::ffff:127.0.0.1']) {
    names.set('rebind.test', [inside])
    t.equal((await call(app, 'PATCH', `/api/webhooks/${id}`, { enabled: true }, as)).statusCode, 200)
    t.ok(await eventually(async () => (await call(app, 'GET', `/api/webhooks/${id}/deliveries?limit=1`, undefined, as)).json()[0].error.includes(inside)), `refused at ${inside}`)
  }
  t.equal(hook.connections, 0)
})
