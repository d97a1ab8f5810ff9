import t from 'tap'
import { bearer, buildTestApp, createResource } from './helpers.js'

const app = await buildTestApp(t)
await app.listen({ port: 0, host: '127.0.0.1' })
const { port } = app.server.address() as { port: number }
const base = `http://127.0.0.1:${port}`

async function post (path: string, body: unknown): Promise<{ status: number, body: { id?: string, code?: string } }> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(app.adminToken) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(20_000)
  })
  return { status: res.status, body: await res.json() as { id?: string, code?: string } }
}

/** Deadlocks PostgreSQL has detected in this database: each would have cost a client a deadlock_timeout stall. */
async function deadlocks (): Promise<number> {
  const { rows } = await app.pg.pool.query<{ deadlocks: string }>(
    'SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()')
  return Number(rows[0]!.deadlocks)
}

t.test('50 identical bookings in parallel over HTTP: exactly one wins, 49 get 409', async (t) => {
  const car = await createResource(app, 'car')
  const deadlocksBefore = await deadlocks()
  const body = { starts_at: '2030-07-01T09:00:00Z', ends_at: '2030-07-01T17:00:00Z' }
  const results = await Promise.all(Array.from({ length: 50 }, () => post(`/api/resources/${car.id}/allocations`, body)))
  const statuses = results.map((r) => r.status)
  t.equal(statuses.filter((s) => s === 201).length, 1, 'one 201')
  t.equal(statuses.filter((s) => s === 409).length, 49, '49 409s, and nothing else')
  t.ok(results.filter((r) => r.status === 409).every((r) => r.body.code === 'ALLOCATION_CONFLICT'), 'every loser hears why')
  const { rows } = await app.pg.pool.query('SELECT count(*)::int AS n FROM allocation WHERE resource_id = $1', [car.id])
  t.equal(rows[0].n, 1, 'one row in the database')
  t.equal(await deadlocks() - deadlocksBefore, 0, 'no deadlock was detected (no deadlock_timeout stall)')
})

t.test('40 overlapping, staggered bookings in parallel: the winners never overlap', async (t) => {
  const truck = await createResource(app, 'truck')
  // Two-hour windows starting every 30 minutes: each overlaps its three neighbours on each side.
  const windows = Array.from({ length: 40 }, (_, i) => {
    const start = Date.UTC(2030, 7, 1, 0, 0) + i * 30 * 60_000
    return { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 2 * 3600_000).toISOString() }
  })
  const results = await Promise.all(windows.map((w) => post(`/api/resources/${truck.id}/allocations`, w)))
  t.ok(results.every((r) => r.status === 201 || r.status === 409), 'only 201 and 409')
  const { rows } = await app.pg.pool.query<{ overlaps: number, total: number }>(`
    SELECT (SELECT count(*) FROM allocation a JOIN allocation b
              ON a.resource_id = b.resource_id AND a.id < b.id AND a.during && b.during
            WHERE a.resource_id = $1)::int AS overlaps,
           (SELECT count(*) FROM allocation WHERE resource_id = $1)::int AS total`, [truck.id])
  t.equal(rows[0]!.overlaps, 0, 'no two stored allocations overlap')
  t.equal(rows[0]!.total, results.filter((r) => r.status === 201).length, 'every 201 is a stored row')
  // Each winner blocks at most 7 of the 40 windows (itself and three each side), so at
  // least 6 must win however the race goes; at most 10 fit side by side.
  t.ok(rows[0]!.total >= 6 && rows[0]!.total <= 10, `between 6 and 10 won (${rows[0]!.total})`)
})

t.test('parallel moves into one free slot: one succeeds', async (t) => {
  const car = await createResource(app, 'car')
  const ids: string[] = []
  for (let i = 0; i < 10; i++) {
    const start = Date.UTC(2030, 8, 1, i)
    const res = await post(`/api/resources/${car.id}/allocations`, { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 3600_000).toISOString() })
    ids.push(res.body.id!)
  }
  const target = { starts_at: '2030-09-02T09:00:00Z', ends_at: '2030-09-02T10:00:00Z' }
  const results = await Promise.all(ids.map((id) => fetch(`${base}/api/allocations/${id}`, {
    method: 'PATCH', headers: { 'content-type': 'application/json', ...bearer(app.adminToken) }, body: JSON.stringify(target), signal: AbortSignal.timeout(20_000)
  })))
  const statuses = results.map((r) => r.status)
  t.equal(statuses.filter((s) => s === 200).length, 1)
  t.equal(statuses.filter((s) => s === 409).length, 9)
})
