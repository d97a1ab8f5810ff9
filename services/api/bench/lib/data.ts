/**
 * The benchmark's data set, made with SQL only (generate_series and INSERT … SELECT):
 * sites, lorries with bookings spread over time, cars with none (the booking POST
 * writes there), and the first admin with a token.
 *
 * Resources get random uuids, as the API gives them: the GiST indexes on resource_id are
 * sensitive to how ids are spread (sequential ids made every lookup by resource visit
 * hundreds of index pages). resourceIds() reads them back in name order; the pgbench
 * scripts find a car by its name (car-000042), through the unique (type, name) index.
 */
import pg from 'pg'

export const SITES = 10
export const BOOKINGS_PER_LORRY = 100
/** Cars the booking POST and pgbench write to; they start with no allocations. */
export const CARS = 1000
/** Bookings of one lorry are one week apart: 100 of them cover 700 days. */
export const BOOKING_SPACING_DAYS = 7
export const DAY_MS = 24 * 60 * 60 * 1000

/** The ids of the loaded resources of a type, lorry-000001 (or car-000001) first. */
export async function resourceIds (url: string, type: 'lorry' | 'car'): Promise<string[]> {
  const client = new pg.Client({ connectionString: url })
  client.on('error', () => undefined)
  await client.connect()
  try {
    return (await client.query<{ id: string }>('SELECT id FROM resource WHERE type = $1 ORDER BY name', [type])).rows.map((row) => row.id)
  } finally {
    await client.end()
  }
}

/** SQL for the uuid of car number `expression` (an integer), for the pgbench scripts. */
export function carIdSql (expression: string): string {
  return `(SELECT id FROM resource WHERE type = 'car' AND name = 'car-' || lpad((${expression})::text, 6, '0'))`
}

export type LoadMethod = 'bulk' | 'triggers'

/**
 * How the lorries' bookings lie in time. spread: one a week at a varying hour (most lorries
 * are free at any given time: the usual day). tight: the synchronised fleet, every lorry
 * booked 00:00 to 03:00 UTC every day, so that at 01:00 none is free: what a dispatcher
 * meets at the worst moment.
 */
export type Shape = 'spread' | 'tight'

export interface LoadOptions {
  lorries: number
  /** Bookings per lorry: a week apart (spread) or a day apart (tight). */
  bookings?: number
  shape?: Shape
  /** Sites the lorries are spread over (round robin); the cars always use all of SITES. */
  sites?: number
  /** Midnight UTC: half the bookings are before it plus half their span, half after. */
  base: Date
  method: LoadMethod
  /** Sessions loading at once (bulk method only). */
  jobs: number
}

export interface LoadTimings {
  method: LoadMethod
  jobs: number
  /** sites, resources (lorries and cars) */
  resourcesSeconds: number
  /** allocations and their history rows, in one transaction */
  allocationsSeconds: number
  /** VACUUM (ANALYZE) and CHECKPOINT afterwards, so that neither runs during the measurements */
  vacuumSeconds: number
  allocations: number
  historyRows: number
  /** Sampled rows whose history was compared with allocation_snapshot() */
  historySampleChecked: number
}

const seconds = (start: number) => (performance.now() - start) / 1000

// The lorries with their numbers (lorry-000042 is 42): a load session's share is a range of them.
const LORRIES = "SELECT id, right(name, 6)::int AS n FROM resource WHERE type = 'lorry'"

// Lorry n's booking i starts i weeks after base, 0 to 149 hours into its week, and lasts
// 2 to 12 hours, so one lorry's bookings never overlap (149 + 12 < 168). One in 25 is
// cancelled, one in 50 is maintenance. Rows are written time-major (all lorries' week 0,
// then week 1, ...), roughly the order a live system writes them in, so one lorry's rows
// are spread over the whole table as they would be. Owners are null: made outside the API.
// $4 bookings per lorry.
const SPREAD_ROWS = `
  SELECT l.id AS resource_id,
         allocation_range(s, s + (2 + (n + i) % 11) * interval '1 hour') AS during,
         CASE WHEN (n + i) % 50 = 0 THEN 'maintenance' ELSE 'booking' END AS kind,
         CASE WHEN (n * 7 + i) % 25 = 0 THEN 'cancelled' ELSE 'confirmed' END AS status,
         CASE WHEN (n * 7 + i) % 25 = 0 THEN now() END AS cancelled_at,
         'bench load' AS description
  FROM generate_series(0, $4::int - 1) AS i
  CROSS JOIN (${LORRIES}) AS l
  CROSS JOIN LATERAL (SELECT $3::timestamptz + i * interval '${BOOKING_SPACING_DAYS} days'
                             + ((n * 37 + i * 11) % 150) * interval '1 hour' AS s) AS t
  WHERE n BETWEEN $1::int AND $2::int
  ORDER BY i, n`

// The synchronised fleet: lorry n's booking i is day i from 00:00 to 03:00 UTC, all
// confirmed, written day by day as a live system would.
const TIGHT_ROWS = `
  SELECT l.id AS resource_id,
         allocation_range(s, s + interval '3 hours') AS during,
         'booking' AS kind, 'confirmed' AS status, NULL::timestamptz AS cancelled_at,
         'bench load' AS description
  FROM generate_series(0, $4::int - 1) AS i
  CROSS JOIN (${LORRIES}) AS l
  CROSS JOIN LATERAL (SELECT $3::timestamptz + i * interval '1 day' AS s) AS t
  WHERE n BETWEEN $1::int AND $2::int
  ORDER BY i, n`

const ALLOCATION_ROWS: Record<Shape, string> = { spread: SPREAD_ROWS, tight: TIGHT_ROWS }

const COLUMNS = 'resource_id, during, kind, status, cancelled_at, description'

// The history row the allocation_record_event trigger writes for an insert: new_row is
// allocation_snapshot(a, type), spelled out for the rows the CTE returns (a function of the
// allocation row type cannot take them). utc_text() is inlined since migration 008.
// loadData checks a sample of rows against allocation_snapshot itself, so a change to that
// function cannot make this copy wrong unnoticed.
const SNAPSHOT = `jsonb_build_object(
    'id', l.id, 'resource_id', l.resource_id, 'resource_type', r.type,
    'starts_at', utc_text(lower(l.during)), 'ends_at', utc_text(upper(l.during)),
    'kind', l.kind, 'status', l.status, 'description', l.description, 'data', l.data,
    'created_at', utc_text(l.created_at), 'updated_at', utc_text(l.updated_at),
    'cancelled_at', utc_text(l.cancelled_at), 'expires_at', utc_text(l.expires_at),
    'owner_id', l.owner_id, 'updated_by', l.updated_by,
    'buffer_before', CASE WHEN l.buffer_before <> '0' THEN iso_duration(l.buffer_before) END,
    'buffer_after', CASE WHEN l.buffer_after <> '0' THEN iso_duration(l.buffer_after) END,
    'series_id', l.series_id)`

// The fast way, and the one the benchmark uses: each loader session runs with
// session_replication_role = replica, which turns off the user triggers (and the foreign
// key triggers) for that session only, and writes the history rows the trigger would
// have written in the same statement, from the inserted rows (and REBUILD_FREE_TIME then
// writes the free time the gap triggers would have kept). The exclusion constraint
// and the checks still judge every row (they are constraints, not triggers); the foreign
// keys are checked afterwards in one query (FOREIGN_KEYS_HOLD). The hold-expiry trigger
// has nothing to do: no holds are loaded. The rows are history from before the benchmark,
// not news: position 0 keeps them out of the change feed, as migration 14 did for the
// history it found (the API would otherwise spend the first minutes numbering them).
const bulkInsert = (shape: Shape) => `
  WITH loaded AS (
    INSERT INTO allocation (${COLUMNS})
    ${ALLOCATION_ROWS[shape]}
    RETURNING *
  )
  INSERT INTO allocation_event (allocation_id, operation, new_row, position)
  SELECT l.id, 'insert', ${SNAPSHOT}, 0
  FROM loaded l JOIN resource r ON r.id = l.resource_id`

// The slow, obvious way: one statement, every row through the row triggers.
const triggerInsert = (shape: Shape) => `INSERT INTO allocation (${COLUMNS}) ${ALLOCATION_ROWS[shape]}`

const FOREIGN_KEYS_HOLD = `
  SELECT NOT EXISTS (SELECT 1 FROM allocation a WHERE NOT EXISTS (SELECT 1 FROM resource r WHERE r.id = a.resource_id)) AS ok`

const HISTORY_MATCHES = `
  SELECT count(*)::int AS checked, count(*) FILTER (WHERE e.new_row = allocation_snapshot(a, r.type))::int AS same,
         (SELECT count(*) FROM allocation)::int AS allocations, (SELECT count(*) FROM allocation_event)::int AS history
  FROM (SELECT * FROM allocation ORDER BY random() LIMIT 2000) a
  JOIN resource r ON r.id = a.resource_id
  JOIN allocation_event e ON e.allocation_id = a.id AND e.operation = 'insert'`

// The change feed starts numbered (the resources' events, and the history the slow load
// wrote through the trigger), so that the API does not number a backlog while it is measured.
const NUMBER_BACKLOG = 'SELECT event_number_committed(10000) AS numbered'

// The triggers that keep each resource's free time (resource_gap) are off too: each load
// session writes its lorries' afresh after its allocations. resource_gap's indexes are
// dropped for the load and built anew after it, each in its own session, as a bulk load
// would: quicker than growing them row by row.
const REBUILD_FREE_TIME = `SELECT resource_gap_rebuild(array(SELECT l.id FROM (${LORRIES}) AS l WHERE l.n BETWEEN $1::int AND $2::int))`

interface IndexDefinition { name: string, definition: string }

async function dropIndexes (client: pg.Client, table: string): Promise<IndexDefinition[]> {
  const indexes = (await client.query<IndexDefinition>(`
    SELECT indexname AS name, indexdef AS definition FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = $1`, [table])).rows
  for (const index of indexes) await client.query(`DROP INDEX ${index.name}`)
  return indexes
}

async function buildIndexes (url: string, indexes: IndexDefinition[]): Promise<void> {
  await Promise.all(indexes.map(async (index) => {
    const builder = await session(url)
    try {
      await builder.query(index.definition)
    } finally {
      await builder.end()
    }
  }))
}

async function session (url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url })
  // Cleanup stops the server under us on Ctrl-C: that is not a crash.
  client.on('error', () => undefined)
  await client.connect()
  // The history's application column says where the rows came from.
  await client.query('SET application_name = \'invsys-bench-load\'')
  await client.query('SET TimeZone = \'UTC\'')
  return client
}

/**
 * Loads a fresh database (schema created, no rows yet) and returns how long each part
 * took. The bulk method splits the lorries between `jobs` sessions that load at once.
 */
export async function loadData (url: string, options: LoadOptions): Promise<LoadTimings> {
  const shape = options.shape ?? 'spread'
  const bookings = options.bookings ?? BOOKINGS_PER_LORRY
  const client = await session(url)
  try {
    let start = performance.now()
    await client.query('BEGIN')
    await client.query(`INSERT INTO site (name, country) SELECT 'Bench depot ' || s, 'Portugal' FROM generate_series(1, ${SITES}) AS s`)
    await client.query(`
      INSERT INTO resource (id, type, name, site_id)
      SELECT gen_random_uuid(), 'lorry', 'lorry-' || lpad(n::text, 6, '0'),
             (SELECT min(id) FROM site) + n % $2::int
      FROM generate_series(1, $1::int) AS n`, [options.lorries, options.sites ?? SITES])
    await client.query(`
      INSERT INTO resource (id, type, name, site_id)
      SELECT gen_random_uuid(), 'car', 'car-' || lpad(n::text, 6, '0'),
             (SELECT min(id) FROM site) + n % ${SITES}
      FROM generate_series(1, ${CARS}) AS n`)
    await client.query('COMMIT')
    const resourcesSeconds = seconds(start)

    start = performance.now()
    if (options.method === 'bulk') {
      const indexes = await dropIndexes(client, 'resource_gap')
      const jobs = Math.max(1, Math.min(options.jobs, options.lorries))
      const per = Math.ceil(options.lorries / jobs)
      await Promise.all(Array.from({ length: jobs }, async (_, job) => {
        const loader = await session(url)
        try {
          const lorries = [job * per + 1, Math.min(options.lorries, (job + 1) * per)]
          await loader.query('SET session_replication_role = replica')
          await loader.query(bulkInsert(shape), [...lorries, options.base.toISOString(), bookings])
          await loader.query(REBUILD_FREE_TIME, lorries)
        } finally {
          await loader.end()
        }
      }))
      if (!(await client.query<{ ok: boolean }>(FOREIGN_KEYS_HOLD)).rows[0]!.ok) {
        throw new Error('bulk load: an allocation names a resource that does not exist')
      }
      await buildIndexes(url, indexes)
    } else {
      await client.query(triggerInsert(shape), [1, options.lorries, options.base.toISOString(), bookings])
    }
    const allocationsSeconds = seconds(start)

    for (let numbered = 1; numbered > 0;) numbered = (await client.query<{ numbered: number }>(NUMBER_BACKLOG)).rows[0]!.numbered

    start = performance.now()
    await client.query('VACUUM (ANALYZE) site, resource, resource_gap, allocation, allocation_event, resource_event, account, api_token')
    await client.query('CHECKPOINT')
    const vacuumSeconds = seconds(start)

    const check = (await client.query<{ checked: number, same: number, allocations: number, history: number }>(HISTORY_MATCHES)).rows[0]!
    if (check.checked === 0 || check.same !== check.checked || check.history !== check.allocations) {
      throw new Error(`load: history does not match what the trigger writes (${check.same} of ${check.checked} sampled rows the same; ${check.history} events for ${check.allocations} allocations)`)
    }
    return {
      method: options.method,
      jobs: options.method === 'bulk' ? options.jobs : 1,
      resourcesSeconds,
      allocationsSeconds,
      vacuumSeconds,
      allocations: check.allocations,
      historyRows: check.history,
      historySampleChecked: check.checked
    }
  } finally {
    await client.end()
  }
}

/** Sizes of the tables and indexes that matter, for the report. */
export async function relationSizes (client: pg.ClientBase): Promise<Record<string, string>> {
  const { rows } = await client.query<{ name: string, size: string }>(`
    SELECT c.relname AS name, pg_size_pretty(pg_total_relation_size(c.oid)) AS size
    FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
    WHERE ns.nspname = 'public' AND c.relname IN ('allocation', 'allocation_event', 'resource', 'resource_gap')
    ORDER BY pg_total_relation_size(c.oid) DESC`)
  return Object.fromEntries(rows.map((row) => [row.name, row.size]))
}

/** Midnight UTC `days` days before now. */
export function daysAgo (days: number): Date {
  const today = new Date()
  today.setUTCHours(0, 0, 0, 0)
  return new Date(today.getTime() - days * DAY_MS)
}
