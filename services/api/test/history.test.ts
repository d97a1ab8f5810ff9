import t from 'tap'
import { book, buildTestApp, call, createResource, sql } from './helpers.js'

// Seeded, so the mock data's own inserts are history too.
const app = await buildTestApp(t, { seed: true })

interface Event {
  id: number
  allocation_id: string
  operation: string
  at: string
  db_user: string
  application: string
  old: Record<string, unknown> | null
  new: Record<string, unknown> | null
}

const history = async (path: string): Promise<Event[]> => {
  const res = await call(app, 'GET', path)
  if (res.statusCode !== 200) throw new Error(`history not read: ${res.body}`)
  return res.json()
}

t.test('API changes: insert, move, confirm and cancel, oldest first, with the rows before and after', async (t) => {
  const car = await createResource(app, 'car')
  const created = (await book(app, car.id, '2030-01-01T09:00:00+02:00', '2030-01-01T10:00:00+02:00', { status: 'held', hold_seconds: 600, description: 'first' })).json()
  t.equal((await call(app, 'PATCH', `/api/allocations/${created.id}`, { starts_at: '2030-01-01T08:00:00Z', ends_at: '2030-01-01T09:30:00Z' })).statusCode, 200)
  t.equal((await call(app, 'PATCH', `/api/allocations/${created.id}`, { starts_at: '2030-01-01T08:00:00Z' })).statusCode, 200, 'a change that changes nothing')
  t.equal((await call(app, 'POST', `/api/allocations/${created.id}/confirm`)).statusCode, 200)
  t.equal((await call(app, 'DELETE', `/api/allocations/${created.id}`)).statusCode, 204)
  t.equal((await call(app, 'DELETE', `/api/allocations/${created.id}`)).statusCode, 204, 'a second cancel writes nothing')

  const events = await history(`/api/allocations/${created.id}/history`)
  t.same(events.map((e) => e.operation), ['insert', 'update', 'confirm', 'cancel'])
  t.ok(events.every((e, i) => i === 0 || (e.id > events[i - 1]!.id && Date.parse(e.at) >= Date.parse(events[i - 1]!.at))), 'oldest first')
  t.ok(events.every((e) => e.allocation_id === created.id && e.application === 'invsys-api' && e.db_user.length > 0))
  const [insert, move, confirm, cancel] = events
  t.equal(insert!.old, null)
  t.match(insert!.new, { id: created.id, status: 'held', starts_at: '2030-01-01T07:00:00Z', ends_at: '2030-01-01T08:00:00Z', description: 'first', expires_at: created.expires_at })
  t.match(move!.old, { starts_at: '2030-01-01T07:00:00Z', ends_at: '2030-01-01T08:00:00Z' })
  t.match(move!.new, { starts_at: '2030-01-01T08:00:00Z', ends_at: '2030-01-01T09:30:00Z', status: 'held' })
  t.match(confirm!.old, { status: 'held', expires_at: created.expires_at })
  t.match(confirm!.new, { status: 'confirmed', expires_at: null })
  t.match(cancel!.new, { status: 'cancelled', cancelled_at: /^\d{4}-\d\d-\d\dT[\d:.]+Z$/ })

  const nested = await history(`/api/cars/${car.id}/allocations/${created.id}/history`)
  t.same(nested, events, 'the per-type alias reads the same')
  const page = await call(app, 'GET', `/api/allocations/${created.id}/history?limit=2`)
  t.same(page.json().map((e: Event) => e.operation), ['insert', 'update'])
  t.equal(page.headers.link, `</api/allocations/${created.id}/history?limit=2&offset=2>; rel="next"`)
})

t.test('changes made by hand in psql are recorded too, in UTC whatever the session time zone', async (t) => {
  const car = await createResource(app, 'car')
  const created = (await book(app, car.id, '2030-02-01T09:00:00Z', '2030-02-01T10:00:00Z')).json()
  await sql(app, `SET application_name = 'psql'; SET TimeZone = 'Asia/Tokyo';
    UPDATE allocation SET during = tstzrange('2030-02-01 20:00+09', '2030-02-01 21:00+09'), description = 'moved by hand' WHERE id = '${created.id}';
    UPDATE allocation SET status = 'cancelled', cancelled_at = now() WHERE id = '${created.id}'`)
  const events = await history(`/api/allocations/${created.id}/history`)
  t.same(events.map((e) => [e.operation, e.application]), [['insert', 'invsys-api'], ['update', 'psql'], ['cancel', 'psql']])
  t.match(events[1]!.new, { starts_at: '2030-02-01T11:00:00Z', ends_at: '2030-02-01T12:00:00Z', description: 'moved by hand' })
  t.match(events[2]!.new, { status: 'cancelled' })
})

t.test('a run-out hold written as expired by a later booking is an expire event', async (t) => {
  const car = await createResource(app, 'car')
  const stale = (await book(app, car.id, '2030-03-01T09:00:00Z', '2030-03-01T10:00:00Z', { status: 'held', hold_seconds: 60 })).json()
  await sql(app, 'UPDATE allocation SET created_at = now() - interval \'2 hours\', expires_at = now() - interval \'1 hour\' WHERE id = $1', [stale.id])
  t.equal((await book(app, car.id, '2030-03-01T09:00:00Z', '2030-03-01T10:00:00Z')).statusCode, 201)
  const events = await history(`/api/allocations/${stale.id}/history`)
  t.same(events.map((e) => e.operation), ['insert', 'update', 'expire'])
  t.match(events[2], { old: { status: 'held' }, new: { status: 'expired' } })
})

t.test('the seeded data has history; deleting a resource records its allocations\' deletion', async (t) => {
  const [seeded] = await sql<{ id: string }>(app, 'SELECT id FROM allocation WHERE description = \'Downtown mapping run\'')
  t.same((await history(`/api/allocations/${seeded!.id}/history`)).map((e) => e.operation), ['insert'])
  const car = await createResource(app, 'car')
  const created = (await book(app, car.id, '2020-01-01T09:00:00Z', '2020-01-01T10:00:00Z')).json()
  t.equal((await call(app, 'DELETE', `/api/resources/${car.id}`)).statusCode, 204)
  const rows = await sql<{ operation: string, new_row: unknown }>(app, 'SELECT operation, new_row FROM allocation_event WHERE allocation_id = $1 ORDER BY id', [created.id])
  t.same(rows.map((r) => r.operation), ['insert', 'delete'])
  t.equal(rows[1]!.new_row, null)
  t.equal((await call(app, 'GET', `/api/allocations/${created.id}/history`)).statusCode, 404, 'the API answers for allocations that exist')
})

t.test('unknown or malformed allocations and bad paging are 4xx', async (t) => {
  t.equal((await call(app, 'GET', '/api/allocations/00000000-0000-4000-8000-000000000000/history')).statusCode, 404)
  const car = await createResource(app, 'car')
  const lorry = await createResource(app, 'lorry')
  const created = (await book(app, car.id, '2030-04-01T09:00:00Z', '2030-04-01T10:00:00Z')).json()
  t.equal((await call(app, 'GET', `/api/lorries/${lorry.id}/allocations/${created.id}/history`)).statusCode, 404)
  const bad = await call(app, 'GET', '/api/allocations/nope/history')
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /params\/id/)
  const extra = await call(app, 'GET', `/api/allocations/${created.id}/history?since=yesterday`)
  t.equal(extra.statusCode, 400)
  t.match(extra.json().message, /querystring\/since is not an accepted property/)
})

t.test('each event names the account that acted; psql changes name none', async (t) => {
  const { createAccount } = await import('./helpers.js')
  const member = await createAccount(app, 'member')
  const car = await createResource(app, 'car')
  const created = await call(app, 'POST', `/api/resources/${car.id}/allocations`,
    { starts_at: '2035-01-01T10:00:00Z', ends_at: '2035-01-01T11:00:00Z' }, { token: member.token })
  t.equal(created.statusCode, 201)
  const id = created.json().id
  t.equal((await call(app, 'PATCH', `/api/allocations/${id}`, { description: 'moved by the admin' })).statusCode, 200)
  await sql(app, "UPDATE allocation SET description = 'by hand' WHERE id = $1", [id])
  t.equal((await call(app, 'DELETE', `/api/allocations/${id}`, undefined, { token: member.token })).statusCode, 204)
  const me = (await call(app, 'GET', '/api/me')).json()
  const events = (await call(app, 'GET', `/api/allocations/${id}/history`)).json<Array<{ operation: string, actor_id: number | null }>>()
  t.same(events.map((e) => [e.operation, e.actor_id]), [
    ['insert', member.id],
    ['update', me.id],
    ['update', null],
    ['cancel', member.id]
  ])
  // Book-any-free names its actor in the same statement as its insert, as a booking does.
  const anyCar = await call(app, 'POST', '/api/allocations',
    { type: 'car', starts_at: '2035-02-01T10:00:00Z', ends_at: '2035-02-01T11:00:00Z' }, { token: member.token })
  t.equal(anyCar.statusCode, 201)
  const anyEvents = (await call(app, 'GET', `/api/allocations/${anyCar.json().id}/history`)).json<Array<{ operation: string, actor_id: number | null }>>()
  t.same(anyEvents.map((e) => [e.operation, e.actor_id]), [['insert', member.id]])
})
