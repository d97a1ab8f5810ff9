import pg from 'pg'
import t from 'tap'
import { BOOK_ANY, LIST, LIST_OF_RESOURCE } from '../src/database/allocations.js'
import { SLOTS, SLOTS_AT_START } from '../src/database/availability.js'
import { LIST_AVAILABLE } from '../src/database/resources.js'
import { buildTestApp, call, createAccount, sql } from './helpers.js'

const app = await buildTestApp(t)

t.test('allocation_overlaps(during, span) is during && span for every range an allocation can have', async (t) => {
  // Allocations are half-open and never empty; spans may be anything, empty included.
  const [row] = await sql<{ compared: number, different: number, examples: unknown }>(app, `
    WITH point (p) AS (VALUES (NULL::timestamptz), ('2030-01-01 10:00Z'), ('2030-01-01 11:00Z'), ('2030-01-01 12:00Z'), ('2030-01-01 13:00Z')),
    during AS (
      SELECT tstzrange(a.p, b.p, '[)') AS d FROM point a, point b
      WHERE a.p IS NULL OR b.p IS NULL OR a.p < b.p
    ),
    span AS (
      SELECT tstzrange(a.p, b.p, bounds) AS s
      FROM point a, point b, unnest(ARRAY['[)', '[]', '()', '(]']) AS bounds
      WHERE a.p IS NULL OR b.p IS NULL OR a.p <= b.p
    )
    SELECT count(*)::int AS compared,
           count(*) FILTER (WHERE allocation_overlaps(d, s) IS DISTINCT FROM (d && s))::int AS different,
           json_agg(json_build_object('during', d, 'span', s)) FILTER (WHERE allocation_overlaps(d, s) IS DISTINCT FROM (d && s)) AS examples
    FROM during, span`)
  t.ok(row!.compared > 500, `${row!.compared} pairs compared`)
  t.equal(row!.different, 0, `no pair differs: ${JSON.stringify(row!.examples)}`)
})

t.test('utc_text writes what the first release wrote, whatever the session\'s time zone', async (t) => {
  const client = new pg.Client({ connectionString: app.databaseUrl })
  await client.connect()
  t.teardown(() => client.end())
  // The first release's spelling, which switched TimeZone on every call.
  await client.query(`CREATE FUNCTION pg_temp.utc_text_before(t timestamptz) RETURNS text
    LANGUAGE sql STABLE SET TimeZone = 'UTC' AS $$ SELECT replace(to_json(t) #>> '{}', '+00:00', 'Z') $$`)
  for (const zone of ['UTC', 'Asia/Kolkata', 'America/St_Johns']) {
    await client.query(`SET TimeZone = '${zone}'`)
    const { rows } = await client.query<{ t: string, before: string | null, now: string | null }>(`
      SELECT t::text, pg_temp.utc_text_before(t) AS before, utc_text(t) AS now
      FROM (VALUES ('2030-01-01 00:00:00Z'::timestamptz), ('2030-06-01 09:30:00.5+02'), ('2030-06-01 09:30:00.000001-03:30'),
                   ('1900-01-01 00:00Z'), ('0044-03-15 12:00Z BC'), ('infinity'), ('-infinity'), (NULL), (now())) AS v (t)`)
    for (const row of rows) t.equal(row.now, row.before, `${zone}: ${row.t}`)
  }
})

/** The names of the indexes used, and the tables read whole, in a plan. */
function scans (plan: unknown): string[] {
  const found: string[] = []
  const walk = (node: Record<string, unknown>) => {
    if (typeof node['Index Name'] === 'string') found.push(node['Index Name'])
    if (node['Node Type'] === 'Seq Scan') found.push(`Seq Scan on ${node['Relation Name'] as string}`)
    for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) walk(child)
  }
  walk((plan as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan)
  return found
}

t.test('the hot reads look allocations up by index, never by reading the whole table', async (t) => {
  // Enough rows that reading the table is the planner's worst option: 200 lorries with a
  // booking a week for 100 weeks.
  await sql(app, `
    INSERT INTO resource (type, name) SELECT 'lorry', 'plan-lorry-' || n FROM generate_series(1, 200) AS n;
    INSERT INTO allocation (resource_id, during, description)
    SELECT r.id, tstzrange(s, s + interval '5 hours'), 'plan test'
    FROM resource r, generate_series(0, 99) AS i,
         LATERAL (SELECT timestamptz '2030-01-07' + i * interval '7 days' + (abs(hashtext(r.name)) % 150) * interval '1 hour' AS s) AS t
    WHERE r.name LIKE 'plan-lorry-%';
    ANALYZE resource; ANALYZE allocation;`)
  const [lorry] = await sql<{ id: string }>(app, 'SELECT id FROM resource WHERE name = \'plan-lorry-7\'')
  const month = ['2031-01-01T00:00:00Z', '2031-01-31T00:00:00Z']
  const week = ['2031-01-01T00:00:00Z', '2031-01-08T00:00:00Z']
  const explain = async (query: string, values: unknown[], generic = false) =>
    scans((await sql<{ 'QUERY PLAN': unknown }>(app, `EXPLAIN (FORMAT JSON${generic ? ', GENERIC_PLAN' : ''}) ${query}`, generic ? [] : values))[0]!['QUERY PLAN'])

  const plans: Array<[string, string[]]> = []
  const uses = (name: string, plan: string[], index: string) => {
    plans.push([name, plan])
    t.ok(plan.includes(index), `${name}: ${index} (${plan.join(', ')})`)
  }
  uses('the allocations of one resource in a window', await explain(LIST_OF_RESOURCE, [lorry!.id, 'lorry', ...month, null, 'confirmed', 51, 0]), 'allocation_resource_span_idx')
  uses('the same for any values (prepared once per connection)', await explain(LIST_OF_RESOURCE, [], true), 'allocation_resource_span_idx')
  uses('a month across resources: what is going on at its start', await explain(LIST, [null, 'lorry', null, ...month, null, 'confirmed', 51, 0]), 'allocation_during_idx')
  uses('a month across resources: what starts within it, in page order', await explain(LIST, [null, 'lorry', null, ...month, null, 'confirmed', 51, 0]), 'allocation_starts_idx')
  uses('every allocation, a page at a time', await explain(LIST, [null, null, null, null, null, null, 'all', 51, 0]), 'allocation_starts_idx')
  // The exclusion constraint's index: the resource, and the range widened by the buffers.
  uses('available resources, walking them', await explain(LIST_AVAILABLE, ['lorry', null, ...week.slice(0, 1), '2031-01-02T00:00:00Z', 51, 0, [], 204, false, null]), 'allocation_no_overlap')
  uses('slots', await explain(SLOTS, ['lorry', null, ...week, 'PT2H', 51, 0, false, null, false]), 'allocation_no_overlap')
  uses('slots at the window\'s start', await explain(SLOTS_AT_START, ['lorry', null, ...week, 'PT2H', 51, 0, false, null, false, 204]), 'allocation_no_overlap')
  // As a member, with the calendar-shaped rules in force on the type.
  const { id: memberId } = await createAccount(app, 'member')
  t.equal((await call(app, 'PUT', '/api/resource-types/lorry/rules', {
    time_zone: 'Europe/Lisbon',
    opening_hours: { mon: [['08:00', '18:00']], tue: [['08:00', '18:00']], wed: [['08:00', '18:00']], thu: [['08:00', '18:00']] },
    slot_grid: 'PT30M',
    quotas: [{ period: 'day', max_duration: 'PT8H' }]
  })).statusCode, 200)
  t.teardown(() => call(app, 'PUT', '/api/resource-types/lorry/rules', {}))
  await sql(app, 'ANALYZE resource_type_rule')
  uses('available resources, as a member', await explain(LIST_AVAILABLE, ['lorry', null, '2031-01-01T09:00:00Z', '2031-01-01T10:00:00Z', 51, 0, ['opening_hours', 'slot_grid'], 204, true, memberId]), 'allocation_no_overlap')
  uses('slots, as a member', await explain(SLOTS, ['lorry', null, ...week, 'PT2H', 51, 0, true, memberId, true]), 'allocation_no_overlap')
  uses('slots at the window\'s start, as a member', await explain(SLOTS_AT_START, ['lorry', null, ...week, 'PT2H', 51, 0, true, memberId, true, 204]), 'allocation_no_overlap')
  uses('free time (resource_free_time\'s own query)', await explain(`
    SELECT tstzmultirange($2) - coalesce(range_agg(a.during), '{}'::tstzmultirange)
    FROM allocation a
    WHERE a.resource_id = $1 AND allocation_blocks(a.status, a.expires_at)
      AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after) && $2::tstzrange`, [lorry!.id, `[${month[0]},${month[1]})`]), 'allocation_no_overlap')
  // The free ones among all, from each resource's kept free time: its three indexes,
  // whatever the values (book-any is prepared once per connection).
  const bookAny = ['lorry', null, [], '2031-01-01T09:00:00Z', '2031-01-01T10:00:00Z', 'booking', 'plan', {}, 'confirmed', 0, memberId, false]
  for (const [name, plan] of [['book any', await explain(BOOK_ANY, bookAny)], ['book any, for any values', await explain(BOOK_ANY, [], true)]] as const) {
    for (const index of ['resource_gap_bounded_idx', 'resource_gap_open_end_idx', 'resource_gap_open_start_idx']) uses(name, plan, index)
    t.notOk(plan.includes('Seq Scan on resource_gap'), `${name}: resource_gap is not read whole`)
  }
  for (const [name, plan] of plans) t.notOk(plan.includes('Seq Scan on allocation'), `${name}: the table is not read whole`)

  // The walks stop when the page is full: a page of 10 probes about as many resources as
  // it takes to find 11 free ones (most lorries are free on a given day), not the 200.
  const probes = async (query: string, values: unknown[]) => {
    const [row] = await sql<{ 'QUERY PLAN': unknown }>(app, `EXPLAIN (ANALYZE, FORMAT JSON) ${query}`, values)
    let most = 0
    const walk = (node: Record<string, unknown>) => {
      if (node['Index Name'] === 'allocation_no_overlap') most = Math.max(most, node['Actual Loops'] as number)
      for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) walk(child)
    }
    walk((row!['QUERY PLAN'] as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan)
    return most
  }
  const day = ['2031-01-01T00:00:00Z', '2031-01-02T00:00:00Z']
  const availableProbes = await probes(LIST_AVAILABLE, ['lorry', null, ...day, 11, 0, [], 200, false, null])
  t.ok(availableProbes > 0 && availableProbes < 40, `available resources, a page of 10: ${availableProbes} resources probed`)
  const slotProbes = await probes(SLOTS_AT_START, ['lorry', null, ...day, 'PT2H', 11, 0, false, null, false, 200])
  t.ok(slotProbes > 0 && slotProbes < 40, `slots at the window's start, a page of 10: ${slotProbes} resources probed`)
})

t.test('slots: the walk at the window\'s start and the full search give the pages resource_free_time() gives', async (t) => {
  // 30 vans: some busy at the window's start, some later, some twice, one on hold, one cancelled.
  await sql(app, `
    INSERT INTO resource (type, name) SELECT 'truck', 'slot-van-' || lpad(n::text, 2, '0') FROM generate_series(1, 30) AS n;
    INSERT INTO allocation (resource_id, during, description)
    SELECT r.id, tstzrange(timestamptz '2032-05-03 08:00Z' + (n % 5) * interval '90 minutes',
                           timestamptz '2032-05-03 09:00Z' + (n % 5) * interval '90 minutes' + (n % 3) * interval '1 hour'), 'slot test'
    FROM resource r, LATERAL (SELECT substr(r.name, 10)::int AS n) AS v
    WHERE r.name LIKE 'slot-van-%' AND n % 4 <> 0;
    INSERT INTO allocation (resource_id, during, description)
    SELECT id, tstzrange('2032-05-03 15:00Z', '2032-05-03 16:00Z'), 'slot test afternoon'
    FROM resource WHERE name LIKE 'slot-van-%' AND substr(name, 10)::int % 3 = 0 AND substr(name, 10)::int % 5 <> 4;
    INSERT INTO allocation (resource_id, during, status, expires_at, description)
    SELECT id, tstzrange('2032-05-03 12:00Z', '2032-05-03 13:00Z'), 'held', now() + interval '10 minutes', 'slot test hold'
    FROM resource WHERE name = 'slot-van-04';
    INSERT INTO allocation (resource_id, during, status, cancelled_at, description)
    SELECT id, tstzrange('2032-05-03 08:00Z', '2032-05-03 18:00Z'), 'cancelled', now(), 'slot test cancelled'
    FROM resource WHERE name = 'slot-van-08';`)
  const window = { from: '2032-05-03T08:00:00Z', to: '2032-05-03T18:00:00Z' }
  const iso = (time: unknown) => (time as Date).toISOString().replace('.000Z', 'Z')
  // The answer as psql would compute it, one resource_free_time() call per van; for a
  // member, cut to resource_open_time() less the periods their quotas leave too little of,
  // then to the slot grid.
  const expected = async (duration: string, member: number | null) => (await sql(app, `
    SELECT r.id AS resource_id, r.name AS resource_name, lower(f.slot) AS starts_at, upper(f.slot) AS ends_at
    FROM resource r
    JOIN effective_rule e ON e.resource_id = r.id
    LEFT JOIN resource_type_rule tr ON tr.type = r.type
    LEFT JOIN resource_rule rr ON rr.resource_id = r.id
    CROSS JOIN LATERAL (SELECT CASE WHEN $5 THEN member_booking_span(r.id, tstzrange($2, $3, '[)'), now()) ELSE tstzrange($2, $3, '[)') END AS span) w
    CROSS JOIN LATERAL unnest(resource_free_time(r.id, w.span) * CASE WHEN NOT $5 THEN tstzmultirange(w.span)
      ELSE resource_open_time(r.id, w.span)
           - quota_full_periods(tr.quotas, tr.time_zone, $6, r.type, NULL, w.span, $4::interval)
           - quota_full_periods(rr.quotas, coalesce(rr.time_zone, tr.time_zone), $6, NULL, r.id, w.span, $4::interval) END) AS gap
    CROSS JOIN LATERAL (SELECT CASE WHEN $5 THEN slot_grid_fit(e.slot_grid, e.time_zone, gap) ELSE gap END AS slot) f
    WHERE r.type = $1 AND lower(f.slot) + $4::interval <= upper(f.slot)
      AND (NOT $5 OR ((e.min_duration IS NULL OR lower(f.slot) + e.min_duration <= lower(f.slot) + $4::interval)
                  AND (e.max_duration IS NULL OR lower(f.slot) + $4::interval <= lower(f.slot) + e.max_duration)
                  AND slot_grid_contains(e.slot_grid, e.time_zone, lower(f.slot) + $4::interval)))
    ORDER BY lower(f.slot), r.name, r.id`, ['truck', window.from, window.to, duration, member !== null, member]))
    .map((row) => ({ ...row, starts_at: iso(row.starts_at), ends_at: iso(row.ends_at) }))
  const compare = async (label: string, member?: { token: string, id: number }, expectSome = false) => {
    for (const duration of ['PT30M', 'PT1H', 'PT2H', 'PT9H', 'PT10H']) {
      const all = await expected(duration, member?.id ?? null)
      if (expectSome && duration === 'PT1H') t.ok(all.length > 3, `${label}: ${all.length} one-hour slots to compare`)
      for (const limit of [1, 3, 7, 1000]) {
        for (const offset of [0, 1, 5, 20]) {
          const query = new URLSearchParams({ type: 'truck', ...window, duration, limit: String(limit), offset: String(offset) })
          const res = await call(app, 'GET', `/api/slots?${query}`, undefined, member ?? {})
          t.same(res.json(), all.slice(offset, offset + limit), `${label}: ${duration}, limit ${limit}, offset ${offset}`)
        }
      }
    }
  }
  await compare('no rules')
  // Buffers on the type, another on one van, and stored on an allocation made after them;
  // member rules that rule some durations out.
  t.equal((await call(app, 'PUT', '/api/resource-types/truck/rules', {
    min_duration: 'PT1H', max_duration: 'PT9H', min_notice: null, max_advance: null, buffer_before: 'PT15M', buffer_after: 'PT30M', members_may_book_open_ended: false
  })).statusCode, 200)
  const [van] = await sql<{ id: string }>(app, 'SELECT id FROM resource WHERE name = \'slot-van-01\'')
  t.equal((await call(app, 'PUT', `/api/resources/${van!.id}/rules`, {
    min_duration: null, max_duration: null, min_notice: null, max_advance: null, buffer_before: 'PT1H', buffer_after: null, members_may_book_open_ended: null
  })).statusCode, 200)
  await sql(app, `
    INSERT INTO allocation (resource_id, during, description)
    SELECT id, tstzrange('2032-05-03 11:00Z', '2032-05-03 12:00Z'), 'slot test buffered' FROM resource WHERE name = 'slot-van-30'`)
  await compare('buffers, as an admin')
  const member = await createAccount(app, 'member')
  await compare('buffers and member rules, as a member', member, true)
  // The calendar-shaped rules on the type: Lisbon (UTC+1 in May) opening hours and a
  // 15-minute grid, a day quota of 3 hours of which the member has used one on another van
  // that Lisbon day; one van with an hourly grid and a quota of its own that leaves no room
  // for 2 hours, another whose type hours it overrides.
  t.equal((await call(app, 'PUT', '/api/resource-types/truck/rules', {
    min_duration: 'PT30M',
    max_duration: 'PT9H',
    buffer_before: 'PT15M',
    buffer_after: 'PT30M',
    time_zone: 'Europe/Lisbon',
    opening_hours: { mon: [['09:30', '12:00'], ['13:00', '19:15']] },
    slot_grid: 'PT15M',
    quotas: [{ period: 'day', max_duration: 'PT3H' }]
  })).statusCode, 200)
  t.equal((await call(app, 'PUT', `/api/resources/${van!.id}/rules`, { slot_grid: 'PT1H', quotas: [{ period: 'day', max_duration: 'PT1H30M' }] })).statusCode, 200)
  const [other] = await sql<{ id: string }>(app, 'SELECT id FROM resource WHERE name = \'slot-van-02\'')
  t.equal((await call(app, 'PUT', `/api/resources/${other!.id}/rules`, { time_zone: 'Asia/Kolkata', opening_hours: { mon: [['14:30', '21:30']] } })).statusCode, 200)
  await sql(app, `INSERT INTO allocation (resource_id, during, owner_id, description)
    VALUES ($1, tstzrange('2032-05-03 20:00Z', '2032-05-03 21:00Z'), $2, 'slot test: the member''s hour that day')`, [other!.id, member.id])
  await compare('calendar rules, as an admin')
  await compare('calendar rules, as a member', member, true)
})

t.test('available resources: a page of the walk is a page of every free resource', async (t) => {
  const windows: Array<[string, string]> = [['2032-05-03T08:00:00Z', '2032-05-03T09:00:00Z'], ['2032-05-03T08:00:00Z', '2032-05-03T18:00:00Z'], ['2032-05-03T13:00:00Z', '2032-05-03T14:30:00Z']]
  // The truck rules the slot test left: a member sees fewer vans, by the opening hours, the grid and the quotas.
  const member = await createAccount(app, 'member')
  await sql(app, `INSERT INTO allocation (resource_id, during, owner_id, description)
    SELECT id, tstzrange('2032-05-03 19:00Z', '2032-05-03 21:00Z'), $1, 'available test: the member''s 2 hours that day' FROM resource WHERE name = 'slot-van-05'`, [member.id])
  for (const [from, to] of [...windows, ['2032-05-03T08:30:00Z', '2032-05-03T09:30:00Z'], ['2032-05-03T12:00:00Z', '2032-05-03T12:45:00Z']] as Array<[string, string]>) {
    for (const who of [undefined, member]) {
      // Each van judged alone, as psql would: resource_free_time() leaves the whole window
      // free, and for a member no rule and no quota forbids booking it.
      const all = (await sql<{ id: string }>(app, `
        SELECT r.id FROM resource r
        WHERE r.type = 'truck' AND resource_free_time(r.id, tstzrange($1, $2, '[)')) = tstzmultirange(tstzrange($1, $2, '[)'))
          AND ($3::bigint IS NULL OR (NOT EXISTS (SELECT 1 FROM booking_rule_violations(r.id, tstzrange($1, $2, '[)'), now()))
                                      AND NOT EXISTS (SELECT 1 FROM booking_quota_breaches(r.id, tstzrange($1, $2, '[)'), $3))))
        ORDER BY r.name, r.id`, [from, to, who?.id ?? null])).map((row) => row.id)
      const label = `${from} to ${to}${who ? ', as a member' : ''}`
      if (!who && windows.some(([f, e]) => f === from && e === to)) t.ok(all.length > 0 && all.length < 30, `${label}: ${all.length} of the 30 vans are free`)
      for (const limit of [1, 2, 5, 1000]) {
        for (const offset of [0, 3, 25]) {
          const res = await call(app, 'GET', `/api/resources?${new URLSearchParams({ type: 'truck', available_from: from, available_to: to, limit: String(limit), offset: String(offset) })}`, undefined, who ?? {})
          t.same(res.json().map((r: { id: string }) => r.id), all.slice(offset, offset + limit), `${label}, limit ${limit}, offset ${offset}`)
        }
      }
      if (who && from === '2032-05-03T08:30:00Z') t.ok(all.length > 5, `${label}: ${all.length} vans for the member to compare`)
    }
  }
})

t.test('the synchronised fleet: with every resource out at the window\'s start, slots, available resources and book-any-free give what resource_free_time() gives', async (t) => {
  // 40 cars, each booked 08:00-10:00 on three days; buffers on the type and a longer
  // buffer_before of its own on one car (its gaps start later than the others').
  await sql(app, `
    INSERT INTO resource (type, name) SELECT 'car', 'sync-car-' || lpad(n::text, 2, '0') FROM generate_series(1, 40) AS n;
    INSERT INTO allocation (resource_id, during, description)
    SELECT r.id, tstzrange(timestamptz '2033-03-01 08:00Z' + d * interval '1 day', timestamptz '2033-03-01 10:00Z' + d * interval '1 day'), 'synchronised'
    FROM resource r, generate_series(0, 2) AS d WHERE r.name LIKE 'sync-car-%';`)
  const rules = (fields: Record<string, string | null>) => ({
    min_duration: null, max_duration: null, min_notice: null, max_advance: null, buffer_before: null, buffer_after: null, members_may_book_open_ended: null, ...fields
  })
  t.equal((await call(app, 'PUT', '/api/resource-types/car/rules', { ...rules({ buffer_after: 'PT15M', max_duration: 'PT20H' }), members_may_book_open_ended: false })).statusCode, 200)
  const [odd] = await sql<{ id: string }>(app, 'SELECT id FROM resource WHERE name = \'sync-car-07\'')
  t.equal((await call(app, 'PUT', `/api/resources/${odd!.id}/rules`, rules({ buffer_before: 'PT45M' }))).statusCode, 200)
  const member = await createAccount(app, 'member')
  const window = { from: '2033-03-01T08:00:00Z', to: '2033-03-03T12:00:00Z' }
  const iso = (time: unknown) => (time as Date).toISOString().replace('.000Z', 'Z')
  const expected = async (duration: string, asMember: boolean) => (await sql(app, `
    SELECT r.id AS resource_id, r.name AS resource_name, lower(gap) AS starts_at, upper(gap) AS ends_at
    FROM resource r
    JOIN effective_rule e ON e.resource_id = r.id
    CROSS JOIN LATERAL unnest(resource_free_time(r.id, tstzrange($2, $3, '[)'))) AS gap
    WHERE r.type = 'car' AND r.name LIKE 'sync-car-%' AND lower(gap) + $1::interval <= upper(gap)
      AND (NOT $4 OR e.max_duration IS NULL OR lower(gap) + $1::interval <= lower(gap) + e.max_duration)
    ORDER BY lower(gap), r.name, r.id`, [duration, window.from, window.to, asMember]))
    .map((row) => ({ ...row, starts_at: iso(row.starts_at), ends_at: iso(row.ends_at) }))
  for (const as of [undefined, member]) {
    for (const duration of ['PT1H', 'PT2H', 'PT21H']) {
      const all = await expected(duration, as !== undefined)
      for (const limit of [1, 7, 40, 1000]) {
        for (const offset of [0, 5, 39, 80]) {
          const query = new URLSearchParams({ type: 'car', ...window, duration, limit: String(limit), offset: String(offset) })
          const res = await call(app, 'GET', `/api/slots?${query}`, undefined, as ?? {})
          t.same(res.json(), all.slice(offset, offset + limit), `slots ${as ? 'as a member' : 'as an admin'}: ${duration}, limit ${limit}, offset ${offset}`)
        }
      }
    }
  }
  // Every car is out in the first two windows (the second within the type's buffer); in
  // the next two one car's own longer buffer keeps it out. In the last the first 20 cars by
  // name are out: more than the walk's sample, which then stops short of the free ones, so
  // that the whole search must find them.
  await sql(app, `INSERT INTO allocation (resource_id, during, description)
    SELECT id, tstzrange('2033-03-05 08:00Z', '2033-03-05 09:00Z'), 'the first half out' FROM resource
    WHERE name BETWEEN 'sync-car-01' AND 'sync-car-20'`)
  for (const [from, to] of [['2033-03-02T08:30:00Z', '2033-03-02T09:30:00Z'], ['2033-03-02T09:45:00Z', '2033-03-02T11:00:00Z'], ['2033-03-02T10:15:00Z', '2033-03-02T11:00:00Z'], ['2033-03-02T10:45:00Z', '2033-03-02T11:00:00Z'],
    ['2033-03-05T08:00:00Z', '2033-03-05T09:00:00Z']] as const) {
    const all = (await sql<{ id: string }>(app, `
      SELECT r.id FROM resource r
      WHERE r.type = 'car' AND resource_free_time(r.id, tstzrange($1, $2, '[)')) = tstzmultirange(tstzrange($1, $2, '[)'))
      ORDER BY r.name, r.id`, [from, to])).map((row) => row.id)
    if (from < '2033-03-02T10:00:00Z') t.equal(all.length, 0, `${from} to ${to}: every car is out`)
    else t.ok(all.length > 0 && all.length < 40, `${from} to ${to}: ${all.length} of the 40 cars free`)
    for (const limit of [1, 5, 1000]) {
      const res = await call(app, 'GET', `/api/resources?${new URLSearchParams({ type: 'car', available_from: from, available_to: to, limit: String(limit) })}`)
      t.same(res.json().map((r: { id: string }) => r.id), all.slice(0, limit), `available ${from} to ${to}, limit ${limit}`)
    }
    // How often a member's book-any-free judges a car's rules and quotas, counted by
    // PostgreSQL (track_functions) in a transaction rolled back.
    const client = new pg.Client({ connectionString: app.databaseUrl })
    await client.connect()
    await client.query('BEGIN')
    await client.query('SET LOCAL track_functions = \'pl\'')
    await client.query(BOOK_ANY, ['car', null, [], from, to, 'booking', 'plan', {}, 'confirmed', 0, member.id, true])
    const [{ judged }] = (await client.query<{ judged: number }>(`SELECT coalesce(sum(calls), 0)::int AS judged FROM pg_stat_xact_user_functions
      WHERE funcname IN ('booking_rules_allow', 'booking_quota_breach')`)).rows as [{ judged: number }]
    await client.query('ROLLBACK')
    await client.end()
    const booked = await call(app, 'POST', '/api/allocations', { type: 'car', starts_at: from, ends_at: to, description: 'book any' }, member)
    if (all.length === 0) {
      // The member rules and quotas are judged only for the cars found free: here none (the
      // planner, left to order the checks itself, judged every car's quotas first).
      t.equal(judged, 0, `book any ${from} to ${to} as a member: no car's rules judged`)
      t.equal(booked.statusCode, 409, `book any ${from} to ${to}: none free`)
      t.equal(booked.json().code, 'NO_AVAILABILITY')
    } else {
      t.ok(judged > 0, `book any ${from} to ${to} as a member: the rules of the car found free judged (${judged} calls)`)
      t.equal(booked.statusCode, 201, `book any ${from} to ${to}`)
      t.equal(booked.json().resource_id, all[0], 'the first free car by name')
    }
  }
})
