import pg from 'pg'
import t from 'tap'
import { buildTestApp, createResource, fetchJson, listen, sleep, sql } from './helpers.js'

/**
 * Gap-free under concurrency, the way it fails in practice: numbers drawn when a row is
 * written reach the readers in another order than they were drawn, when the transactions
 * that drew them commit in another order. Writers here draw and then hold their commit for
 * a while on purpose (some roll back), while bookings arrive over HTTP; a reader pages the
 * feed through the API the whole time, and a naive reader pages by the number each change
 * drew when it was written (the history's id). The API reader must get exactly the
 * committed changes, each once; the naive one must miss some, or the test proved nothing.
 */

const app = await buildTestApp(t)
const base = await listen(app)

interface Event { position: number, id: string, type: string, allocation_id: string | null }

t.test('pages read while commits are held and reordered are exactly the committed events, none twice', async (t) => {
  const cars = await Promise.all(Array.from({ length: 4 }, () => createResource(app, 'car')))
  const carIds = cars.map((car) => car.id)
  // One allocation per car for the slow writers to edit.
  const edited: string[] = []
  for (const [i, car] of cars.entries()) {
    const res = await fetchJson(`${base}/api/resources/${car.id}/allocations`, 'POST', { starts_at: `2032-01-0${i + 1}T09:00:00Z`, ends_at: `2032-01-0${i + 1}T10:00:00Z` })
    edited.push(res.body.id)
  }
  const start = (await sql<{ last: number }>(app, 'SELECT last_position::int AS last FROM event_feed'))[0]!.last
  const historyStart = (await sql<{ top: number }>(app, 'SELECT coalesce(max(id), 0)::int AS top FROM allocation_event'))[0]!.top

  // What tells the loops below to stop (an object, which lint sees can change under them).
  const flags = { writing: true, reading: true }
  const writers = edited.map(async (allocationId, w) => {
    const client = new pg.Client({ connectionString: app.databaseUrl })
    await client.connect()
    try {
      for (let round = 0; flags.writing; round++) {
        await client.query('BEGIN')
        await client.query('UPDATE allocation SET description = $2 WHERE id = $1', [allocationId, `writer ${w} round ${round}`])
        // The number is drawn; the commit waits: 0 to 150 ms, and now and then a second.
        await sleep(round % 7 === w ? 1000 : Math.random() * 150)
        await client.query(round % 5 === 4 ? 'ROLLBACK' : 'COMMIT')
      }
    } finally {
      await client.end()
    }
  })
  let booked = 0
  const bookers = Array.from({ length: 3 }, async (_, b) => {
    for (let n = 0; flags.writing; n++) {
      const hour = Date.UTC(2033, 0, 1) + (n * 3 + b) * 3600_000
      const res = await fetchJson(`${base}/api/resources/${carIds[(n + b) % carIds.length]}/allocations`, 'POST',
        { starts_at: new Date(hour).toISOString(), ends_at: new Date(hour + 1800_000).toISOString() })
      if (res.status === 201) booked++
      await sleep(20)
    }
  })

  // The naive reader: on a connection of its own, as often as it can.
  const naive = new Set<number>()
  const naiveReader = (async () => {
    const client = new pg.Client({ connectionString: app.databaseUrl })
    await client.connect()
    try {
      for (let cursor = historyStart; flags.reading; await sleep(5)) {
        const { rows } = await client.query<{ id: number }>('SELECT id::int FROM allocation_event WHERE id > $1 ORDER BY id LIMIT 100', [cursor])
        for (const row of rows) naive.add(row.id)
        cursor = rows.at(-1)?.id ?? cursor
      }
    } finally {
      await client.end()
    }
  })()

  const read: Event[] = []
  const readOnce = async () => {
    const page = await fetchJson(`${base}/api/events?after=${read.at(-1)?.position ?? start}&limit=7`, 'GET')
    if (page.status !== 200) throw new Error(JSON.stringify(page.body))
    read.push(...page.body as Event[])
  }
  const stop = Date.now() + 8000
  while (Date.now() < stop) {
    await readOnce()
    await sleep(15)
  }
  flags.writing = false
  await Promise.all([...writers, ...bookers])
  // What was committed has all been numbered once these settle; read to the end.
  for (let quiet = 0; quiet < 3;) {
    const before = read.length
    await readOnce()
    await sleep(300)
    quiet = read.length === before ? quiet + 1 : 0
  }
  flags.reading = false
  await naiveReader

  const committed = await sql<{ event_id: string, id: number }>(app, 'SELECT event_id::text, id::int FROM allocation_event WHERE id > $1 ORDER BY id', [historyStart])
  const mine = read.filter((e) => e.allocation_id !== null)
  t.ok(committed.length > 50 && booked > 10, `a real run: ${committed.length} changes committed, ${booked} of them bookings over HTTP`)
  t.equal(new Set(mine.map((e) => e.id)).size, mine.length, 'no event read twice')
  t.same([...mine.map((e) => e.id)].sort(), committed.map((c) => c.event_id).sort(), 'the pages together are exactly the committed changes')
  t.ok(read.every((e, i) => i === 0 || e.position === read[i - 1]!.position + 1), 'positions read one after another, none skipped')
  t.equal(mine.filter((e) => e.type === 'allocation.updated').length, committed.length - booked, 'every committed edit is there (rolled-back ones are not)')
  const missed = committed.filter((c) => !naive.has(c.id)).length
  t.ok(missed > 0, `a reader paging by the number drawn at insert missed ${missed} of ${committed.length} committed changes`)
})
