import t from 'tap'
import { buildTestApp, call, createAccount, createResource } from './helpers.js'

/**
 * What members may not do to allocations, through the API: maintenance in any form
 * (including a block that was the member's own booking before an admin turned it into
 * maintenance), a 403, and open-ended times, 422 RULE_OPEN_ENDED (unless the resource's
 * rules let members book open-ended). No refusal changes anything.
 */

const app = await buildTestApp(t)
const member = await createAccount(app, 'member')
const as = (token: string) => ({ token })

let hour = 0
/** A fresh one-hour slot each time, so bookings in these tests never collide by accident. */
function slot (): { starts_at: string, ends_at: string } {
  hour += 1
  const start = Date.UTC(2032, 0, 1) + hour * 3600_000
  return { starts_at: new Date(start).toISOString(), ends_at: new Date(start + 3600_000).toISOString() }
}

const car = await createResource(app, 'car')

/** The row as stored, to prove a refused request changed nothing. */
const stored = async (id: string) => (await app.pg.pool.query('SELECT * FROM allocation WHERE id = $1', [id])).rows[0]

/** A booking the member made, then made maintenance by an admin. */
async function formerBooking (extra: Record<string, unknown> = {}): Promise<string> {
  const booked = await call(app, 'POST', `/api/resources/${car.id}/allocations`, { ...slot(), ...extra }, as(member.token))
  if (booked.statusCode !== 201) throw new Error(booked.body)
  const turned = await call(app, 'PATCH', `/api/allocations/${booked.json().id}`, { kind: 'maintenance' })
  if (turned.statusCode !== 200 || turned.json().kind !== 'maintenance') throw new Error(turned.body)
  t.equal(turned.json().owner_id, member.id, 'it still names the member as its owner')
  return booked.json().id as string
}

t.test('a member may not change, move, confirm or cancel maintenance, even its own former booking', async (t) => {
  const id = await formerBooking()
  const before = await stored(id)
  const attempts = [
    ['PATCH', `/api/allocations/${id}`, { description: 'mine, surely' }],
    ['PATCH', `/api/allocations/${id}`, slot()],
    ['PATCH', `/api/allocations/${id}`, { kind: 'booking' }],
    ['PATCH', `/api/cars/${car.id}/allocations/${id}`, { description: 'through the nested path' }],
    ['DELETE', `/api/allocations/${id}`, undefined],
    ['DELETE', `/api/resources/${car.id}/allocations/${id}`, undefined]
  ] as const
  for (const [method, url, body] of attempts) {
    const res = await call(app, method, url, body, as(member.token))
    t.equal(res.statusCode, 403, `${method} ${url} ${JSON.stringify(body ?? '')}: 403`)
    t.match(res.json(), { code: 'FORBIDDEN', message: /maintenance: only admins/ })
  }
  t.same(await stored(id), before, 'the maintenance block is exactly as it was')
  t.equal((await call(app, 'DELETE', `/api/allocations/${id}`)).statusCode, 204, 'an admin cancels it')
})

t.test('a member may not confirm a hold an admin turned into maintenance', async (t) => {
  const id = await formerBooking({ status: 'held', hold_seconds: 600 })
  const before = await stored(id)
  for (const url of [`/api/allocations/${id}/confirm`, `/api/cars/${car.id}/allocations/${id}/confirm`]) {
    const res = await call(app, 'POST', url, undefined, as(member.token))
    t.equal(res.statusCode, 403, `POST ${url}: 403`)
    t.match(res.json(), { code: 'FORBIDDEN', message: /maintenance/ })
  }
  t.same(await stored(id), before, 'still held, unchanged')
  const confirmed = await call(app, 'POST', `/api/allocations/${id}/confirm`)
  t.equal(confirmed.statusCode, 200, 'an admin confirms it')
  t.equal(confirmed.json().status, 'confirmed')
})

t.test('a member may not book open-ended; an admin may', async (t) => {
  const { starts_at: startsAt, ends_at: endsAt } = slot()
  const bodies = [
    { starts_at: startsAt, ends_at: null },
    { starts_at: null, ends_at: endsAt },
    { starts_at: null, ends_at: null }
  ]
  const count = async () => (await app.pg.pool.query('SELECT count(*)::int AS n FROM allocation')).rows[0].n as number
  const before = await count()
  for (const body of bodies) {
    for (const url of [`/api/resources/${car.id}/allocations`, `/api/cars/${car.id}/allocations`]) {
      const res = await call(app, 'POST', url, body, as(member.token))
      t.equal(res.statusCode, 422, `POST ${url} ${JSON.stringify(body)}: 422`)
      t.match(res.json(), { code: 'RULE_OPEN_ENDED', rule: { name: 'members_may_book_open_ended' } })
    }
    const any = await call(app, 'POST', '/api/allocations', { type: 'car', ...body }, as(member.token))
    t.equal(any.statusCode, 422, `book-any-free ${JSON.stringify(body)}: 422`)
    t.match(any.json(), { code: 'RULE_OPEN_ENDED' })
  }
  t.equal(await count(), before, 'nothing was stored')

  const lorry = await createResource(app, 'lorry')
  const admin = await call(app, 'POST', `/api/resources/${lorry.id}/allocations`, { starts_at: '2032-06-01T00:00:00Z', ends_at: null })
  t.equal(admin.statusCode, 201, 'an admin books until further notice')
  t.equal(admin.json().ends_at, null)
  await createResource(app, 'truck')
  const adminAny = await call(app, 'POST', '/api/allocations', { type: 'truck', starts_at: null, ends_at: '2032-06-01T00:00:00Z' })
  t.equal(adminAny.statusCode, 201, 'and from the beginning of time, through book-any-free')
})

t.test('a member may not move its booking to an open end, but may change the rest', async (t) => {
  const booked = await call(app, 'POST', `/api/resources/${car.id}/allocations`, slot(), as(member.token))
  const id = booked.json().id as string
  const before = await stored(id)
  for (const body of [{ ends_at: null }, { starts_at: null }, { ...slot(), ends_at: null }]) {
    const res = await call(app, 'PATCH', `/api/allocations/${id}`, body, as(member.token))
    t.equal(res.statusCode, 422, `PATCH ${JSON.stringify(body)}: 422`)
    t.match(res.json(), { code: 'RULE_OPEN_ENDED' })
  }
  t.same(await stored(id), before, 'unchanged')
  const described = await call(app, 'PATCH', `/api/allocations/${id}`, { description: 'school run' }, as(member.token))
  t.equal(described.statusCode, 200, 'a change that keeps both ends is fine')
  const moved = await call(app, 'PATCH', `/api/allocations/${id}`, slot(), as(member.token))
  t.equal(moved.statusCode, 200, 'and so is a move to other bounded times')
  const opened = await call(app, 'PATCH', `/api/allocations/${id}`, { ends_at: null })
  t.equal(opened.statusCode, 200, 'an admin may open its end')
  t.equal(opened.json().ends_at, null)
})
