import t, { type Test } from 'tap'
import { book, buildTestApp, call, createResource, createSite, fetchJson, listen, sql } from './helpers.js'

// resource_gap (migration 016) keeps each resource's free time so that the searches of a
// nearly booked-out fleet read only what is free. It is derived data: these tests hold it
// to what the allocations say, after every kind of change, and check the answers the
// searches give from it.
const app = await buildTestApp(t)

// Each resource's gaps as the allocations say they are: all time less its confirmed
// allocations widened by their own buffers; `wrong` lists every row where resource_gap
// differs (missing from it, or extra in it).
const DIFFERENCES = `
  WITH truth AS (
    SELECT r.id AS resource_id, r.type, gap AS during
    FROM resource r
    CROSS JOIN LATERAL unnest('{(,)}'::tstzmultirange - coalesce((
      SELECT range_agg(allocation_blocked_range(a.during, a.buffer_before, a.buffer_after))
      FROM allocation a WHERE a.resource_id = r.id AND a.status = 'confirmed'), '{}')) AS gap
  ), wrong AS (
    (SELECT 'missing' AS what, * FROM truth EXCEPT ALL SELECT 'missing', * FROM resource_gap)
    UNION ALL
    (SELECT 'extra', * FROM resource_gap EXCEPT ALL SELECT 'extra', * FROM truth)
  )
  SELECT (SELECT count(*) FROM resource_gap)::int AS kept, json_agg(wrong) AS wrong FROM wrong`

async function keptRight (t: Test, after: string): Promise<void> {
  const [row] = await sql<{ kept: number, wrong: unknown[] | null }>(app, DIFFERENCES)
  t.same(row!.wrong, null, `after ${after}: resource_gap is each resource's free time (${row!.kept} rows)`)
}

t.test('the kept free time follows every kind of change to allocations and resources', async (t) => {
  const site = await createSite(app)
  const [a, b] = [await createResource(app, 'lorry', { site_id: site.id }), await createResource(app, 'lorry', { site_id: site.id })]
  await keptRight(t, 'creating two lorries')
  const [before] = await sql<{ n: number }>(app, 'SELECT count(*)::int AS n FROM resource_gap WHERE resource_id = $1 AND during = \'(,)\'', [a.id])
  t.equal(before!.n, 1, 'a new resource is free all the time')

  const first = (await book(app, a.id, '2030-03-01T10:00:00Z', '2030-03-01T12:00:00Z')).json()
  await book(app, a.id, '2030-03-01T12:00:00Z', '2030-03-01T13:00:00Z')
  await book(app, a.id, '2030-03-02T08:00:00Z', null)
  await keptRight(t, 'bookings back to back, and one until further notice')

  t.equal((await call(app, 'PATCH', `/api/allocations/${first.id as string}`, { starts_at: '2030-03-01T09:00:00Z', ends_at: '2030-03-01T11:00:00Z' })).statusCode, 200)
  await keptRight(t, 'moving a booking within its resource')
  await sql(app, 'UPDATE allocation SET resource_id = $2 WHERE id = $1', [first.id, b.id])
  await keptRight(t, 'moving a booking to another resource (psql)')
  t.equal((await call(app, 'PATCH', `/api/allocations/${first.id as string}`, { description: 'only words' })).statusCode, 200)
  await keptRight(t, 'a change that moves nothing')

  const hold = (await book(app, b.id, '2030-03-05T10:00:00Z', '2030-03-05T11:00:00Z', { status: 'held', hold_seconds: 600 })).json()
  const [held] = await sql<{ n: number }>(app, 'SELECT count(*)::int AS n FROM resource_gap WHERE resource_id = $1 AND during @> tstzrange(\'2030-03-05 10:00Z\', \'2030-03-05 11:00Z\')', [b.id])
  t.equal(held!.n, 1, 'a hold is not taken out of the free time: it runs out unwritten')
  t.equal((await call(app, 'POST', `/api/allocations/${hold.id as string}/confirm`)).statusCode, 200)
  await keptRight(t, 'confirming a hold')
  t.equal((await call(app, 'DELETE', `/api/allocations/${hold.id as string}`)).statusCode, 204)
  await keptRight(t, 'cancelling')
  await sql(app, 'DELETE FROM allocation WHERE id = $1', [first.id])
  await keptRight(t, 'deleting')

  t.equal((await call(app, 'PUT', '/api/resource-types/lorry/rules', { buffer_before: 'PT30M', buffer_after: 'PT15M' })).statusCode, 200)
  await book(app, b.id, '2030-03-06T10:00:00Z', '2030-03-06T11:00:00Z')
  const [widened] = await sql<{ during: string }>(app, 'SELECT during::text FROM resource_gap WHERE resource_id = $1 AND during && tstzrange(\'2030-03-06 09:00Z\', \'2030-03-06 12:00Z\') ORDER BY during LIMIT 1', [b.id])
  t.match(widened!.during, /2030-03-06 09:30:00\+00"\)$/, 'a booking takes its buffers out of the free time too')
  t.equal((await call(app, 'PUT', '/api/resource-types/lorry/rules', {})).statusCode, 200)
  await keptRight(t, 'a booking with buffers')

  // psql: several rows in one statement, a change of type, a resource deleted with its bookings.
  await sql(app, 'UPDATE allocation SET during = tstzrange(lower(during) - interval \'1 day\', upper(during) - interval \'1 day\') WHERE resource_id = $1 AND upper(during) IS NOT NULL', [a.id])
  await keptRight(t, 'one UPDATE moving several allocations')
  await sql(app, 'UPDATE allocation SET status = \'cancelled\', cancelled_at = now() WHERE resource_id = ANY ($1::uuid[]) AND upper(during) IS NULL', [[a.id, b.id]])
  await keptRight(t, 'one UPDATE cancelling')
  await sql(app, 'UPDATE resource SET type = \'truck\' WHERE id = $1', [b.id])
  await keptRight(t, 'a resource changing type')
  t.equal((await call(app, 'DELETE', `/api/resources/${a.id}?force=true`)).statusCode, 204)
  await keptRight(t, 'deleting a resource with its bookings')
  const [gone] = await sql<{ n: number }>(app, 'SELECT count(*)::int AS n FROM resource_gap WHERE resource_id = $1', [a.id])
  t.equal(gone!.n, 0, 'a deleted resource keeps no free time')

  await sql(app, 'TRUNCATE allocation CASCADE')
  await keptRight(t, 'TRUNCATE allocation')
  await sql(app, 'UPDATE resource_gap SET during = \'empty\' WHERE resource_id = $1', [b.id])
  const [rebuilt] = await sql<{ n: number }>(app, 'SELECT resource_gap_rebuild(ARRAY[$1::uuid])::int AS n', [b.id])
  t.equal(rebuilt!.n, 1, 'resource_gap_rebuild() writes a resource\'s gaps afresh')
  await keptRight(t, 'resource_gap_rebuild()')
})

t.test('parallel clients booking, moving and cancelling on two resources leave the free time right', async (t) => {
  const site = await createSite(app)
  const lorries = [await createResource(app, 'lorry', { site_id: site.id }), await createResource(app, 'lorry', { site_id: site.id })]
  const base = await listen(app)
  const headers = { authorization: `Bearer ${app.adminToken}` }
  const hour = (h: number) => new Date(Date.UTC(2030, 4, 1, h)).toISOString()
  // 24 clients at once, each booking one hour of the same day on one lorry (some take the
  // same hour: the constraint refuses all but one), then half of them cancel or move theirs.
  const made = await Promise.all(Array.from({ length: 24 }, async (_, k) =>
    await fetchJson(`${base}/api/resources/${lorries[k % 2]!.id}/allocations`, 'POST', { starts_at: hour(k % 18), ends_at: hour(k % 18 + 1) }, headers)))
  t.same([...new Set(made.map((r) => r.status))].sort(), [201, 409], 'some booked, the clashes refused')
  await keptRight(t, 'parallel bookings')
  const booked = made.filter((r) => r.status === 201).map((r) => r.body as { id: string })
  await Promise.all(booked.map(async (row, k) => k % 3 === 0
    ? await fetchJson(`${base}/api/allocations/${row.id}`, 'DELETE', undefined, headers)
    : k % 3 === 1
      ? await fetchJson(`${base}/api/allocations/${row.id}`, 'PATCH', { starts_at: hour(19 + (k % 5)), ends_at: hour(20 + (k % 5)) }, headers)
      : undefined))
  await keptRight(t, 'parallel cancels and moves')
})

t.test('a fleet nearly all out: available resources, slots and book-any find the few free ones', async (t) => {
  const site = await createSite(app)
  const name = (n: number) => `fleet-${String(n).padStart(2, '0')}`
  const fleet = []
  for (let n = 0; n < 40; n++) fleet.push(await createResource(app, 'car', { name: name(n), site_id: site.id }))
  const day = '2030-06-10'
  // Every car busy 01:00 to 03:00, except: 07 is free (a gap open at both ends); 13 is
  // only held (still busy); 21's hold has run out (free); 30 and 33 are free from 00:45
  // (a gap open at the end), but 30 has a buffer of 30 minutes before its bookings (so
  // not free from 01:00) and 33 follows the type (none); 35 is free from 00:45 to 04:00
  // (a bounded gap); 38 until 02:30 (a gap open at the start).
  const bookings: Record<number, Array<[string, string]>> = { 7: [], 30: [['00:00', '00:45']], 33: [['00:00', '00:45']], 35: [['00:00', '00:45'], ['04:00', '05:00']], 38: [['02:30', '05:00']] }
  for (const [n, car] of fleet.entries()) {
    const status = n === 13 || n === 21 ? { status: 'held', hold_seconds: 600 } : {}
    for (const [from, to] of bookings[n] ?? [['01:00', '03:00']]) {
      t.equal((await book(app, car.id, `${day}T${from}:00Z`, `${day}T${to}:00Z`, status)).statusCode, 201)
    }
  }
  await sql(app, 'UPDATE allocation SET created_at = now() - interval \'20 minutes\', expires_at = now() - interval \'1 minute\' WHERE resource_id = $1', [fleet[21]!.id])
  t.equal((await call(app, 'PUT', `/api/resources/${fleet[30]!.id}/rules`, { buffer_before: 'PT30M' })).statusCode, 200)
  const free = [name(7), name(21), name(33), name(35), name(38)]

  // Pages of two, so that the short walk in name order (a few resources per row) cannot
  // fill them and the search of the whole fleet answers.
  const window = `available_from=${day}T01:00:00Z&available_to=${day}T02:00:00Z`
  for (const [label, query] of [['of the type', `type=car&site_id=${site.id}`], ['of any type', `site_id=${site.id}`]]) {
    const pages = await Promise.all([0, 2, 4].map(async (offset) => await call(app, 'GET', `/api/resources?${query}&${window}&limit=2&offset=${offset}`)))
    t.same(pages.map((p) => p.statusCode), [200, 200, 200])
    t.same(pages.flatMap((p) => p.json().map((r: { name: string }) => r.name)), free, `available resources ${label}`)
  }
  const slots = [0, 2, 4].map(async (offset) =>
    await call(app, 'GET', `/api/slots?type=car&site_id=${site.id}&from=${day}T01:00:00Z&to=${day}T02:00:00Z&duration=PT1H&limit=2&offset=${offset}`))
  t.same((await Promise.all(slots)).flatMap((p) => p.json().map((s: { resource_name: string, starts_at: string }) => [s.resource_name, s.starts_at])),
    free.map((n) => [n, `${day}T01:00:00Z`]), 'slots at the window\'s start')

  const booked = []
  for (let k = 0; k < free.length + 1; k++) {
    const any = await call(app, 'POST', '/api/allocations', { type: 'car', site_id: site.id, starts_at: `${day}T01:00:00Z`, ends_at: `${day}T02:00:00Z` })
    booked.push(any.statusCode === 201 ? fleet.find((c) => c.id === any.json().resource_id)!.name : any.statusCode)
  }
  t.same(booked, [...free, 409], 'book-any takes the free ones by name, then refuses')
})
