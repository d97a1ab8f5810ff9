import t from 'tap'
import { book, buildTestApp, call, createResource, fetchJson, listen, sleep, sql } from './helpers.js'

const app = await buildTestApp(t)

const hold = (resourceId: string, startsAt: string, endsAt: string, seconds = 600, extra: Record<string, unknown> = {}) =>
  book(app, resourceId, startsAt, endsAt, { status: 'held', hold_seconds: seconds, ...extra })

/** The constraint a psql statement was refused by. */
const refusedBy = (statement: Promise<unknown>) => statement.then(() => 'accepted', (error: { constraint?: string }) => error.constraint)

/** Makes a hold look as if it ran out an hour ago, without sleeping, the way psql could. */
async function backdate (allocationId: string): Promise<void> {
  await sql(app, 'UPDATE allocation SET created_at = now() - interval \'2 hours\', expires_at = now() - interval \'1 hour\' WHERE id = $1', [allocationId])
}

t.test('a hold blocks its slot like a confirmed booking until it is confirmed', async (t) => {
  const car = await createResource(app, 'car')
  const before = Date.now()
  const res = await hold(car.id, '2030-03-01T09:00:00Z', '2030-03-01T11:00:00Z', 600)
  t.equal(res.statusCode, 201)
  const held = res.json()
  t.match(held, { status: 'held', cancelled_at: null, expires_at: /Z$/ })
  const expiresIn = Date.parse(held.expires_at) - before
  t.ok(expiresIn > 590_000 && expiresIn < 610_000, `expires about 600 s later (${expiresIn} ms)`)

  const clash = await book(app, car.id, '2030-03-01T10:00:00Z', '2030-03-01T12:00:00Z')
  t.equal(clash.statusCode, 409)
  t.equal(clash.json().code, 'ALLOCATION_CONFLICT')
  t.same(clash.json().conflicts.map((a: { id: string }) => a.id), [held.id])
  const available = await call(app, 'GET', '/api/cars?available_from=2030-03-01T10:00:00Z&available_to=2030-03-01T10:30:00Z&limit=1000')
  t.notOk(available.json().some((r: { id: string }) => r.id === car.id), 'not available while held')

  const confirmed = await call(app, 'POST', `/api/allocations/${held.id}/confirm`)
  t.equal(confirmed.statusCode, 200)
  t.match(confirmed.json(), { id: held.id, status: 'confirmed', expires_at: null, starts_at: '2030-03-01T09:00:00Z' })
  const again = await call(app, 'POST', `/api/allocations/${held.id}/confirm`, {})
  t.equal(again.statusCode, 409)
  t.equal(again.json().code, 'ALREADY_CONFIRMED')
})

t.test('confirming: per-type and nested paths, cancelled, unknown and malformed', async (t) => {
  const car = await createResource(app, 'car')
  const held = (await hold(car.id, '2030-03-02T09:00:00Z', '2030-03-02T10:00:00Z')).json()
  const lorry = await createResource(app, 'lorry')
  t.equal((await call(app, 'POST', `/api/lorries/${lorry.id}/allocations/${held.id}/confirm`)).statusCode, 404, 'not this lorry\'s')
  t.equal((await call(app, 'POST', `/api/allocations/${held.id}/confirm`, { please: true })).statusCode, 400, 'no fields accepted')
  const viaType = await call(app, 'POST', `/api/cars/${car.id}/allocations/${held.id}/confirm`)
  t.equal(viaType.statusCode, 200)
  t.equal(viaType.json().status, 'confirmed')

  const other = (await hold(car.id, '2030-03-03T09:00:00Z', '2030-03-03T10:00:00Z')).json()
  t.equal((await call(app, 'DELETE', `/api/allocations/${other.id}`)).statusCode, 204)
  const cancelled = (await call(app, 'GET', `/api/allocations/${other.id}`)).json()
  t.match(cancelled, { status: 'cancelled', expires_at: null, cancelled_at: /Z$/ })
  const res = await call(app, 'POST', `/api/allocations/${other.id}/confirm`)
  t.equal(res.statusCode, 409)
  t.equal(res.json().code, 'ALLOCATION_CANCELLED')
  t.equal((await call(app, 'POST', '/api/allocations/00000000-0000-4000-8000-000000000000/confirm')).statusCode, 404)
  const bad = await call(app, 'POST', '/api/allocations/not-a-uuid/confirm')
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /params\/id/)
})

t.test('bad hold input is a 400 naming the field', async (t) => {
  const car = await createResource(app, 'car')
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ status: 'held' }, /body\/hold_seconds is required/],
    [{ status: 'held', hold_seconds: 0 }, /body\/hold_seconds/],
    [{ status: 'held', hold_seconds: -5 }, /body\/hold_seconds/],
    [{ status: 'held', hold_seconds: 3601 }, /body\/hold_seconds/],
    [{ status: 'held', hold_seconds: 1.5 }, /body\/hold_seconds/],
    [{ status: 'held', hold_seconds: '60' }, /body\/hold_seconds/],
    [{ hold_seconds: 60 }, /body\/hold_seconds is allowed only with status held/],
    [{ status: 'confirmed', hold_seconds: 60 }, /body\/hold_seconds is allowed only with status held/],
    [{ status: 'expired' }, /body\/status must be one of confirmed, held/],
    [{ status: 'cancelled' }, /body\/status/],
    [{ expires_at: '2030-01-01T00:00:00Z' }, /body\/expires_at is not an accepted property/]
  ]
  for (const [extra, message] of cases) {
    const res = await book(app, car.id, '2030-04-01T09:00:00Z', '2030-04-01T10:00:00Z', extra)
    t.equal(res.statusCode, 400, JSON.stringify(extra))
    t.match(res.json(), { code: /VALIDATION_ERROR|BAD_REQUEST/, message }, JSON.stringify(extra))
  }
  t.equal((await hold(car.id, '2030-04-01T09:00:00Z', '2030-04-01T10:00:00Z', 3600)).statusCode, 201, 'an hour is the longest hold')
})

t.test('a hold that runs out stops blocking with nothing written, and can no longer be confirmed', async (t) => {
  const car = await createResource(app, 'car')
  const held = (await hold(car.id, '2030-05-01T09:00:00Z', '2030-05-01T11:00:00Z', 1)).json()
  t.equal(held.status, 'held')
  await sleep(1100)

  const read = (await call(app, 'GET', `/api/allocations/${held.id}`)).json()
  t.match(read, { status: 'expired', expires_at: held.expires_at })
  const [row] = await sql(app, 'SELECT status FROM allocation WHERE id = $1', [held.id])
  t.equal(row!.status, 'held', 'the row itself has not been written')
  const expiredList = (await call(app, 'GET', `/api/resources/${car.id}/allocations?status=expired`)).json()
  t.same(expiredList.map((a: { id: string }) => a.id), [held.id])
  t.same((await call(app, 'GET', `/api/resources/${car.id}/allocations?status=held`)).json(), [])
  t.same((await call(app, 'GET', `/api/allocations?resource_id=${car.id}&status=held`)).json(), [])
  const available = await call(app, 'GET', '/api/cars?available_from=2030-05-01T10:00:00Z&available_to=2030-05-01T10:30:00Z&limit=1000')
  t.ok(available.json().some((r: { id: string }) => r.id === car.id), 'available again')

  const confirm = await call(app, 'POST', `/api/allocations/${held.id}/confirm`)
  t.equal(confirm.statusCode, 409)
  t.equal(confirm.json().code, 'HOLD_EXPIRED')
  const move = await call(app, 'PATCH', `/api/allocations/${held.id}`, { description: 'late' })
  t.equal(move.statusCode, 409)
  t.equal(move.json().code, 'HOLD_EXPIRED')
  t.equal((await call(app, 'DELETE', `/api/allocations/${held.id}`)).statusCode, 204, 'cancelling what no longer blocks is still 204')
  t.equal((await call(app, 'GET', `/api/allocations/${held.id}`)).json().status, 'expired', 'and leaves it expired')

  const over = await book(app, car.id, '2030-05-01T10:00:00Z', '2030-05-01T12:00:00Z')
  t.equal(over.statusCode, 201, 'a booking over the run-out hold succeeds')
  const [after] = await sql(app, 'SELECT status, expires_at IS NOT NULL AS has_expiry FROM allocation WHERE id = $1', [held.id])
  t.same(after, { status: 'expired', has_expiry: true }, 'and writes the hold as expired, kept as history')
})

t.test('moving an allocation onto a run-out hold succeeds; a live hold refuses it', async (t) => {
  const car = await createResource(app, 'car')
  const stale = (await hold(car.id, '2030-06-01T09:00:00Z', '2030-06-01T10:00:00Z')).json()
  const live = (await hold(car.id, '2030-06-02T09:00:00Z', '2030-06-02T10:00:00Z')).json()
  await backdate(stale.id)
  const booking = (await book(app, car.id, '2030-06-03T09:00:00Z', '2030-06-03T10:00:00Z')).json()
  const ontoLive = await call(app, 'PATCH', `/api/allocations/${booking.id}`, { starts_at: '2030-06-02T09:30:00Z', ends_at: '2030-06-02T10:30:00Z' })
  t.equal(ontoLive.statusCode, 409)
  t.same(ontoLive.json().conflicts.map((a: { id: string }) => a.id), [live.id])
  const ontoStale = await call(app, 'PATCH', `/api/allocations/${booking.id}`, { starts_at: '2030-06-01T09:30:00Z', ends_at: '2030-06-01T10:30:00Z' })
  t.equal(ontoStale.statusCode, 200)
  t.equal((await call(app, 'GET', `/api/allocations/${stale.id}`)).json().status, 'expired')
  const heldMoved = await call(app, 'PATCH', `/api/allocations/${live.id}`, { ends_at: '2030-06-02T11:00:00Z' })
  t.equal(heldMoved.statusCode, 200, 'a live hold can be moved')
  t.match(heldMoved.json(), { status: 'held', expires_at: live.expires_at, ends_at: '2030-06-02T11:00:00Z' })
})

t.test('psql follows the same rules: inserting over a run-out hold works, confirming it by hand does not', async (t) => {
  const car = await createResource(app, 'car')
  const stale = (await hold(car.id, '2030-07-01T09:00:00Z', '2030-07-01T10:00:00Z')).json()
  await backdate(stale.id)
  t.equal(await refusedBy(sql(app, 'UPDATE allocation SET status = \'confirmed\', expires_at = NULL WHERE id = $1', [stale.id])), 'allocation_hold_expired')
  await sql(app, 'INSERT INTO allocation (resource_id, during) VALUES ($1, tstzrange(\'2030-07-01 09:00Z\', \'2030-07-01 10:00Z\'))', [car.id])
  const [row] = await sql(app, 'SELECT status FROM allocation WHERE id = $1', [stale.id])
  t.equal(row!.status, 'expired')
  t.equal(await refusedBy(sql(app, 'UPDATE allocation SET status = \'held\' WHERE id = $1', [stale.id])), 'allocation_status_transition')
  t.equal(await refusedBy(sql(app, 'INSERT INTO allocation (resource_id, during, status, expires_at) VALUES ($1, tstzrange(\'2030-07-02 09:00Z\', \'2030-07-02 10:00Z\'), \'held\', now() + interval \'2 hours\')', [car.id])), 'allocation_hold_length')
  t.equal(await refusedBy(sql(app, 'INSERT INTO allocation (resource_id, during, status) VALUES ($1, tstzrange(\'2030-07-02 09:00Z\', \'2030-07-02 10:00Z\'), \'held\')', [car.id])), 'allocation_expires_at_matches_status')
})

t.test('a run-out hold does not keep its resource from being deleted', async (t) => {
  const car = await createResource(app, 'car')
  const stale = (await hold(car.id, '2030-08-01T09:00:00Z', '2030-08-01T10:00:00Z')).json()
  const live = (await hold(car.id, '2030-08-02T09:00:00Z', '2030-08-02T10:00:00Z')).json()
  await backdate(stale.id)
  t.equal((await call(app, 'DELETE', `/api/resources/${car.id}`)).statusCode, 409, 'the live hold still counts')
  t.equal((await call(app, 'DELETE', `/api/allocations/${live.id}`)).statusCode, 204)
  t.equal((await call(app, 'DELETE', `/api/resources/${car.id}`)).statusCode, 204)
})

t.test('the status filter takes every status, and refuses others', async (t) => {
  for (const status of ['held', 'confirmed', 'cancelled', 'expired', 'all']) {
    t.equal((await call(app, 'GET', `/api/allocations?status=${status}`)).statusCode, 200, status)
  }
  const bad = await call(app, 'GET', '/api/allocations?status=pending')
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /querystring\/status must be one of held, confirmed, cancelled, expired, all/)
})

t.test('parallel bookings over one run-out hold: exactly one wins, the rest are 409, none fail', async (t) => {
  const car = await createResource(app, 'car')
  const stale = (await hold(car.id, '2030-09-01T09:00:00Z', '2030-09-01T12:00:00Z')).json()
  await backdate(stale.id)
  const base = await listen(app)
  const replies = await Promise.all(Array.from({ length: 12 }, (_, i) =>
    fetchJson(`${base}/api/resources/${car.id}/allocations`, 'POST', {
      starts_at: `2030-09-01T${String(9 + (i % 3)).padStart(2, '0')}:00:00Z`, ends_at: '2030-09-01T12:30:00Z'
    })))
  const statuses = replies.map((r) => r.status).sort()
  t.equal(statuses.filter((s) => s === 201).length, 1, `one 201 (${statuses.join(',')})`)
  t.equal(statuses.filter((s) => s === 409).length, 11)
  const live = await sql(app, 'SELECT count(*)::int AS n FROM allocation WHERE resource_id = $1 AND allocation_blocks(status, expires_at)', [car.id])
  t.equal(live[0]!.n, 1)
})
