import { createHash } from 'node:crypto'
import ICAL from 'ical.js'
import t from 'tap'
import { ERROR_CODES } from '../src/plugins/errors.js'
import { generateFeedSecret } from '../src/tokens.js'
import { book, buildTestApp, call, createAccount, createResource, createSite, listen, sql, unique, type Response } from './helpers.js'

// Every line the app logs, at its most verbose, for the last test to search for secrets.
const lines: string[] = []
const app = await buildTestApp(t, { logLevel: 'trace', logStream: { write: (line) => { lines.push(line) } } })
const member = await createAccount(app, 'member')
const other = await createAccount(app, 'member')

/** Every secret a test saw, live, revoked or made up: none may ever reach the logs. */
const secrets: string[] = []

interface NewFeed { id: string, label: string, url: string, created_at: string, resource_id?: string, site_id?: number, type?: string, mine?: boolean }

async function createFeed (body: Record<string, unknown>, token: string | null | undefined = undefined): Promise<NewFeed> {
  const res = await call(app, 'POST', '/api/feeds', body, { token })
  if (res.statusCode !== 201) throw new Error(`feed not created: ${res.statusCode} ${res.body}`)
  const feed = res.json<NewFeed>()
  secrets.push(feed.url.slice('/feeds/'.length, -'.ics'.length))
  return feed
}

/** What a calendar application does: a plain GET of the address, no token. */
async function fetchFeed (url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET'): Promise<Response> {
  return app.inject({ method, url, headers })
}

interface Parsed {
  calendar: InstanceType<typeof ICAL.Component>
  events: Map<string, InstanceType<typeof ICAL.Event>>
}

/** Parses with ical.js, as a calendar client would; throws on anything it cannot read. */
function parse (text: string): Parsed {
  const calendar = new ICAL.Component(ICAL.parse(text))
  const events = new Map(calendar.getAllSubcomponents('vevent').map((v) => {
    const event = new ICAL.Event(v)
    return [event.uid, event] as const
  }))
  return { calendar, events }
}

async function read (url: string): Promise<Parsed & { res: Response }> {
  const res = await fetchFeed(url)
  if (res.statusCode !== 200) throw new Error(`feed not read: ${res.statusCode} ${res.body}`)
  return { res, ...parse(res.body) }
}

const ok = async (reply: Promise<Response>) => {
  const res = await reply
  if (res.statusCode !== 201) throw new Error(`not booked: ${res.body}`)
  return res.json<{ id: string, updated_at: string, created_at: string, expires_at: string | null }>()
}

const status = (event: InstanceType<typeof ICAL.Event>) => event.component.getFirstPropertyValue('status')
const iso = (time: InstanceType<typeof ICAL.Time>) => time.toJSDate().toISOString().replace('.000Z', 'Z')
const WINDOW = 'from=2031-01-01T00:00:00Z&to=2031-02-01T00:00:00Z'

t.test('creating a feed: the address once, its hash stored, one scope of four', async (t) => {
  const car = await createResource(app, 'car')
  const site = await createSite(app)
  const cases: Array<[string, Record<string, unknown>]> = [
    ['resource_id', { resource_id: car.id }],
    ['site_id', { site_id: site.id }],
    ['type', { type: 'car' }],
    ['mine', { mine: true }]
  ]
  for (const [field, scope] of cases) {
    const res = await call(app, 'POST', '/api/feeds', { label: `by ${field}`, ...scope }, { token: member.token })
    t.equal(res.statusCode, 201, field)
    t.equal(res.headers['cache-control'], 'no-store', `${field}: the address is a credential`)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['created_at', 'id', 'label', 'url', field].sort(), `${field}: exactly the promised fields`)
    t.equal(body[field], scope[field])
    t.match(body.url, /^\/feeds\/[A-Za-z0-9_-]{43}\.ics$/, `${field}: 256 random bits, url-safe`)
    const secret = body.url.slice(7, -4) as string
    secrets.push(secret)
    t.equal(Buffer.from(secret, 'base64url').length, 32)
    const [row] = await sql(app, 'SELECT to_jsonb(f)::text AS whole, secret_hash FROM calendar_feed f WHERE id = $1', [body.id])
    t.same(row!.secret_hash, createHash('sha256').update(secret).digest(), `${field}: the database keeps the SHA-256`)
    t.notOk(String(row!.whole).includes(secret), `${field}: and never the secret`)
  }
  const one = await createFeed({ label: 'same scope twice', type: 'car' })
  const two = await createFeed({ label: 'same scope twice', type: 'car' })
  t.not(one.url, two.url, 'every feed has its own secret')
})

t.test('what a feed cannot be: 400 naming the problem, 409 for a missing resource or site, 401 without a token', async (t) => {
  const car = await createResource(app, 'car')
  const cases: Array<[unknown, number, string, RegExp]> = [
    [{ label: 'none' }, 400, 'BAD_REQUEST', /exactly one scope/],
    [{ label: 'mine false', mine: false }, 400, 'BAD_REQUEST', /exactly one scope/],
    [{ label: 'two', type: 'car', mine: true }, 400, 'BAD_REQUEST', /2 scopes \(type, mine\)/],
    [{ label: 'three', resource_id: car.id, site_id: 1, type: 'car' }, 400, 'BAD_REQUEST', /3 scopes/],
    [{ label: 'boat', type: 'boat' }, 400, 'VALIDATION_ERROR', /body\/type must be one of car, /],
    [{ label: 'bad id', resource_id: 'nope' }, 400, 'VALIDATION_ERROR', /body\/resource_id must be a valid uuid/],
    [{ label: 'bad site', site_id: 0 }, 400, 'VALIDATION_ERROR', /body\/site_id/],
    [{ type: 'car' }, 400, 'VALIDATION_ERROR', /body\/label is required/],
    [{ label: '   ', type: 'car' }, 400, 'VALIDATION_ERROR', /body\/label must not be blank/],
    [{ label: 'x', type: 'car', secret: 'mine' }, 400, 'VALIDATION_ERROR', /body\/secret is not an accepted property/],
    [{ label: 'nul \u0000 byte', type: 'car' }, 400, 'INVALID_VALUE', /./],
    [{ label: 'x'.repeat(201), type: 'car' }, 400, 'VALIDATION_ERROR', /body\/label must NOT have more than 200 characters/],
    [{ label: 'gone', resource_id: '00000000-0000-4000-8000-000000000000' }, 409, 'REFERENCE_NOT_FOUND', /^resource_id does not name an existing resource$/],
    [{ label: 'nowhere', site_id: 999999 }, 409, 'REFERENCE_NOT_FOUND', /^site_id does not name an existing site$/]
  ]
  const before = await sql(app, 'SELECT count(*)::int AS n FROM calendar_feed')
  for (const [body, code, name, message] of cases) {
    const res = await call(app, 'POST', '/api/feeds', body, { token: member.token })
    t.equal(res.statusCode, code, JSON.stringify(body))
    t.match(res.json(), { statusCode: code, code: name, message }, JSON.stringify(body))
  }
  t.equal((await call(app, 'POST', '/api/feeds', { label: 'x', type: 'car' }, { token: null })).statusCode, 401)
  t.same(await sql(app, 'SELECT count(*)::int AS n FROM calendar_feed'), before, 'nothing was stored')
})

t.test('a resource feed, fetched without a token and parsed by ical.js', async (t) => {
  const site = await createSite(app, { name: 'Harbour Depot, Quay 3; Porto' })
  const car = await createResource(app, 'car', { site_id: site.id })
  const tricky = 'Airport run, terminal 2; gate "B"\\C, file C:\\new\\, \\;\nSecond line\r\nThird — Überführung nach Köln 🚗 ' + 'ß'.repeat(60)
  const plain = await ok(book(app, car.id, '2031-01-10T09:00:00+01:00', '2031-01-10T17:30:00+01:00', { description: tricky }))
  const held = await ok(book(app, car.id, '2031-01-11T09:00:00Z', '2031-01-11T10:00:00Z', { status: 'held', hold_seconds: 600 }))
  const open = await ok(book(app, car.id, '2031-01-20T00:00:00Z', null, { kind: 'maintenance' }))
  const cancelled = await ok(book(app, car.id, '2031-01-09T09:00:00Z', '2031-01-09T10:00:00Z', { description: 'Called off' }))
  t.equal((await call(app, 'DELETE', `/api/allocations/${cancelled.id}`)).statusCode, 204)
  const stale = await ok(book(app, car.id, '2031-01-08T09:00:00Z', '2031-01-08T10:00:00Z', { status: 'held', hold_seconds: 60 }))
  await sql(app, 'UPDATE allocation SET created_at = now() - interval \'2 hours\', expires_at = now() - interval \'1 hour\' WHERE id = $1', [stale.id])
  const outside = await ok(book(app, car.id, '2030-12-01T09:00:00Z', '2030-12-01T10:00:00Z'))
  const label = 'Car, one; of "ours" \\ fleet'
  const feed = await createFeed({ label, resource_id: car.id }, member.token)

  const { res, calendar, events } = await read(`${feed.url}?${WINDOW}`)
  t.equal(res.headers['content-type'], 'text/calendar; charset=utf-8')
  t.equal(calendar.getFirstPropertyValue('version'), '2.0')
  t.equal(calendar.getFirstPropertyValue('x-wr-calname'), label, 'the label is the calendar\'s name, escaped and read back exactly')
  const refresh = calendar.getFirstProperty('refresh-interval')!
  t.equal(refresh.type, 'duration', 'read as a DURATION')
  t.equal(String(refresh.getFirstValue()), 'PT15M', 'REFRESH-INTERVAL;VALUE=DURATION:PT15M')
  t.equal(String(calendar.getFirstPropertyValue('x-published-ttl')), 'PT15M', 'X-PUBLISHED-TTL:PT15M')
  t.match(res.body, /\r\nREFRESH-INTERVAL;VALUE=DURATION:PT15M\r\nX-PUBLISHED-TTL:PT15M\r\n/, 'both hints, written as clients look for them')
  t.same([...events.keys()].sort(), [plain.id, held.id, open.id, cancelled.id].sort(), 'live and cancelled in the window; not run-out holds, not outside it')
  t.notOk(events.has(stale.id) || events.has(outside.id))

  const booking = events.get(plain.id)!
  t.equal(iso(booking.startDate), '2031-01-10T08:00:00Z')
  t.equal(iso(booking.endDate), '2031-01-10T16:30:00Z')
  t.equal(booking.summary, tricky.replace(/\r\n/g, '\n'), 'commas, semicolons, backslashes, newlines and UTF-8 survive escaping and folding')
  t.equal(booking.location, 'Harbour Depot, Quay 3; Porto', 'LOCATION is the site')
  t.equal(status(booking), 'CONFIRMED')
  t.equal(status(events.get(held.id)!), 'TENTATIVE')
  const gone = events.get(cancelled.id)!
  t.equal(status(gone), 'CANCELLED', 'a cancelled booking stays, as STATUS:CANCELLED')
  t.equal(gone.summary, 'Cancelled: Called off')
  t.equal(gone.component.getFirstPropertyValue('transp'), 'TRANSPARENT')
  t.equal(iso(events.get(open.id)!.endDate), '2031-02-01T00:00:00Z', 'an open end is cut off at the window')

  const again = await read(`${feed.url}?from=2031-01-05T00:00:00Z&to=2031-03-01T00:00:00Z`)
  t.same([...again.events.keys()].sort(), [...events.keys()].sort(), 'UIDs are the allocation ids: stable across fetches and windows')
})

t.test('site, type and mine feeds show what their scope covers', async (t) => {
  const here = await createSite(app)
  const there = await createSite(app)
  const truckHere = await createResource(app, 'truck', { site_id: here.id })
  const carHere = await createResource(app, 'car', { site_id: here.id })
  const truckThere = await createResource(app, 'truck', { site_id: there.id, name: unique('Big; Blue, Truck') })
  const slot = (day: number, hour = 9) => [`2031-01-${String(day).padStart(2, '0')}T${String(hour).padStart(2, '0')}:00:00Z`, `2031-01-${String(day).padStart(2, '0')}T${String(hour + 1).padStart(2, '0')}:00:00Z`] as const
  const a = await ok(call(app, 'POST', `/api/resources/${truckHere.id}/allocations`, { starts_at: slot(3)[0], ends_at: slot(3)[1], description: 'Gravel' }, { token: member.token }))
  const b = await ok(call(app, 'POST', `/api/resources/${carHere.id}/allocations`, { starts_at: slot(4)[0], ends_at: slot(4)[1] }, { token: other.token }))
  const c = await ok(call(app, 'POST', `/api/resources/${truckThere.id}/allocations`, { starts_at: slot(5)[0], ends_at: slot(5)[1], description: 'Sand' }, { token: member.token }))
  const d = await ok(book(app, truckThere.id, slot(6)[0], slot(6)[1]))

  const atSite = await read(`${(await createFeed({ label: 'here', site_id: here.id }, other.token)).url}?${WINDOW}`)
  t.same([...atSite.events.keys()].sort(), [a.id, b.id].sort(), 'site: the allocations of the resources there')
  t.equal(atSite.events.get(a.id)!.summary, `${truckHere.name}: Gravel`, 'a feed of many resources names the resource in each summary')

  const trucks = await read(`${(await createFeed({ label: 'trucks', type: 'truck' }, other.token)).url}?${WINDOW}`)
  for (const id of [a.id, c.id, d.id]) t.ok(trucks.events.has(id), 'type: every truck\'s allocations')
  t.notOk(trucks.events.has(b.id), 'and no car\'s')
  t.equal(trucks.events.get(c.id)!.summary, `${truckThere.name}: Sand`, 'names with commas and semicolons read back exactly')

  const mineFeed = await createFeed({ label: 'mine', mine: true }, member.token)
  const mine = await read(`${mineFeed.url}?${WINDOW}`)
  t.ok(mine.events.has(a.id) && mine.events.has(c.id), 'mine: what the account owns, wherever it is')
  t.notOk(mine.events.has(b.id) || mine.events.has(d.id), 'and nothing of anyone else\'s')
  await call(app, 'DELETE', `/api/allocations/${c.id}`, undefined, { token: member.token })
  t.equal(status((await read(`${mineFeed.url}?${WINDOW}`)).events.get(c.id)!), 'CANCELLED')

  await call(app, 'PATCH', `/api/resources/${truckHere.id}`, { site_id: there.id })
  const moved = await read(`${(await createFeed({ label: 'here again', site_id: here.id })).url}?${WINDOW}`)
  t.same([...moved.events.keys()], [b.id], 'a resource moved to another site leaves the site\'s feed')
})

t.test('by default 30 days back to 365 ahead', async (t) => {
  const lorry = await createResource(app, 'lorry')
  const day = 24 * 60 * 60 * 1000
  const at = (days: number) => new Date(Date.now() + days * day).toISOString()
  const recent = await ok(book(app, lorry.id, at(-20), at(-20 + 1 / 24)))
  const old = await ok(book(app, lorry.id, at(-40), at(-40 + 1 / 24)))
  const nextYear = await ok(book(app, lorry.id, at(300), at(300 + 1 / 24)))
  const tooFar = await ok(book(app, lorry.id, at(400), at(400 + 1 / 24)))
  const { events } = await read((await createFeed({ label: 'lorry', resource_id: lorry.id })).url)
  t.same([...events.keys()].sort(), [recent.id, nextYear.id].sort())
  t.notOk(events.has(old.id) || events.has(tooFar.id))
})

t.test('ETag, If-None-Match and 304; Last-Modified; HEAD', async (t) => {
  const car = await createResource(app, 'car')
  const first = await ok(book(app, car.id, '2031-01-12T09:00:00Z', '2031-01-12T10:00:00Z'))
  const feed = await createFeed({ label: 'etag', resource_id: car.id })
  const url = `${feed.url}?${WINDOW}`
  const one = await fetchFeed(url)
  const etag = one.headers.etag as string
  t.match(etag, /^"[A-Za-z0-9_-]{43}"$/, 'a strong ETag (no W/)')
  t.equal(etag, `"${createHash('sha256').update(one.body).digest('base64url')}"`, 'the hash of the body')
  t.equal(one.headers['last-modified'], new Date(first.updated_at).toUTCString(), 'Last-Modified: the newest change shown, as an HTTP-date')
  t.match(one.headers['cache-control'], /no-cache/, 'revalidated on every fetch, so revocation is never stale')
  t.equal((await fetchFeed(url)).headers.etag, etag, 'the same feed has the same ETag')
  t.equal((await fetchFeed(feed.url)).headers.etag, (await fetchFeed(feed.url)).headers.etag, 'also with the default window')

  for (const header of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const res = await fetchFeed(url, { 'if-none-match': header })
    t.equal(res.statusCode, 304, `If-None-Match: ${header}`)
    t.equal(res.body, '', 'no body')
    t.equal(res.headers.etag, etag)
    t.ok(res.headers['last-modified'])
  }
  t.equal((await fetchFeed(url, { 'if-none-match': '"stale"' })).statusCode, 200, 'another tag gets the calendar')
  t.equal((await fetchFeed(url, { 'if-modified-since': new Date(Date.now() + 60_000).toUTCString() })).statusCode, 200,
    'If-Modified-Since alone is not trusted with a 304')

  const head = await fetchFeed(url, {}, 'HEAD')
  t.equal(head.statusCode, 200)
  t.equal(head.body, '', 'HEAD: no body')
  for (const name of ['etag', 'last-modified', 'content-type', 'content-length', 'cache-control']) {
    t.equal(head.headers[name], one.headers[name], `HEAD: the same ${name}`)
  }
  t.equal((await fetchFeed(url, { 'if-none-match': etag }, 'HEAD')).statusCode, 304)

  const second = await ok(book(app, car.id, '2031-01-13T09:00:00Z', '2031-01-13T10:00:00Z'))
  const changed = await fetchFeed(url, { 'if-none-match': etag })
  t.equal(changed.statusCode, 200, 'a new booking: the old ETag no longer matches')
  t.not(changed.headers.etag, etag)
  t.equal(changed.headers['last-modified'], new Date(second.updated_at).toUTCString())
  await call(app, 'PATCH', `/api/allocations/${first.id}`, { description: 'renamed' })
  t.equal((await fetchFeed(url, { 'if-none-match': changed.headers.etag as string })).statusCode, 200, 'a change: the same')

  const empty = await createFeed({ label: 'empty', resource_id: (await createResource(app, 'car')).id })
  t.equal((await fetchFeed(empty.url)).headers['last-modified'], new Date(empty.created_at).toUTCString(), 'an empty feed: when it was created')
})

t.test('several hundred events: folded, escaped and all there', async (t) => {
  const car = await createResource(app, 'car', { name: unique('Fleet, car; №') })
  const text = (i: number) => `Run ${i}: Lisboa, Porto; "quoted" \\ back\nline two — ${'é'.repeat(i % 50)} 🚗`
  await sql(app, `
    INSERT INTO allocation (resource_id, during, description)
    SELECT $1, tstzrange(timestamptz '2031-01-01 00:00Z' + i * interval '90 minutes',
                         timestamptz '2031-01-01 00:00Z' + i * interval '90 minutes' + interval '1 hour'), $2 || i
    FROM generate_series(0, 399) AS i`, [car.id, 'bulk '])
  const ids = await sql<{ id: string, n: number }>(app, 'SELECT id, substr(description, 6)::int AS n FROM allocation WHERE resource_id = $1', [car.id])
  for (const { id, n } of ids) await sql(app, 'UPDATE allocation SET description = $2 WHERE id = $1', [id, text(n)])
  const feed = await createFeed({ label: 'bulk', resource_id: car.id })
  const { res, events } = await read(`${feed.url}?from=2031-01-01T00:00:00Z&to=2031-02-01T00:00:00Z`)
  t.equal(events.size, 400, 'every one of 400 allocations is an event')
  const wanted = new Map(ids.map(({ id, n }) => [id, text(n)]))
  t.ok([...events].every(([uid, event]) => event.summary === wanted.get(uid)), 'every summary reads back exactly')
  const rows = res.body.slice(0, -2).split('\r\n')
  t.notOk(rows.some((line) => line.includes('\n') || line.includes('\r')), 'CRLF only')
  t.ok(Math.max(...rows.map((line) => Buffer.byteLength(line))) <= 75, 'no line longer than 75 octets')
  t.ok(rows.filter((line) => line.startsWith(' ')).length > 400, 'long lines were folded')
  t.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)))
})

t.test('unknown, malformed and revoked addresses are the same JSON 404', async (t) => {
  const feed = await createFeed({ label: 'to revoke', type: 'lorry' }, member.token)
  t.equal((await fetchFeed(feed.url)).statusCode, 200)
  const unknown = generateFeedSecret()
  secrets.push(unknown)
  const answers: Response[] = [await fetchFeed(`/feeds/${unknown}.ics`), await fetchFeed('/feeds/short.ics'), await fetchFeed(`/feeds/${unknown}x.ics`)]

  t.equal((await call(app, 'DELETE', `/api/feeds/${feed.id}`, undefined, { token: other.token })).statusCode, 403, 'another member may not revoke it')
  t.equal((await fetchFeed(feed.url)).statusCode, 200, 'and it still works')
  t.equal((await call(app, 'DELETE', `/api/feeds/${feed.id}`, undefined, { token: member.token })).statusCode, 204, 'its owner revokes it')
  answers.push(await fetchFeed(feed.url), await fetchFeed(feed.url, {}, 'HEAD'))
  for (const res of answers) {
    t.equal(res.statusCode, 404)
    if (res.body !== '') t.same(res.json(), { statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: 'no calendar feed at this address (it may have been revoked)', hint: ERROR_CODES.NOT_FOUND.action }, 'nothing about the address, no path')
  }
  t.equal((await call(app, 'DELETE', `/api/feeds/${feed.id}`, undefined, { token: member.token })).statusCode, 204, 'revoking twice is still 204')
  t.equal((await call(app, 'DELETE', `/api/feeds/${feed.id}`, undefined, { token: other.token })).statusCode, 403, 'someone else\'s is 403 even when revoked')
  t.equal((await call(app, 'DELETE', '/api/feeds/00000000-0000-4000-8000-000000000000')).statusCode, 404)
  t.equal((await fetchFeed(feed.url, { 'if-none-match': '*' })).statusCode, 404, 'If-None-Match does not revive it')

  const byAdmin = await createFeed({ label: 'admin revokes', mine: true }, other.token)
  t.equal((await call(app, 'DELETE', `/api/feeds/${byAdmin.id}`)).statusCode, 204, 'an admin revokes anyone\'s')
  t.equal((await fetchFeed(byAdmin.url)).statusCode, 404)

  const lorry = await createResource(app, 'lorry')
  const ofLorry = await createFeed({ label: 'deleted with it', resource_id: lorry.id })
  t.equal((await call(app, 'DELETE', `/api/resources/${lorry.id}`)).statusCode, 204)
  t.equal((await fetchFeed(ofLorry.url)).statusCode, 404, 'a feed goes with its resource')
})

t.test('listing: one\'s own feeds (an admin: everyone\'s), never an address', async (t) => {
  const lister = await createAccount(app, 'member')
  const kept = await createFeed({ label: 'kept', type: 'car' }, lister.token)
  const dropped = await createFeed({ label: 'dropped', mine: true }, lister.token)
  await call(app, 'DELETE', `/api/feeds/${dropped.id}`, undefined, { token: lister.token })
  const own = await call(app, 'GET', '/api/feeds', undefined, { token: lister.token })
  t.equal(own.statusCode, 200)
  t.same(own.json(), [{ id: kept.id, label: 'kept', type: 'car', created_at: kept.created_at, account_id: lister.id, revoked_at: null }])
  const all = (await call(app, 'GET', '/api/feeds?include_revoked=true&limit=1000', undefined, { token: lister.token })).json()
  t.same(all.map((f: { id: string }) => f.id), [kept.id, dropped.id], 'with include_revoked, revoked ones too')
  t.ok(all[1].revoked_at)
  const admins = (await call(app, 'GET', '/api/feeds?limit=1000')).json<Array<{ account_id: number }>>()
  t.ok(new Set(admins.map((f) => f.account_id)).size >= 3, 'an admin sees every account\'s feeds')
  const page = await call(app, 'GET', '/api/feeds?limit=1')
  t.match(page.headers.link, /offset=1>; rel="next"/, 'paged like every list')
  const everything = (await call(app, 'GET', '/api/feeds?limit=1000&include_revoked=true')).body
  t.notOk(everything.includes('/feeds/') || secrets.some((s) => everything.includes(s)), 'no address in any listing')
})

t.test('the OpenAPI document: the public address with no security, its 304 and JSON 404', async (t) => {
  const doc = (await call(app, 'GET', '/docs/json')).json()
  const op = doc.paths['/feeds/{secret}.ics'].get
  t.same(op.security, [], 'public: security []')
  t.ok(op.responses['200'].content['text/calendar'])
  t.ok(op.responses['304'])
  // The error body is the shared Error component.
  const notFound = op.responses['404'].content['application/json'].schema
  t.same(notFound, { $ref: '#/components/schemas/Error' })
  t.same(Object.keys(doc.components.schemas.Error.properties).sort(), ['code', 'error', 'hint', 'message', 'statusCode'])
  t.same(doc.paths['/api/feeds'].post.security, [{ bearerAuth: [] }])
  t.notOk(doc.paths['/api/feeds'].post.parameters?.some((p: { name: string }) => p.name === 'idempotency-key'), 'no Idempotency-Key: its reply would be stored, and it holds the secret')
})

t.test('over real HTTP, odd spellings of the address included', async (t) => {
  const base = await listen(app)
  const feed = await createFeed({ label: 'http', type: 'car' }, member.token)
  const secret = feed.url.slice(7, -4)
  const got = await fetch(`${base}${feed.url}`)
  t.equal(got.status, 200)
  t.equal(got.headers.get('content-type'), 'text/calendar; charset=utf-8')
  t.ok(parse(await got.text()))
  const head = await fetch(`${base}${feed.url}`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers.get('etag'), got.headers.get('etag'))
  t.equal(await head.text(), '')
  const odd = [`//feeds/${secret}.ics`, `/FEEDS/${secret}.ics`, `/%66eeds/${secret}.ics`, `/feeds/${secret}`, `/feeds/${secret}.ics/extra`,
    `/api/feeds/${secret}.ics`, `/feeds/${secret}.ics?from=bad`, `/feeds/%zz${secret}.ics`, `/feeds/%00${secret}.ics`,
    `/feeds/${'x'.repeat(5000)}.ics`, `/feeds/${secret}.ics?from=0001-01-01T00:00:00Z&to=0002-01-01T00:00:00Z`,
    `/feeds/${secret}.ics?from=9999-01-01T00:00:00Z&to=9999-12-31T23:59:59Z`, `/feeds/${secret}.ics?from[]=1`]
  for (const path of odd) {
    const res = await fetch(`${base}${path}`)
    t.ok(res.status < 500, `${path.replace(secret, '<secret>').slice(0, 80)}: ${res.status}, never a 500`)
    await res.text()
  }
  t.equal((await fetch(`${base}/feeds/${secret}.ics?from=2031-02-01T00:00:00Z&to=2031-01-01T00:00:00Z`)).status, 400, 'an inverted window is 400')
  t.equal((await fetch(`${base}/feeds/${secret}.ics?x-cache-buster=1`)).status, 200, 'other query parameters are ignored')
})

// Last: it reads the lines every test above wrote.
t.test('no secret ever reaches the logs; request lines show /feeds/[redacted].ics', async (t) => {
  app.log.error({ err: new Error(`fetching http://localhost:3000${`/feeds/${secrets[0]}.ics`} failed`) }, `careless line about /feeds/${secrets[0]}.ics`)
  t.ok(secrets.length >= 20, `${secrets.length} secrets used`)
  const log = lines.join('')
  t.ok(lines.length > 100, `${lines.length} log lines at trace level`)
  for (const secret of secrets) t.notOk(log.includes(secret), `${secret.slice(0, 4)}…: not in the logs`)
  const fetched = lines.filter((line) => line.includes('"msg":"request completed"') && line.includes('/feeds/[redacted].ics'))
  t.ok(fetched.length >= 30, `feed fetches are logged, redacted (${fetched.length})`)
  t.ok(lines.some((line) => line.includes('"url":"/api/feeds/')), 'the API\'s own /api/feeds/:id stays readable')
  t.ok(lines.some((line) => line.includes('careless line about /feeds/[redacted].ics')), 'a message quoting an address is redacted too')
})
