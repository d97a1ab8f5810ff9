import t from 'tap'
import { buildTestApp, call, createAccount, createResource } from './helpers.js'

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const other = await createAccount(app, 'member')
const adminId = (await call(app, 'GET', '/api/me')).json().id as number
const as = (token: string) => ({ token })

let hour = 0
/** A fresh one-hour slot each time, so bookings in these tests never collide by accident. */
function slot (): { starts_at: string, ends_at: string } {
  hour += 1
  const start = Date.UTC(2031, 0, 1) + hour * 3600_000
  return { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 3600_000).toISOString() }
}

const car = await createResource(app, 'car')

/** The row as stored, to prove a refused request changed nothing. */
const stored = async (id: string) => (await app.pg.pool.query('SELECT * FROM allocation WHERE id = $1', [id])).rows[0]

t.test('a member owns what it books; owner_id and updated_by are the database\'s, not the body\'s', async (t) => {
  const res = await call(app, 'POST', `/api/resources/${car.id}/allocations`, slot(), as(member.token))
  t.equal(res.statusCode, 201)
  t.match(res.json(), { owner_id: member.id, updated_by: member.id, kind: 'booking' })
  for (const field of ['owner_id', 'updated_by']) {
    const post = await call(app, 'POST', `/api/resources/${car.id}/allocations`, { ...slot(), [field]: other.id }, as(member.token))
    t.equal(post.statusCode, 400, `POST with ${field}: 400`)
    t.match(post.json().message, new RegExp(`body/${field} is not an accepted property`))
    const patch = await call(app, 'PATCH', `/api/allocations/${res.json().id}`, { [field]: other.id }, as(member.token))
    t.equal(patch.statusCode, 400, `PATCH with ${field}: 400`)
  }
  t.equal((await call(app, 'POST', `/api/resources/${car.id}/allocations`, { ...slot(), owner_id: member.id })).statusCode, 400, 'not even an admin sets an owner')
})

t.test('members change and cancel only their own allocations: someone else\'s is 403 and changes nothing', async (t) => {
  const mine = (await call(app, 'POST', `/api/cars/${car.id}/allocations`, slot(), as(member.token))).json()
  const before = await stored(mine.id)
  const paths = [`/api/allocations/${mine.id}`, `/api/cars/${car.id}/allocations/${mine.id}`, `/api/resources/${car.id}/allocations/${mine.id}`]
  for (const path of paths) {
    const move = await call(app, 'PATCH', path, slot(), as(other.token))
    t.equal(move.statusCode, 403, `PATCH ${path} by another member`)
    t.match(move.json(), { code: 'FORBIDDEN', message: /belongs to another account/ })
    t.equal((await call(app, 'DELETE', path, undefined, as(other.token))).statusCode, 403, `DELETE ${path} by another member`)
  }
  t.same(await stored(mine.id), before, 'nothing changed')

  const moved = await call(app, 'PATCH', `/api/allocations/${mine.id}`, { description: 'mine' }, as(member.token))
  t.equal(moved.statusCode, 200, 'the owner may change it')
  t.match(moved.json(), { description: 'mine', owner_id: member.id, updated_by: member.id })
  const byAdmin = await call(app, 'PATCH', `/api/allocations/${mine.id}`, slot())
  t.equal(byAdmin.statusCode, 200, 'an admin may change anyone\'s')
  t.match(byAdmin.json(), { owner_id: member.id, updated_by: adminId }, 'the owner stays; the actor is recorded')

  t.equal((await call(app, 'DELETE', `/api/allocations/${mine.id}`, undefined, as(member.token))).statusCode, 204, 'the owner cancels')
  t.match(await stored(mine.id), { status: 'cancelled', updated_by: member.id })
  const cancelledBefore = await stored(mine.id)
  t.equal((await call(app, 'DELETE', `/api/allocations/${mine.id}`, undefined, as(other.token))).statusCode, 403, 'a cancelled one is still not another\'s to cancel: no silent 204')
  t.equal((await call(app, 'PATCH', `/api/allocations/${mine.id}`, slot(), as(other.token))).statusCode, 403, 'nor to change (403 before 409)')
  t.equal((await call(app, 'DELETE', `/api/allocations/${mine.id}`, undefined, as(member.token))).statusCode, 204, 'cancelling twice is 204 for the owner')
  t.same(await stored(mine.id), cancelledBefore, 'and changes nothing')

  const theirs = (await call(app, 'POST', `/api/resources/${car.id}/allocations`, slot(), as(other.token))).json()
  t.equal((await call(app, 'DELETE', `/api/allocations/${theirs.id}`)).statusCode, 204, 'an admin cancels anyone\'s')
  t.match(await stored(theirs.id), { status: 'cancelled', owner_id: other.id, updated_by: adminId })
  t.equal((await call(app, 'PATCH', '/api/allocations/00000000-0000-4000-8000-000000000000', slot(), as(member.token))).statusCode, 404, 'a missing one is 404 for members too')
})

t.test('maintenance is for admins', async (t) => {
  const refused = await call(app, 'POST', `/api/resources/${car.id}/allocations`, { ...slot(), kind: 'maintenance' }, as(member.token))
  t.equal(refused.statusCode, 403)
  t.match(refused.json(), { code: 'FORBIDDEN', message: /only admins may create maintenance/ })
  const booking = (await call(app, 'POST', `/api/resources/${car.id}/allocations`, slot(), as(member.token))).json()
  t.equal((await call(app, 'PATCH', `/api/allocations/${booking.id}`, { kind: 'maintenance' }, as(member.token))).statusCode, 403, 'nor turn a booking into maintenance')
  t.equal((await call(app, 'PATCH', `/api/allocations/${booking.id}`, { kind: 'booking', description: 'still a booking' }, as(member.token))).statusCode, 200)
  const service = await call(app, 'POST', `/api/resources/${car.id}/allocations`, { ...slot(), kind: 'maintenance' })
  t.equal(service.statusCode, 201, 'an admin may')
  t.equal((await call(app, 'DELETE', `/api/allocations/${service.json().id}`, undefined, as(member.token))).statusCode, 403, 'and a member cannot cancel it')
})

t.test('allocations made outside the API (no owner): only admins change them', async (t) => {
  const { rows } = await app.pg.pool.query<{ id: string }>(
    "INSERT INTO allocation (resource_id, during) VALUES ($1, tstzrange('2032-01-01', '2032-01-02', '[)')) RETURNING id", [car.id])
  const id = rows[0]!.id
  const read = await call(app, 'GET', `/api/allocations/${id}`, undefined, as(member.token))
  t.equal(read.statusCode, 200, 'members read it')
  t.match(read.json(), { owner_id: null, updated_by: null })
  t.equal((await call(app, 'PATCH', `/api/allocations/${id}`, { description: 'x' }, as(member.token))).statusCode, 403)
  t.equal((await call(app, 'DELETE', `/api/allocations/${id}`, undefined, as(member.token))).statusCode, 403)
  t.equal((await call(app, 'PATCH', `/api/allocations/${id}`, { description: 'x' })).statusCode, 200)
})

t.test('every allocation write tells the database who acts (invsys.actor), for triggers such as a history', async (t) => {
  // A stand-in for the history trigger: it records what current_setting shows it.
  await app.pg.pool.query(`
    CREATE TABLE seen_actor (op text, actor text);
    CREATE FUNCTION record_actor() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO seen_actor VALUES (TG_OP, current_setting('invsys.actor', true));
      RETURN NULL;
    END $$;
    CREATE TRIGGER record_actor AFTER INSERT OR UPDATE OR DELETE ON allocation
      FOR EACH ROW EXECUTE FUNCTION record_actor();`)
  t.teardown(() => app.pg.pool.query('DROP TRIGGER record_actor ON allocation; DROP FUNCTION record_actor() CASCADE; DROP TABLE seen_actor'))
  const truck = await createResource(app, 'truck')
  const booking = (await call(app, 'POST', `/api/resources/${truck.id}/allocations`, slot(), as(member.token))).json()
  await call(app, 'PATCH', `/api/allocations/${booking.id}`, slot(), as(member.token))
  await call(app, 'DELETE', `/api/allocations/${booking.id}`)
  await call(app, 'POST', `/api/resources/${truck.id}/allocations`, slot(), as(other.token))
  await call(app, 'DELETE', `/api/resources/${truck.id}?force=true`)
  const seen = (await app.pg.pool.query('SELECT op, actor FROM seen_actor')).rows
  t.same(seen, [
    { op: 'INSERT', actor: String(member.id) },
    { op: 'UPDATE', actor: String(member.id) },
    { op: 'UPDATE', actor: String(adminId) },
    { op: 'INSERT', actor: String(other.id) },
    { op: 'DELETE', actor: String(adminId) },
    { op: 'DELETE', actor: String(adminId) }
  ])
  const leaked = await Promise.all(Array.from({ length: 10 }, () => app.pg.pool.query("SELECT current_setting('invsys.actor', true) AS actor")))
  t.ok(leaked.every((r) => !r.rows[0].actor), 'transaction-local: no pooled connection keeps an actor afterwards')
})
