import { execFile } from 'node:child_process'
import net from 'node:net'
import t from 'tap'
import { MAX_JSON_DEPTH } from '../src/plugins/limits.js'
import { bearer, buildTestApp, call, createResource, listen, sleep, sql, untapped } from './helpers.js'

/**
 * Inputs a fuzzer found to answer 500 or a body without the error shape, and rows psql
 * can write that no request can: each is a 4xx in the JSON error shape, or a reply.
 */

const app = await buildTestApp(t)
const base = await listen(app)
const car = await createResource(app, 'car')
const alloc = `/api/resources/${car.id}/allocations`

/** The JSON error shape every non-2xx has. */
function isErrorBody (body: unknown): boolean {
  const b = body as Record<string, unknown> | null
  return !!b && typeof b.statusCode === 'number' && typeof b.code === 'string' && typeof b.error === 'string' && typeof b.message === 'string'
}

t.test('times that fall outside years 1 to 9999 in UTC are refused with 400 naming the field', async (t) => {
  const earliest = '0001-01-01T00:00:00+14:00' // 0000-12-31T10:00:00Z: 1 BC
  const latest = '9999-12-31T23:00:00-14:00' // 10000-01-01T13:00:00Z
  const cases: Array<[string, string, unknown, RegExp]> = [
    ['POST', alloc, { starts_at: earliest, ends_at: '0001-01-01T05:00:00+14:00' }, /^body\/starts_at must be an RFC 3339 date-time .* years 0001 to 9999/],
    ['POST', alloc, { starts_at: '2030-01-01T00:00:00Z', ends_at: latest }, /^body\/ends_at /],
    ['POST', alloc, { starts_at: '0000-06-01T00:00:00Z', ends_at: null }, /^body\/starts_at /],
    ['POST', '/api/allocations', { type: 'car', starts_at: latest, ends_at: null }, /^body\/starts_at /],
    ['GET', `/api/allocations?from=${encodeURIComponent(earliest)}`, undefined, /^querystring\/from /],
    ['GET', `/api/resources?available_to=${encodeURIComponent(latest)}`, undefined, /^querystring\/available_to /],
    ['GET', `${alloc.replace('/allocations', '/free')}?from=${encodeURIComponent(earliest)}&to=2030-01-01T00:00:00Z`, undefined, /^querystring\/from /],
    ['GET', `/api/slots?type=car&duration=PT1H&from=2030-01-01T00:00:00Z&to=${encodeURIComponent(latest)}`, undefined, /^querystring\/to /],
    ['GET', `${alloc.replace('/allocations', '/calendar.ics')}?from=${encodeURIComponent(earliest)}`, undefined, /^querystring\/from /]
  ]
  for (const [method, url, body, message] of cases) {
    const res = await call(app, method, url, body)
    t.equal(res.statusCode, 400, `${method} ${url.slice(0, 80)}: 400`)
    t.match(res.json(), { code: 'VALIDATION_ERROR', message }, 'names the field')
  }
  const booked = await call(app, 'POST', alloc, { starts_at: '2030-01-01T00:00:00Z', ends_at: '2030-01-01T01:00:00Z' })
  const moved = await call(app, 'PATCH', `/api/allocations/${booked.json().id}`, { ends_at: latest })
  t.match(moved, { statusCode: 400 }, 'a move to such a time is refused too')
  t.match(moved.json(), { message: /^body\/ends_at / })
  const truck = await createResource(app, 'truck')
  const whole = await call(app, 'POST', `/api/resources/${truck.id}/allocations`, { starts_at: '0001-01-01T00:00:00Z', ends_at: '9999-12-31T23:59:59.999999Z' })
  t.equal(whole.statusCode, 201, 'the very first and last instants are fine')
  t.match(whole.json(), { starts_at: '0001-01-01T00:00:00Z', ends_at: '9999-12-31T23:59:59.999999Z' })
})

t.test('rows psql wrote with times no request can send are read back, never a 500', async (t) => {
  const resource = await createResource(app, 'lorry')
  const [bc] = await sql<{ id: string }>(app, `
    INSERT INTO allocation (resource_id, during) VALUES ($1, tstzrange('0044-03-15 BC', '0044-03-16 BC'))
    RETURNING id`, [resource.id])
  const [future] = await sql<{ id: string }>(app, `
    INSERT INTO allocation (resource_id, during, created_at, updated_at, description)
    VALUES ($1, tstzrange('12345-01-01', NULL), '-infinity', 'infinity', 'far ahead') RETURNING id`, [resource.id])
  // The same transaction triggers an update whose history names an actor no account has.
  await sql(app, `
    BEGIN;
    SELECT set_config('invsys.actor', '9007199254740993', true);
    UPDATE allocation SET description = 'by a stranger' WHERE id = '${bc!.id}';
    COMMIT;`)

  const list = await call(app, 'GET', `/api/resources/${resource.id}/allocations?status=all`)
  t.equal(list.statusCode, 200, 'the resource\'s allocations')
  t.match(list.json(), [
    { id: bc!.id, starts_at: '-000043-03-15T00:00:00Z', ends_at: '-000043-03-16T00:00:00Z' },
    { id: future!.id, starts_at: '+012345-01-01T00:00:00Z', ends_at: null, created_at: '-infinity', updated_at: 'infinity' }
  ], 'times are written as ISO 8601 expanded years, as JavaScript writes them')
  for (const url of ['/api/allocations?status=all&limit=1000', `/api/allocations/${bc!.id}`, `/api/allocations/${future!.id}`,
    `/api/allocations/${bc!.id}/history`, `/api/lorries/${resource.id}/allocations/${future!.id}`,
    `/api/resources/${resource.id}/free?from=2030-01-01T00:00:00Z&to=2030-02-01T00:00:00Z`,
    `/api/resources/${resource.id}/calendar.ics?from=2030-01-01T00:00:00Z&to=2030-02-01T00:00:00Z`,
    '/api/resources?available_from=2030-01-01T00:00:00Z']) {
    const res = await call(app, 'GET', url)
    t.equal(res.statusCode, 200, `GET ${url}`)
  }
  const history = await call(app, 'GET', `/api/allocations/${bc!.id}/history`)
  t.match(history.json().at(-1), { operation: 'update', actor_id: 9007199254740992 }, 'an actor id beyond 2^53 set by hand reads, rounded')
  const collide = await call(app, 'POST', `/api/resources/${resource.id}/allocations`, { starts_at: '9999-01-01T00:00:00Z', ends_at: null })
  t.equal(collide.statusCode, 409, 'a booking that collides with such a row is told so')
  t.match(collide.json(), { code: 'ALLOCATION_CONFLICT', conflicts: [{ id: future!.id, starts_at: '+012345-01-01T00:00:00Z' }] })
})

t.test(`JSON nested deeper than ${MAX_JSON_DEPTH} levels is refused with 400`, async (t) => {
  const nested = (depth: number) => '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1)
  const send = (data: string, key?: string) => app.inject({
    method: 'POST',
    url: alloc,
    headers: { ...bearer(app.adminToken), 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
    payload: `{"starts_at":"2031-01-01T00:00:00Z","ends_at":"2031-01-01T01:00:00Z","data":${data}}`
  })
  for (const depth of [MAX_JSON_DEPTH, 5000]) {
    for (const key of [undefined, `deep-${depth}`]) {
      const res = await send(nested(depth), key)
      t.equal(res.statusCode, 400, `data ${depth} levels deep${key ? ', with an Idempotency-Key' : ''}: 400`)
      t.match(res.json(), { code: 'BAD_REQUEST', message: /nests objects and arrays more than 32 levels deep/ })
    }
  }
  const arrays = await app.inject({ method: 'POST', url: '/api/sites', headers: { ...bearer(app.adminToken), 'content-type': 'application/json' }, payload: '['.repeat(100000) })
  t.equal(arrays.statusCode, 400, '100,000 open brackets: 400')
  const ok = await send(nested(MAX_JSON_DEPTH - 1))
  t.equal(ok.statusCode, 201, `the body itself is one level, so data ${MAX_JSON_DEPTH - 1} deep is fine`)
  const quoted = await send(`{"text":"${'{['.repeat(1000)}"}`)
  t.equal(quoted.statusCode, 409, 'brackets inside strings do not count (and the slot is taken by now)')
})

t.test('a leap second in a calendar window is read as the next minute', async (t) => {
  const res = await call(app, 'GET', `${alloc.replace('/allocations', '/calendar.ics')}?from=2030-06-01T23:59:60Z&to=2030-06-03T00:00:00Z`)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/calendar/)
  const free = await call(app, 'GET', `${alloc.replace('/allocations', '/free')}?from=2030-06-01T23:59:60Z&to=2030-06-02T00:00:01Z`)
  t.same(free.json(), [{ starts_at: '2030-06-02T00:00:00Z', ends_at: '2030-06-02T00:00:01Z' }])
  const alone = await call(app, 'GET', `${alloc.replace('/allocations', '/calendar.ics')}?from=2099-06-01T23:59:60Z`)
  t.equal(alone.statusCode, 400, 'a from after the default to is a 400, not a 500')
  t.ok(isErrorBody(alone.json()))
})

/** Writes raw bytes to the listening app and reads the whole reply. */
async function raw (bytes: string | Buffer): Promise<{ status: number, headers: string, body: string }> {
  const { port } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const [head = '', body = ''] = text.split('\r\n\r\n')
      resolve({ status: Number(head.split(' ')[1]), headers: head, body })
    })
    socket.write(bytes)
    socket.setTimeout(10_000, () => socket.destroy())
  })
}

t.test('requests the HTTP parser refuses are answered in the JSON error shape, with a code', async (t) => {
  const auth = `Authorization: Bearer ${app.adminToken}\r\n`
  const cases: Array<[string, string | Buffer, number, string]> = [
    ['a URL over 16 kB', `GET /api/sites?q=${'x'.repeat(17000)} HTTP/1.1\r\nHost: a\r\n${auth}\r\n`, 414, 'URI_TOO_LONG'],
    ['headers over 16 kB', `GET /api/sites HTTP/1.1\r\nHost: a\r\n${auth}X-Big: ${'y'.repeat(17000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
    ['a NUL byte in the URL', `GET /api/si\0tes HTTP/1.1\r\nHost: a\r\n${auth}\r\n`, 400, 'BAD_REQUEST'],
    ['a NUL byte in a header', `GET /api/sites HTTP/1.1\r\nHost: a\r\n${auth}X-Nul: a\0b\r\n\r\n`, 400, 'BAD_REQUEST'],
    ['a space in the URL', `GET /api/si tes HTTP/1.1\r\nHost: a\r\n${auth}\r\n`, 400, 'BAD_REQUEST'],
    ['not HTTP at all', 'HELLO\r\n\r\n', 400, 'BAD_REQUEST'],
    ['a bad Content-Length', `POST /api/sites HTTP/1.1\r\nHost: a\r\n${auth}Content-Length: x\r\n\r\n`, 400, 'BAD_REQUEST']
  ]
  for (const [name, bytes, status, code] of cases) {
    const res = await raw(bytes)
    t.equal(res.status, status, `${name}: ${status}`)
    t.match(res.headers, /content-type: application\/json/i)
    t.match(JSON.parse(res.body), { statusCode: status, code, error: /\w/, message: /\w/ }, `${name}: ${code} in the error shape`)
  }
  t.equal((await call(app, 'GET', '/health')).statusCode, 200, 'and the server carries on')
})

/**
 * Sends `times` POSTs of a JSON body of about `megabytes` MB (over BODY_LIMIT, 1 MiB here)
 * from a process of its own, as a client on another machine would: in this process, the
 * server could not close the connection while the client still writes. `fetch`, or
 * node:http as curl sends it (Expect: 100-continue, then the body once told to go on).
 * Gives each reply's code, or how the request failed.
 */
function sendTooLarge (client: 'fetch' | 'expect-continue', megabytes: number, times: number): Promise<string[]> {
  const script = `
    import http from 'node:http'
    const [url, token, client, megabytes, times] = process.argv.slice(1)
    const body = JSON.stringify({ name: 'x'.repeat(Number(megabytes) * 1024 * 1024) })
    const headers = { authorization: 'Bearer ' + token, 'content-type': 'application/json' }
    const viaFetch = () => fetch(url, { method: 'POST', headers, body }).then((res) => res.json()).then((b) => b.code)
    const viaHttp = () => new Promise((resolve, reject) => {
      const request = http.request(url, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body), expect: '100-continue' } }, (res) => {
        let text = ''
        res.on('data', (chunk) => { text += chunk })
        res.on('end', () => resolve(JSON.parse(text).code))
      })
      request.on('continue', () => request.end(body))
      request.on('error', reject)
    })
    const codes = []
    for (let i = 0; i < Number(times); i++) {
      codes.push(await (client === 'fetch' ? viaFetch() : viaHttp()).catch((error) => 'failed: ' + (error.cause?.code ?? error.code ?? error.message)))
    }
    console.log(JSON.stringify(codes))`
  return new Promise((resolve, reject) => {
    execFile(...untapped(process.execPath, ['--input-type=module', '-e', script, `${base}/api/sites`, app.adminToken, client, String(megabytes), String(times)]),
      { maxBuffer: 1024 * 1024 }, (error, stdout) => { if (error) reject(new Error(error.message)); else resolve(JSON.parse(stdout) as string[]) })
  })
}

t.test('a body over the limit is answered 413 even to a client still sending it (the rest is read and dropped)', async (t) => {
  const refused = (n: number) => Array<string>(n).fill('PAYLOAD_TOO_LARGE')
  t.same(await sendTooLarge('fetch', 3, 10), refused(10), 'fetch, 3 MB: the 413 every time')
  // Big enough that the socket's buffers cannot hold the rest: without the lingering read,
  // the server's close resets the connection under the sender (EPIPE).
  t.same(await sendTooLarge('fetch', 32, 2), refused(2), 'fetch, 32 MB: the 413 every time')
  t.same(await sendTooLarge('expect-continue', 3, 10), refused(10), 'Expect: 100-continue (as curl sends it), 3 MB: the 413 every time')
  t.equal((await call(app, 'GET', '/api/sites?limit=1')).statusCode, 200, 'and the server goes on serving')
})

t.test('site ids stop at 2^53 - 1: none beyond is ever issued or accepted', async (t) => {
  const max = 9007199254740991
  t.equal((await call(app, 'PUT', `/api/sites/${max + 1}`, { name: 'too far' })).statusCode, 400, 'PUT beyond: 400')
  t.equal((await call(app, 'GET', `/api/resources?site_id=${max + 1}`)).statusCode, 400, 'a query beyond: 400')
  t.equal((await call(app, 'POST', '/api/cars', { name: 'far', site_id: max + 1 })).statusCode, 400, 'a body beyond: 400')
  const edge = await call(app, 'PUT', `/api/sites/${max}`, { name: 'the last id' })
  t.equal(edge.statusCode, 201, 'PUT of the largest id itself is fine')
  t.equal(edge.json().id, max)
  for (let i = 0; i < 2; i++) {
    const next = await call(app, 'POST', '/api/sites', { name: `after the last ${i}` })
    t.equal(next.statusCode, 409, 'a POST after it has no id left: 409')
    t.match(next.json(), { code: 'IDS_EXHAUSTED', message: /choose ids with PUT/ })
  }
  t.same((await sql(app, 'SELECT count(*)::int AS n FROM site WHERE id > $1', [String(max)])), [{ n: 0 }], 'nothing stored beyond')
  t.equal((await call(app, 'GET', `/api/sites/${max}`)).json().name, 'the last id', 'the largest site reads exactly')
  t.equal((await call(app, 'PUT', '/api/sites/17', { name: 'chosen' })).statusCode, 201, 'PUT still creates sites')
  await t.rejects(sql(app, 'INSERT INTO site (id, name) VALUES ($1, $2)', ['9007199254740992', 'by hand']), /site_id_range/, 'psql cannot store one beyond either')
})

t.test('an overloaded server sheds requests with 503 SERVER_BUSY, /health still answers', async (t) => {
  const busy = await buildTestApp(t, { env: { MAX_EVENT_LOOP_DELAY_MS: '50' } })
  // One long task is not overload: the requests after it are served.
  const until = Date.now() + 3000
  while (Date.now() < until) { /* one task holding the loop for 3 s */ }
  const after: number[] = []
  for (let i = 0; i < 25; i++) {
    after.push((await call(busy, 'GET', '/api/sites')).statusCode)
    await sleep(100)
  }
  t.same([...new Set(after)], [200], 'one long task sheds nothing')
  // Keep the event loop late by ~200 ms at every turn until a request is shed.
  let blocking = true
  const block = () => {
    const until = Date.now() + 200
    while (Date.now() < until) { /* busy */ }
    if (blocking) setImmediate(block)
  }
  setImmediate(block)
  let shed
  for (let tries = 0; tries < 100 && !shed; tries++) {
    const res = await call(busy, 'GET', '/api/sites')
    if (res.statusCode === 503) shed = res
  }
  const health = await call(busy, 'GET', '/health')
  blocking = false
  t.ok(shed, 'a request was shed')
  t.match(shed?.json(), { statusCode: 503, code: 'SERVER_BUSY', error: 'Service Unavailable', message: /overloaded/ })
  t.equal(shed?.headers['retry-after'], '1')
  t.equal(health.statusCode, 200, '/health answers while shedding')
  let served = false
  for (let tries = 0; tries < 50 && !served; tries++) {
    served = (await call(busy, 'GET', '/api/sites')).statusCode === 200
    if (!served) await sleep(100)
  }
  t.ok(served, 'requests are served again once the loop keeps up')
})
