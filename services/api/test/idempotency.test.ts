import type { InjectOptions } from 'fastify'
import t from 'tap'
import { bearer, buildTestApp, createAccount, createResource, createSite, fetchJson, listen, sql, unique } from './helpers.js'

const app = await buildTestApp(t)

const post = (url: string, payload: unknown, key?: string, method: InjectOptions['method'] = 'POST', token = app.adminToken) =>
  app.inject({ method, url, payload: payload as object, headers: { ...bearer(token), ...(key === undefined ? {} : { 'idempotency-key': key }) } })

const count = async (table: string, where = 'true', values: unknown[] = []) =>
  (await sql<{ n: number }>(app, `SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, values))[0]!.n

t.test('a retry with the same key and body gets the first response and creates nothing', async (t) => {
  const key = unique('key')
  const name = unique('Idempotent depot')
  const first = await post('/api/sites', { name, country: 'Norway' }, key)
  t.equal(first.statusCode, 201)
  t.notOk(first.headers['idempotent-replayed'])
  const again = await post('/api/sites', { country: 'Norway', name }, key)
  t.equal(again.statusCode, 201, 'the same status')
  t.equal(again.body, first.body, 'the same body, byte for byte (keys in another order are the same body)')
  t.equal(again.headers.location, first.headers.location, 'and the same Location')
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.match(again.headers['content-type'], /^application\/json/)
  t.equal(await count('site', 'name = $1', [name]), 1, 'one site')

  const other = await post('/api/sites', { name, country: 'Sweden' }, key)
  t.equal(other.statusCode, 422)
  t.match(other.json(), { statusCode: 422, code: 'IDEMPOTENCY_KEY_REUSED', message: /different body/ })
  t.equal(await count('site', 'name = $1', [name]), 1, 'still one site')

  const elsewhere = await post('/api/resources', { type: 'car', name: unique('car') }, key)
  t.equal(elsewhere.statusCode, 201, 'a key is scoped to its method and path')
  t.equal((await post('/api/sites', { name }, unique('key'))).statusCode, 201, 'a new key is a new request')
})

t.test('every creating POST honours the key', async (t) => {
  const site = await createSite(app)
  const car = await createResource(app, 'car', { site_id: site.id })
  const freezer = await createResource(app, 'freezer')
  const cases: Array<[string, Record<string, unknown>, string, string]> = [
    ['/api/resources', { type: 'truck', name: unique('truck') }, 'resource', "type = 'truck'"],
    ['/api/lorries', { name: unique('lorry') }, 'resource', "type = 'lorry'"],
    [`/api/resources/${car.id}/allocations`, { starts_at: '2030-01-01T09:00:00Z', ends_at: '2030-01-01T10:00:00Z' }, 'allocation', `resource_id = '${car.id}'`],
    [`/api/cars/${car.id}/allocations`, { starts_at: '2030-01-02T09:00:00Z', ends_at: '2030-01-02T10:00:00Z', status: 'held', hold_seconds: 60 }, 'allocation', `resource_id = '${car.id}'`],
    ['/api/allocations', { type: 'car', site_id: site.id, starts_at: '2030-01-03T09:00:00Z', ends_at: '2030-01-03T10:00:00Z' }, 'allocation', `resource_id = '${car.id}'`],
    [`/api/freezers/${freezer.id}/containers`, { description: 'Box 1' }, 'container', `freezer_id = '${freezer.id}'`]
  ]
  for (const [url, body, table, where] of cases) {
    const key = unique('key')
    const before = await count(table, where)
    const first = await post(url, body, key)
    t.equal(first.statusCode, 201, url)
    const replay = await post(url, body, key)
    t.equal(replay.statusCode, 201, url)
    t.equal(replay.json().id, first.json().id, `${url}: the same thing comes back`)
    t.equal(replay.headers['idempotent-replayed'], 'true')
    t.equal(await count(table, where), before + 1, `${url}: created once`)
  }
})

t.test('the first response is what is replayed, errors included; a refused body is not stored', async (t) => {
  const car = await createResource(app, 'car')
  const taken = (await post(`/api/resources/${car.id}/allocations`, { starts_at: '2030-02-01T09:00:00Z', ends_at: '2030-02-01T12:00:00Z' })).json()
  const key = unique('key')
  const body = { starts_at: '2030-02-01T10:00:00Z', ends_at: '2030-02-01T11:00:00Z' }
  const conflict = await post(`/api/resources/${car.id}/allocations`, body, key)
  t.equal(conflict.statusCode, 409)
  t.equal((await post(`/api/allocations/${taken.id}`, undefined, undefined, 'DELETE')).statusCode, 204)
  const replay = await post(`/api/resources/${car.id}/allocations`, body, key)
  t.equal(replay.statusCode, 409, 'the same key answers as it first did, even once the slot is free')
  t.equal(replay.body, conflict.body)
  t.equal((await post(`/api/resources/${car.id}/allocations`, body, unique('key'))).statusCode, 201, 'a new key books it')

  const invalidKey = unique('key')
  t.equal((await post('/api/sites', { name: '' }, invalidKey)).statusCode, 400)
  t.equal((await post('/api/sites', { name: 'Fixed' }, invalidKey)).statusCode, 201, 'a 400 from validation did not use the key up')
})

t.test('a malformed key is a 400 naming the header; no key means no idempotency', async (t) => {
  for (const key of ['', 'has space', 'x'.repeat(256), 'naïve']) {
    const res = await post('/api/sites', { name: 'Keyed' }, key)
    t.equal(res.statusCode, 400, JSON.stringify(key))
    t.match(res.json().message, /headers\/idempotency-key/, JSON.stringify(key))
  }
  t.equal((await post('/api/sites', { name: 'x' }, 'x'.repeat(255))).statusCode, 201, '255 characters is fine')
  const name = unique('Unkeyed')
  await post('/api/sites', { name })
  await post('/api/sites', { name })
  t.equal(await count('site', 'name = $1', [name]), 2)
})

t.test('keys expire after 24 hours; abandoned claims are taken over; 5xx responses let the key go', async (t) => {
  const key = unique('key')
  const first = await post('/api/sites', { name: 'Old' }, key)
  const [row] = await sql<{ hours: number }>(app, 'SELECT round(extract(epoch FROM expires_at - created_at) / 3600)::int AS hours FROM idempotency_key WHERE key = $1', [key])
  t.equal(row!.hours, 24)
  await sql(app, 'UPDATE idempotency_key SET expires_at = now() - interval \'1 second\' WHERE key = $1', [key])
  const reused = await post('/api/sites', { name: 'New' }, key)
  t.equal(reused.statusCode, 201, 'an expired key may be used with another body')
  t.not(reused.json().id, first.json().id)

  const running = unique('key')
  t.equal((await post('/api/sites', { name: 'Busy' }, running)).statusCode, 201)
  // As if that request were still running (or had died before storing its response).
  await sql(app, 'UPDATE idempotency_key SET status_code = NULL, body = NULL, location = NULL WHERE key = $1', [running])
  const busy = await post('/api/sites', { name: 'Busy' }, running)
  t.equal(busy.statusCode, 409)
  t.equal(busy.json().code, 'IDEMPOTENCY_KEY_IN_USE', 'a key whose request is still running')
  t.equal(busy.headers['retry-after'], '1')
  await sql(app, 'UPDATE idempotency_key SET created_at = now() - interval \'6 minutes\' WHERE key = $1', [running])
  t.equal((await post('/api/sites', { name: 'Busy' }, running)).statusCode, 201, 'a claim abandoned for 5 minutes is taken over')

  await sql(app, `CREATE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$;
    CREATE TRIGGER test_fail BEFORE INSERT ON container FOR EACH ROW EXECUTE FUNCTION test_fail()`)
  const freezer = await createResource(app, 'freezer')
  const failing = unique('key')
  const broken = await post(`/api/freezers/${freezer.id}/containers`, { description: 'Box' }, failing)
  t.equal(broken.statusCode, 500)
  t.equal(await count('idempotency_key', 'key = $1', [failing]), 0, 'the key was let go')
  await sql(app, 'DROP FUNCTION test_fail() CASCADE')
  t.equal((await post(`/api/freezers/${freezer.id}/containers`, { description: 'Box' }, failing)).statusCode, 201, 'so the retry runs')

  await sql(app, `INSERT INTO idempotency_key (account_id, key, method, path, request_hash, claim, status_code, body, created_at, expires_at)
    SELECT (SELECT min(id) FROM account), 'stale-' || i, 'POST', '/api/sites', 'x', gen_random_uuid(), 201, '{}', now() - interval '2 days', now() - interval '1 day'
    FROM generate_series(1, 5) i`)
  await post('/api/sites', { name: 'Purger' }, unique('key'))
  t.equal(await count('idempotency_key', "key LIKE 'stale-%'"), 0, 'expired keys are purged as new ones arrive')
})

t.test('parallel requests with one key over real HTTP create one row', async (t) => {
  const site = await createSite(app)
  for (let i = 0; i < 20; i++) await createResource(app, 'computer', { site_id: site.id })
  // Slow inserts keep the first request running while the others arrive.
  await sql(app, `CREATE FUNCTION test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$;
    CREATE TRIGGER test_slow_insert BEFORE INSERT ON allocation FOR EACH ROW EXECUTE FUNCTION test_slow_insert()`)
  t.teardown(() => sql(app, 'DROP FUNCTION test_slow_insert() CASCADE'))
  const base = await listen(app)
  const body = { type: 'computer', site_id: site.id, starts_at: '2030-05-01T09:00:00Z', ends_at: '2030-05-01T10:00:00Z' }
  const replies = await Promise.all(Array.from({ length: 20 }, () => fetchJson(`${base}/api/allocations`, 'POST', body, { 'idempotency-key': 'one-booking' })))
  const created = replies.filter((r) => r.status === 201)
  const waiting = replies.filter((r) => r.status === 409)
  t.equal(created.length + waiting.length, 20, `only 201 and 409: ${replies.map((r) => r.status).join(',')}`)
  t.ok(created.length >= 1)
  t.equal(new Set(created.map((r) => r.body.id)).size, 1, 'every 201 is the same allocation')
  t.ok(waiting.every((r) => r.body.code === 'IDEMPOTENCY_KEY_IN_USE'))
  t.equal(await count('allocation a JOIN resource r ON r.id = a.resource_id', 'r.site_id = $1', [site.id]), 1, 'one row in the database')
  const after = await fetchJson(`${base}/api/allocations`, 'POST', body, { 'idempotency-key': 'one-booking' })
  t.equal(after.status, 201)
  t.equal(after.body.id, created[0]!.body.id, 'once finished, every retry gets the first response')
})

t.test('the OpenAPI document shows the header and the 422 on creating POSTs only', async (t) => {
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
  const header = (op: { parameters?: Array<{ in: string, name: string }> }) => op.parameters?.some((p) => p.in === 'header' && p.name === 'idempotency-key')
  for (const path of ['/api/sites', '/api/resources', '/api/cars', '/api/allocations', '/api/resources/{id}/allocations', '/api/trucks/{id}/allocations', '/api/freezers/{id}/containers']) {
    t.ok(header(doc.paths[path].post), `${path} has the header`)
    t.ok(doc.paths[path].post.responses['422'], `${path} documents 422`)
  }
  t.notOk(header(doc.paths['/api/allocations/{id}/confirm'].post), 'confirm creates nothing')
  t.notOk(header(doc.paths['/api/sites/{id}'].put), 'PUT is idempotent by itself')
})

t.test('keys belong to the account that sent them: the same key from another account is a new request', async (t) => {
  const car = await createResource(app, 'car')
  const alice = await createAccount(app, 'member')
  const bob = await createAccount(app, 'member')
  const key = unique('shared-key')
  const body = (hour: number) => ({ starts_at: `2034-01-01T${String(hour).padStart(2, '0')}:00:00Z`, ends_at: `2034-01-01T${String(hour + 1).padStart(2, '0')}:00:00Z` })
  const first = await post(`/api/resources/${car.id}/allocations`, body(9), key, 'POST', alice.token)
  t.equal(first.statusCode, 201)
  const other = await post(`/api/resources/${car.id}/allocations`, body(11), key, 'POST', bob.token)
  t.equal(other.statusCode, 201, 'not 422: the key is free for this account')
  t.notOk(other.headers['idempotent-replayed'], 'and nobody else\'s response is replayed')
  t.not(other.json().id, first.json().id)
  t.equal(other.json().owner_id, bob.id)
  const replay = await post(`/api/resources/${car.id}/allocations`, body(9), key, 'POST', alice.token)
  t.equal(replay.headers['idempotent-replayed'], 'true', 'the owner of the key still gets its own replay')
  t.equal(replay.json().id, first.json().id)
  t.equal(await count('allocation', 'resource_id = $1', [car.id]), 2)
})
