import { spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { Webhook, WebhookVerificationError } from 'standardwebhooks'
import { buildApp } from '../src/app.js'
import { loadConfig, repoRoot } from '../src/config.js'
import { book, buildTestApp, call, createResource, fetchJson, freePort, listen, packageScratchDir, sleep, untapped } from './helpers.js'
import { eventually, receiver, type Received } from './webhook-receiver.js'

// Receivers listen on 127.0.0.1, which this app is told it may send to. Ten quick attempts:
// every retry rule is seen in seconds.
const SCHEDULE = '0,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2'
const env = { WEBHOOK_ALLOWED_CIDRS: '127.0.0.1/32', WEBHOOK_RETRY_SCHEDULE: SCHEDULE }
const app = await buildTestApp(t, { env })

interface Endpoint { id: string, secret: string, enabled: boolean, disabled_reason: string | null }

async function endpoint (url: string, fields: Record<string, unknown> = {}): Promise<Endpoint> {
  const res = await call(app, 'POST', '/api/webhooks', { url, ...fields })
  if (res.statusCode !== 201) throw new Error(res.body)
  return res.json()
}

let day = 0
/** A booking on a day of its own. */
const nextSlot = () => {
  day += 1
  const start = Date.UTC(2034, 0, 1) + day * 86_400_000
  return [new Date(start).toISOString(), new Date(start + 3600_000).toISOString()] as const
}

/** Each feed item of these events as GET /api/events sends it, by event id: the text of each item. */
async function feedItems (): Promise<Map<string, string>> {
  const items = new Map<string, string>()
  for (let after = 0; ;) {
    const res = await call(app, 'GET', `/api/events?after=${after}&limit=1000`)
    const page = res.json<Array<{ id: string, position: number }>>()
    for (const event of page) items.set(event.id, JSON.stringify(event))
    if (!res.headers.link) return items
    after = page.at(-1)!.position
  }
}

t.test('registering, reading, changing and deleting endpoints; what is refused', async (t) => {
  const created = await call(app, 'POST', '/api/webhooks', { url: 'http://127.0.0.1:9/a', types: ['allocation.created'], resource_type: 'car', description: 'dispatch' })
  t.equal(created.statusCode, 201)
  const body = created.json()
  t.match(body, { url: 'http://127.0.0.1:9/a', types: ['allocation.created'], resource_type: 'car', description: 'dispatch', enabled: true, disabled_reason: null, previous_secret_expires_at: null })
  t.match(body.secret, /^whsec_[A-Za-z0-9+/]{43}=$/, 'whsec_ and base64 of 32 bytes')
  t.equal(Buffer.from(body.secret.slice(6), 'base64').length, 32)
  t.equal(created.headers.location, `/api/webhooks/${body.id}`)
  t.equal(created.headers['cache-control'], 'no-store')
  const read = await call(app, 'GET', `/api/webhooks/${body.id}`)
  t.notOk('secret' in read.json(), 'the secret is never shown again')
  t.ok((await call(app, 'GET', '/api/webhooks')).json().some((w: Endpoint) => w.id === body.id && !('secret' in w)))
  const patched = await call(app, 'PATCH', `/api/webhooks/${body.id}`, { types: null, description: null, url: 'http://127.0.0.1:9/b' })
  t.match(patched.json(), { types: null, description: null, url: 'http://127.0.0.1:9/b' })
  const off = await call(app, 'PATCH', `/api/webhooks/${body.id}`, { enabled: false })
  t.match(off.json(), { enabled: false, disabled_reason: /disabled by account \d+ through the API/, disabled_at: /Z$/ })
  t.match((await call(app, 'PATCH', `/api/webhooks/${body.id}`, { enabled: true })).json(), { enabled: true, disabled_reason: null, disabled_at: null })
  t.equal((await call(app, 'POST', '/api/webhooks', { url: 'http://[::ffff:127.0.0.1]:9/' })).statusCode, 201, 'IPv4-mapped loopback is the loopback WEBHOOK_ALLOWED_CIDRS allows')

  for (const [bad, field] of [
    [{ url: 'ftp://127.0.0.1/' }, 'body/url must be an http:// or https:// URL'],
    [{ url: 'not a url' }, 'body/url'],
    [{ url: 'http://127.0.0.1:9/', types: [] }, 'body/types'],
    [{ url: 'http://127.0.0.1:9/', types: ['allocation.moved'] }, 'body/types'],
    [{ url: 'http://127.0.0.1:9/', resource_type: 'boat' }, 'body/resource_type'],
    [{ url: 'http://127.0.0.1:9/', secret: 'mine' }, 'body/secret is not an accepted property'],
    [{ url: 'http://user:pass@127.0.0.1:9/' }, 'body/url is not allowed'],
    [{ url: 'http://10.0.0.1/' }, 'body/url is not allowed: 10.0.0.1 is a private address']
  ] as const) {
    const res = await call(app, 'POST', '/api/webhooks', bad)
    t.equal(res.statusCode, 400, JSON.stringify(bad))
    t.match(res.json().message, field)
  }
  t.equal((await call(app, 'PATCH', `/api/webhooks/${body.id}`, { url: 'http://169.254.169.254/' })).statusCode, 400, 'a PATCHed url is checked too')
  const missing = '00000000-0000-4000-8000-000000000000'
  for (const [method, path] of [['GET', ''], ['PATCH', ''], ['DELETE', ''], ['POST', '/rotate-secret'], ['GET', '/deliveries']] as const) {
    t.equal((await call(app, method, `/api/webhooks/${missing}${path}`, method === 'PATCH' ? {} : undefined)).statusCode, 404, `${method} ${path}: 404`)
  }
  t.equal((await call(app, 'DELETE', `/api/webhooks/${body.id}`)).statusCode, 204)
  t.equal((await call(app, 'GET', `/api/webhooks/${body.id}`)).statusCode, 404)
})

t.test('Standard Webhooks v1: the standardwebhooks package verifies each delivery; a tampered body, another secret or a stale timestamp fail', async (t) => {
  const hook = await receiver(t)
  const target = await endpoint(hook.url(), { types: ['allocation.created'] })
  t.teardown(() => call(app, 'DELETE', `/api/webhooks/${target.id}`))
  const car = await createResource(app, 'car')
  const booked = (await book(app, car.id, ...nextSlot())).json()
  t.ok(await eventually(() => hook.received.length > 0), 'delivered')
  const [delivery] = hook.received as [Received]
  const verifier = new Webhook(target.secret)
  const payload = verifier.verify(delivery.body, delivery.headers) as { id: string, type: string, data: { id: string } }
  t.match(payload, { type: 'allocation.created', data: { id: booked.id } }, 'verified, and the body is the event')
  t.equal(delivery.headers['webhook-id'], payload.id, 'webhook-id is the event id')
  t.match(delivery.headers['webhook-timestamp'], /^\d{10}$/)
  t.ok(Math.abs(Number(delivery.headers['webhook-timestamp']) - delivery.at / 1000) < 60, 'webhook-timestamp: Unix seconds of the attempt')
  t.match(delivery.headers['webhook-signature'], /^v1,[A-Za-z0-9+/]+=*$/, 'one signature')
  t.match(delivery.headers['content-type'], /^application\/json/)
  t.equal(delivery.body, (await feedItems()).get(payload.id), 'the body is byte for byte the feed\'s item')

  t.throws(() => verifier.verify(delivery.body.replace(booked.id, car.id), delivery.headers), WebhookVerificationError, 'a tampered body fails')
  t.throws(() => new Webhook(`whsec_${Buffer.alloc(32, 7).toString('base64')}`).verify(delivery.body, delivery.headers), WebhookVerificationError, 'another secret fails')
  const realNow = Date.now
  Date.now = () => realNow() + 10 * 60_000
  try {
    t.throws(() => verifier.verify(delivery.body, delivery.headers), /timestamp too old/, 'received ten minutes late: the timestamp is stale')
  } finally {
    Date.now = realNow
  }
})

t.test('rotating the secret: for a day, each delivery carries two signatures, each valid with its secret', async (t) => {
  const hook = await receiver(t)
  const target = await endpoint(hook.url(), { types: ['allocation.created'] })
  t.teardown(() => call(app, 'DELETE', `/api/webhooks/${target.id}`))
  const rotated = await call(app, 'POST', `/api/webhooks/${target.id}/rotate-secret`)
  t.equal(rotated.statusCode, 200)
  t.equal(rotated.headers['cache-control'], 'no-store')
  const { secret, previous_secret_expires_at: until } = rotated.json()
  t.not(secret, target.secret)
  const day = Date.parse(until) - Date.now()
  t.ok(day > 23.9 * 3600_000 && day <= 24 * 3600_000, 'the old secret signs for 24 hours')
  await book(app, (await createResource(app, 'car')).id, ...nextSlot())
  t.ok(await eventually(() => hook.received.length > 0))
  const [delivery] = hook.received as [Received]
  t.equal(delivery.headers['webhook-signature']!.split(' ').length, 2, 'two signatures, space-separated')
  t.ok(new Webhook(secret).verify(delivery.body, delivery.headers), 'valid with the new secret')
  t.ok(new Webhook(target.secret).verify(delivery.body, delivery.headers), 'and with the old one')
})

t.test('failures: retried on the schedule; every attempt failed disables the endpoint with the reason; enabled again, it resumes where it stopped', async (t) => {
  const hook = await receiver(t)
  hook.answer = () => ({ status: 500 })
  const target = await endpoint(hook.url(), { types: ['allocation.created'] })
  t.teardown(() => call(app, 'DELETE', `/api/webhooks/${target.id}`))
  const car = await createResource(app, 'car')
  const first = (await book(app, car.id, ...nextSlot())).json()
  t.ok(await eventually(async () => !(await call(app, 'GET', `/api/webhooks/${target.id}`)).json().enabled), 'disabled in the end')
  t.equal(hook.received.length, 10, 'the ten attempts of the schedule')
  const gaps = hook.received.slice(1).map((r, i) => r.at - hook.received[i]!.at)
  t.ok(gaps.every((gap) => gap >= 170 && gap < 1000), `each retry 0.2 s (±10%) after the failure: ${gaps.join(', ')} ms`)
  const stopped = (await call(app, 'GET', `/api/webhooks/${target.id}`)).json()
  t.match(stopped, { enabled: false, disabled_reason: /failed all 10 attempts of the retry schedule.*answered 500/, disabled_at: /Z$/ })
  const attempts = (await call(app, 'GET', `/api/webhooks/${target.id}/deliveries`)).json()
  t.equal(attempts.length, 10)
  t.match(attempts[0], { type: 'allocation.created', response_status: 500, error: 'answered 500', next_attempt_at: null }, 'newest first: the last had no next attempt')
  t.ok(attempts.slice(1).every((a: { next_attempt_at: string | null }) => a.next_attempt_at !== null), 'the others each said when the next would be')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.ok(Number(/^invsys_webhook_deliveries_total\{outcome="failed"\} (\d+)$/m.exec(metrics)?.[1]) >= 10, 'counted as failed')
  const second = (await book(app, car.id, ...nextSlot())).json()
  await sleep(1500)
  t.equal(hook.received.length, 10, 'nothing is sent while disabled')
  const behind = Number(new RegExp(`^invsys_webhook_oldest_undelivered_seconds\\{endpoint="${target.id}"\\} ([\\d.]+)$`, 'm').exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1])
  t.ok(behind > 1, `/metrics shows how long its oldest owed event has waited (${behind} s)`)

  hook.answer = () => ({ status: 200 })
  t.match((await call(app, 'PATCH', `/api/webhooks/${target.id}`, { enabled: true })).json(), { enabled: true, disabled_reason: null })
  t.ok(await eventually(() => hook.received.filter((r) => r.status === 200).length === 2), 'both delivered once it is back')
  const delivered = hook.received.filter((r) => r.status === 200).map((r) => JSON.parse(r.body).data.id)
  t.same(delivered, [first.id, second.id], 'the stuck one first, then the one that came while it was disabled')
})

t.test('Retry-After on 429 and 503 is honoured; 410 disables at once; a redirect is a failure, never followed', async (t) => {
  const hook = await receiver(t)
  const elsewhere = await receiver(t)
  type Reply = () => { status: number, headers?: Record<string, string> }
  const answers: Record<string, Reply[]> = {
    '/busy': [() => ({ status: 429, headers: { 'retry-after': '2' } }), () => ({ status: 503, headers: { 'retry-after': new Date(Date.now() + 4000).toUTCString() } }), () => ({ status: 200 })],
    '/gone': [() => ({ status: 410 })],
    '/moved': [() => ({ status: 307, headers: { location: elsewhere.url('/landed') } }), () => ({ status: 302, headers: { location: elsewhere.url('/landed') } }), () => ({ status: 200 })]
  }
  hook.answer = (request) => (answers[request.path]!.shift() ?? (() => ({ status: 200 })))()
  const busy = await endpoint(hook.url('/busy'), { types: ['allocation.created'] })
  const gone = await endpoint(hook.url('/gone'), { types: ['allocation.created'] })
  const moved = await endpoint(hook.url('/moved'), { types: ['allocation.created'] })
  for (const e of [busy, gone, moved]) t.teardown(() => call(app, 'DELETE', `/api/webhooks/${e.id}`))
  await book(app, (await createResource(app, 'car')).id, ...nextSlot())
  t.ok(await eventually(() => hook.received.filter((r) => r.path === '/busy').length === 3 && hook.received.filter((r) => r.path === '/moved').length === 3), 'all tried')
  const tries = hook.received.filter((r) => r.path === '/busy').map((r) => r.at)
  t.ok(tries[1]! - tries[0]! >= 1900, `after 429 Retry-After: 2, the next try ${tries[1]! - tries[0]!} ms later (the schedule said 0.2 s)`)
  t.ok(tries[2]! - tries[1]! >= 2500, `after 503 Retry-After: <an HTTP date 4 s ahead>, ${tries[2]! - tries[1]!} ms later`)
  t.match((await call(app, 'GET', `/api/webhooks/${gone.id}`)).json(), { enabled: false, disabled_reason: /410 Gone/ })
  t.equal(hook.received.filter((r) => r.path === '/gone').length, 1, '410: one attempt, then disabled')
  t.equal(elsewhere.connections, 0, 'the redirect\'s target was never connected to')
  const movedAttempts = (await call(app, 'GET', `/api/webhooks/${moved.id}/deliveries`)).json()
  t.match(movedAttempts.slice(1), [{ response_status: 302, error: /redirects are not followed/ }, { response_status: 307, error: /redirects are not followed/ }])
  t.match((await call(app, 'GET', `/api/webhooks/${moved.id}`)).json(), { enabled: true })
})

t.test('two replicas, a receiver that fails at random: every event arrives, each resource\'s in order, never the same event twice at once', async (t) => {
  const other = await buildApp({ ...loadConfig({ ...env, LOG_LEVEL: 'silent', MAX_EVENT_LOOP_DELAY_MS: '0' }), databaseUrl: app.databaseUrl })
  t.teardown(() => other.close())
  const bases = [await listen(app), await listen(other)]
  const hook = await receiver(t)
  const inFlight = new Map<string, number>()
  let overlapping = 0
  hook.answer = (request) => {
    const id = request.headers['webhook-id']!
    inFlight.set(id, (inFlight.get(id) ?? 0) + 1)
    if (inFlight.get(id)! > 1) overlapping++
    setTimeout(() => inFlight.set(id, inFlight.get(id)! - 1), 25)
    return { status: Math.random() < 0.3 ? 500 : 200, delayMs: 20 }
  }
  const target = await endpoint(hook.url(), { resource_type: 'car' })
  t.teardown(() => call(app, 'DELETE', `/api/webhooks/${target.id}`))
  const cars = await Promise.all(Array.from({ length: 4 }, () => createResource(app, 'car')))
  // Changes to each car from both replicas at once: bookings, moves and cancels.
  const auth = { authorization: `Bearer ${app.adminToken}` }
  const statuses: number[] = []
  await Promise.all(cars.map(async (car, c) => {
    for (let n = 0; n < 4; n++) {
      const api = bases[(c + n) % 2]!
      const [start, end] = nextSlot()
      const made = await fetchJson(`${api}/api/resources/${car.id}/allocations`, 'POST', { starts_at: start, ends_at: end }, auth)
      statuses.push(made.status, (await fetchJson(`${api}/api/allocations/${made.body.id}`, 'PATCH', { description: `move ${n}` }, auth)).status)
      if (n % 2 === 1) statuses.push((await fetchJson(`${bases[(c + n + 1) % 2]}/api/allocations/${made.body.id}`, 'DELETE', undefined, auth)).status)
    }
  }))
  t.same([...new Set(statuses)].sort(), [200, 201, 204], 'every change made')
  const carIds = new Set(cars.map((car) => car.id))
  let events: Array<{ id: string, position: number, resource_id: string }> = []
  await eventually(async () => {
    events = [...(await feedItems()).values()].map((text) => JSON.parse(text)).filter((e) => carIds.has(e.resource_id))
    return events.length === 4 * (1 + 4 * 2 + 2)
  })
  t.equal(events.length, 44, '44 events: 4 cars, 16 bookings, 16 moves, 8 cancels')
  t.ok(await eventually(() => events.every((e) => hook.of(e.id).some((r) => r.status === 200)), 60_000), 'every event acknowledged in the end')
  t.ok(hook.received.some((r) => r.status === 500), 'some attempts failed on the way')

  const wrongOrder: string[] = []
  for (const event of events) {
    const earlier = events.filter((e) => e.resource_id === event.resource_id && e.position < event.position)
    for (const request of hook.of(event.id)) {
      const unacknowledged = earlier.filter((e) => !hook.of(e.id).some((r) => r.status === 200 && r.answeredAt! <= request.at))
      if (unacknowledged.length > 0) wrongOrder.push(`${event.position} sent before ${unacknowledged.map((e) => e.position).join(', ')} was acknowledged`)
    }
  }
  t.same(wrongOrder, [], 'no event of a resource is sent before the earlier ones were acknowledged')
  t.equal(overlapping, 0, 'the replicas never sent one event twice at the same time')
  t.ok(hook.received.every((r) => r.headers['webhook-id'] === JSON.parse(r.body).id), 'every retry carries the event\'s webhook-id')
})

t.test('the receiver docs/events.md shows, run as written: it verifies a delivery and refuses a forgery', async (t) => {
  const doc = await fs.readFile(path.join(repoRoot, 'docs', 'events.md'), 'utf8')
  const code = /```js\n(\/\/ receiver\.mjs[\s\S]*?)```/.exec(doc)?.[1]
  t.ok(code, 'the block is there')
  // Its import of standardwebhooks must find the package.
  const dir = await packageScratchDir(t, 'invsys-receiver-')
  const port = await freePort()
  await fs.writeFile(path.join(dir, 'receiver.mjs'), code!.replace('.listen(4000,', `.listen(${port},`))
  const target = await endpoint(`http://127.0.0.1:${port}/`, { types: ['allocation.created'] })
  t.teardown(() => call(app, 'DELETE', `/api/webhooks/${target.id}`))
  const child = spawn(...untapped(process.execPath, [path.join(dir, 'receiver.mjs')]), { env: { ...process.env, WEBHOOK_SECRET: target.secret }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => child.kill())
  let printed = ''
  child.stdout.on('data', (chunk: Buffer) => { printed += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { printed += chunk.toString() })
  t.ok(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: '{}' }).catch(() => undefined))?.status === 400), 'a request without signature: 400')
  const booked = (await book(app, (await createResource(app, 'car')).id, ...nextSlot())).json()
  t.ok(await eventually(() => printed.includes(booked.id)), `it printed the event: ${printed.trim()}`)
  t.match(printed, new RegExp(`^\\d+ allocation\\.created ${booked.id}$`, 'm'))
  const attempts = (await call(app, 'GET', `/api/webhooks/${target.id}/deliveries`)).json()
  t.match(attempts, [{ response_status: 204 }], 'and answered 204')
})
