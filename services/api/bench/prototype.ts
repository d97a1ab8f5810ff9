/**
 * Measures the changes docs/performance.md proposes, on a throwaway database at one scale
 * point (default 1m allocations, loaded as npm run bench loads it): each read as the API
 * sends it today and as proposed, with the same parameters, the rows compared, and the
 * write path with pgbench before and after. Nothing here changes the repository's schema:
 * the indexes and functions are created in the throwaway database only.
 *
 *   npm run bench:prototype -- [--scale=1m] [--runs=25] [--duration=10]
 *
 * Writes services/api/bench/results/prototype-latest.md.
 *
 * The allocation list and the booking INSERT are imported from src/database; the
 * resource list, free time, slots and history queries are not exported there, so they are
 * copied below verbatim (as of the commit that added this file).
 */
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { repoRoot } from '../src/config.js'
import { AUTHENTICATE, createFirstAdmin } from '../src/database/accounts.js'
import { INSERT, LIST as ALLOCATION_LIST } from '../src/database/allocations.js'
import { startEmbeddedPostgres } from '../src/boot/embedded.js'
import { ensureSchema } from './lib/schema.js'
import { generateToken, hashToken, tokenDisplayPrefix } from '../src/tokens.js'
import { BOOKING_SPACING_DAYS, BOOKINGS_PER_LORRY, DAY_MS, CARS, carIdSql, daysAgo, loadData, resourceIds } from './lib/data.js'
import { ensurePgbench, runPgbench, type PgbenchResult } from './lib/pgbench.js'
import { cleanupAll, defer, freePort, installExitHandlers, stopPostgresAtExit, tempDir } from './lib/processes.js'

const argv = process.argv.slice(2)
const option = (name: string) => argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
const scaleText = option('scale') ?? '1m'
const allocations = Number(/^(\d+)/.exec(scaleText)?.[1] ?? 1) * ({ k: 1e3, m: 1e6 }[scaleText.slice(-1).toLowerCase()] ?? 1)
const lorries = Math.max(1, Math.round(allocations / BOOKINGS_PER_LORRY))
const runs = Number(option('runs') ?? 25)
const durationSeconds = Number(option('duration') ?? 10)
installExitHandlers(30 * 60_000)

// ---- today's SQL, copied (see the header) -----------------------------------------

// src/database/resources.ts LIST
const RESOURCE_LIST = `
  SELECT id, type, name, site_id, mac::text AS mac, created_at, updated_at
  FROM resource r
  WHERE ($1::text IS NULL OR r.type = $1)
    AND ($2::bigint IS NULL OR r.site_id = $2)
    AND (NOT $3::boolean OR NOT EXISTS (
          SELECT 1 FROM allocation a
          WHERE a.resource_id = r.id
            AND allocation_blocks(a.status, a.expires_at)
            AND a.during && tstzrange($4::timestamptz, $5::timestamptz, '[)')))
  ORDER BY r.type, r.name, r.id
  LIMIT $6 OFFSET $7`

// src/database/availability.ts FREE and SLOTS
const FREE = `
  SELECT lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM resource r
  CROSS JOIN LATERAL unnest(resource_free_time(r.id, tstzrange($3, $4, '[)'))) AS gap
  WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
  ORDER BY lower(gap)
  LIMIT $5 OFFSET $6`

const SLOTS = `
  SELECT r.id AS resource_id, r.name AS resource_name, lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM resource r
  CROSS JOIN LATERAL unnest(resource_free_time(r.id, tstzrange($3, $4, '[)'))) AS gap
  WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
    AND lower(gap) + $5::interval <= upper(gap)
  ORDER BY lower(gap), r.name, r.id
  LIMIT $6 OFFSET $7`

// src/database/history.ts LIST
const HISTORY = `
  SELECT id, allocation_id, operation, at, actor_id, db_user, application, old_row AS old, new_row AS new
  FROM allocation_event
  WHERE allocation_id = $1
  ORDER BY id
  LIMIT $2 OFFSET $3`

// ---- proposed SQL ---------------------------------------------------------------------

/** Replaces `from` in `sql`, or fails loudly when today's SQL no longer has it. */
function rewrite (sql: string, from: string, to: string): string {
  if (!sql.includes(from)) throw new Error(`prototype: the SQL no longer contains ${JSON.stringify(from)}; update prototype.ts`)
  return sql.replace(from, to)
}

// The status filter as plain conditions on the stored columns instead of
// allocation_current_status() = $7 (a CASE the planner can neither estimate, guessing
// 0.5% of rows, nor prove anything from). With the parameter known, 'confirmed' folds to
// a.status = 'confirmed': estimated from the column's statistics, and implying the
// exclusion constraint's partial predicate, so its (resource_id, during) index is usable.
const STATUS_TODAY = 'AND ($7::text = \'all\' OR allocation_current_status(a.status, a.expires_at) = $7)'
const STATUS_SARGABLE = `AND ($7::text = 'all'
         OR ($7::text IN ('confirmed', 'cancelled') AND a.status = $7)
         OR ($7::text = 'held' AND a.status = 'held' AND a.expires_at > now())
         OR ($7::text = 'expired' AND (a.status = 'expired' OR (a.status = 'held' AND a.expires_at <= now()))))`
const ALLOCATION_LIST_SARGABLE = rewrite(ALLOCATION_LIST, STATUS_TODAY, STATUS_SARGABLE)

// Two statements instead of one with "NOT $3 OR NOT EXISTS": an EXISTS under an OR is never
// turned into an anti-join, so today the planner can only hash every blocking allocation
// of the window (all resources) before it reads the first resource.
const RESOURCE_LIST_WINDOWED = rewrite(RESOURCE_LIST, 'AND (NOT $3::boolean OR NOT EXISTS (', 'AND $3::boolean AND (NOT EXISTS (')

// Set-based: one pass over the window's blocking allocations (GiST index on during), one
// range_agg per busy resource, and the same multirange difference resource_free_time()
// computes, instead of one call of that function (one index probe and one executor start)
// per resource of the type.
const SLOTS_SET_BASED = `
  WITH busy AS (
    SELECT a.resource_id, range_agg(a.during) AS taken
    FROM allocation a
    JOIN resource r ON r.id = a.resource_id
    WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
      AND allocation_blocks(a.status, a.expires_at)
      AND a.during && tstzrange($3, $4, '[)')
    GROUP BY a.resource_id
  )
  SELECT r.id AS resource_id, r.name AS resource_name, lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM resource r
  LEFT JOIN busy b ON b.resource_id = r.id
  CROSS JOIN LATERAL unnest(tstzmultirange(tstzrange($3, $4, '[)')) - coalesce(b.taken, '{}'::tstzmultirange)) AS gap
  WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
    AND lower(gap) + $5::interval <= upper(gap)
  ORDER BY lower(gap), r.name, r.id
  LIMIT $6 OFFSET $7`

// Free time of one resource, inlined (no function call, so no separate executor and a
// plan made with the real parameters).
const FREE_INLINE = `
  SELECT lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM resource r
  CROSS JOIN LATERAL (
    SELECT tstzmultirange(tstzrange($3, $4, '[)')) - coalesce(range_agg(a.during), '{}'::tstzmultirange) AS free
    FROM allocation a
    WHERE a.resource_id = r.id AND allocation_blocks(a.status, a.expires_at) AND a.during && tstzrange($3, $4, '[)')
  ) f
  CROSS JOIN LATERAL unnest(f.free) AS gap
  WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
  ORDER BY lower(gap)
  LIMIT $5 OFFSET $6`

// The global list ordered by start: split the window into what started before it and is
// still running at its start (during @> from: few rows, found with the GiST index on
// during) and what starts inside it, read in start order from a btree on lower(during)
// and stopped after a page (which needs the status filter estimated right, hence
// STATUS_SARGABLE).
// Today the whole window is fetched and sorted to keep 101 rows. (For a window without
// from, the code would keep today's query.)
const ALLOCATION_COLUMNS = `a.id, a.resource_id, r.type AS resource_type,
         lower(a.during) AS starts_at, upper(a.during) AS ends_at,
         a.kind, allocation_current_status(a.status, a.expires_at) AS status, a.description, a.data,
         a.created_at, a.updated_at, a.cancelled_at, a.expires_at, a.owner_id, a.updated_by`
const ALLOCATION_FILTERS = `($1::uuid IS NULL OR a.resource_id = $1)
    AND ($2::text IS NULL OR r.type = $2)
    AND ($3::bigint IS NULL OR r.site_id = $3)
    AND ($6::text IS NULL OR a.kind = $6)
    ${STATUS_SARGABLE}`
const ALLOCATION_LIST_SPLIT = `
  SELECT * FROM (
    (SELECT ${ALLOCATION_COLUMNS}
     FROM allocation a JOIN resource r ON r.id = a.resource_id
     WHERE ${ALLOCATION_FILTERS}
       AND a.during @> $4::timestamptz
       AND (lower_inf(a.during) OR lower(a.during) < $4::timestamptz))
    UNION ALL
    (SELECT ${ALLOCATION_COLUMNS}
     FROM allocation a JOIN resource r ON r.id = a.resource_id
     WHERE ${ALLOCATION_FILTERS}
       AND lower(a.during) >= $4::timestamptz AND lower(a.during) < $5::timestamptz
     ORDER BY lower(a.during) NULLS FIRST, a.id
     LIMIT $8::bigint + $9::bigint)
  ) page
  ORDER BY starts_at ASC NULLS FIRST, id
  LIMIT $8 OFFSET $9`

const INDEXES = {
  // Window-only searches of live rows (available resources, slots) today pick the
  // exclusion constraint's partial GiST index for its predicate, although its first
  // column is resource_id: with random ids a search on during alone visits most of it.
  liveDuring: 'CREATE INDEX allocation_live_during_idx ON allocation USING gist (during) WHERE status IN (\'held\', \'confirmed\')',
  resourceId: 'CREATE INDEX allocation_resource_id_idx ON allocation (resource_id)',
  resourceDuring: 'CREATE INDEX allocation_resource_id_during_idx ON allocation USING gist (resource_id, during)',
  startsAt: 'CREATE INDEX allocation_starts_at_idx ON allocation (lower(during) NULLS FIRST, id)'
}

// utc_text without its SET TimeZone clause, so PostgreSQL can inline it: the same text,
// "2030-06-01T08:00:00Z" with fractional seconds as to_json writes them, whatever the
// session's TimeZone. Checked below against every loaded history row it would rewrite.
const UTC_TEXT_INLINABLE = `
  CREATE OR REPLACE FUNCTION utc_text(t timestamptz) RETURNS text
  LANGUAGE sql STABLE AS $$
    SELECT (to_json(t AT TIME ZONE 'UTC') #>> '{}') || 'Z'
  $$`

// ---- measuring -----------------------------------------------------------------------

interface Timing { name: string, variant: string, medianMs: number, p95Ms: number, rows: number, same?: boolean }

function random (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

async function main (): Promise<void> {
  const started = performance.now()
  const pgbenchVersion = ensurePgbench()
  const work = await tempDir('invsys-prototype-')
  const cluster = await startEmbeddedPostgres({ dataDir: path.join(work, 'data'), port: await freePort(), database: 'prototype' })
  defer('stop PostgreSQL', () => cluster.stop())
  stopPostgresAtExit(path.join(work, 'data'))
  await ensureSchema(cluster.url)
  const token = generateToken()
  const db = new pg.Client({ connectionString: cluster.url, options: '-c TimeZone=UTC -c DateStyle=ISO,YMD' })
  db.on('error', () => undefined)
  await db.connect()
  defer('close the connection', () => db.end())
  const setup = new pg.Pool({ connectionString: cluster.url, max: 1 })
  await createFirstAdmin(setup, { hash: hashToken(token), prefix: tokenDisplayPrefix(token) })
  await setup.end()
  const base = daysAgo(350)
  console.log(`loading ${allocations.toLocaleString('en-GB')} allocations (${lorries} lorries)`)
  const load = await loadData(cluster.url, { lorries, base, method: 'bulk', jobs: 2 })
  console.log(`loaded in ${load.allocationsSeconds.toFixed(1)} s; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`)
  const sampleIds = (await db.query<{ id: string }>('SELECT id FROM allocation ORDER BY random() LIMIT 200')).rows.map((row) => row.id)

  const spanDays = BOOKINGS_PER_LORRY * BOOKING_SPACING_DAYS
  const params = (seed: number, make: (rand: () => number, window: (days: number) => [string, string]) => unknown[]) => {
    const rand = random(seed)
    const window = (days: number): [string, string] => {
      const from = base.getTime() + Math.floor(rand() * (spanDays - days)) * DAY_MS
      return [new Date(from).toISOString(), new Date(from + days * DAY_MS).toISOString()]
    }
    return Array.from({ length: runs }, () => make(rand, window))
  }
  const ids = await resourceIds(cluster.url, 'lorry')
  const lorry = (rand: () => number) => ids[Math.floor(rand() * ids.length)]!
  const cases = {
    'allocations of one lorry, month': params(1, (rand, w) => [lorry(rand), 'lorry', null, ...w(30), null, 'confirmed', 101, 0]),
    'allocations, type=lorry, day': params(2, (_, w) => [null, 'lorry', null, ...w(1), null, 'confirmed', 101, 0]),
    'allocations, type=lorry, month': params(3, (_, w) => [null, 'lorry', null, ...w(30), null, 'confirmed', 101, 0]),
    'allocations, site 3, week': params(4, (_, w) => [null, null, 3, ...w(7), null, 'confirmed', 101, 0]),
    'available lorries, day': params(5, (_, w) => ['lorry', null, true, ...w(1), 101, 0]),
    'available lorries, month': params(6, (_, w) => ['lorry', null, true, ...w(30), 101, 0]),
    'free time of one lorry, month': params(7, (rand, w) => [lorry(rand), null, ...w(30), 101, 0]),
    'slots, lorries, week, PT2H': params(8, (_, w) => ['lorry', null, ...w(7), 'PT2H', 101, 0]),
    'history of one allocation': params(9, (rand) => [sampleIds[Math.floor(rand() * sampleIds.length)], 101, 0])
  } satisfies Record<string, unknown[][]>

  const timings: Timing[] = []
  const explains: Array<{ title: string, plan: string }> = []
  const reference = new Map<string, string[]>()

  async function time (name: keyof typeof cases, variant: string, sql: string, limit = runs): Promise<void> {
    const sets = cases[name].slice(0, limit)
    await db.query(sql, sets[0]) // warm-up
    const ms: number[] = []
    const results: string[] = []
    let rows = 0
    for (const set of sets) {
      const start = performance.now()
      const result = await db.query(sql, set)
      ms.push(performance.now() - start)
      results.push(JSON.stringify(result.rows))
      rows += result.rowCount ?? 0
    }
    ms.sort((a, b) => a - b)
    const known = reference.get(name)
    if (!known) reference.set(name, results)
    const same = known ? results.every((text, i) => i >= known.length || text === known[i]) : undefined
    if (same === false && process.env.PROTOTYPE_DEBUG) {
      const i = results.findIndex((text, j) => j < known!.length && text !== known![j])
      const a = JSON.parse(known![i]!) as unknown[]
      const b = JSON.parse(results[i]!) as unknown[]
      const k = a.findIndex((row, j) => JSON.stringify(row) !== JSON.stringify(b[j]))
      console.log('first difference', JSON.stringify(sets[i]), k, JSON.stringify(a[k]), JSON.stringify(b[k]))
    }
    const timing = { name, variant, medianMs: ms[Math.floor(ms.length / 2)]!, p95Ms: ms[Math.floor(ms.length * 0.95)]!, rows: Math.round(rows / sets.length), same }
    timings.push(timing)
    console.log(`${name.padEnd(34)} ${variant.padEnd(44)} median ${timing.medianMs.toFixed(2).padStart(8)} ms  p95 ${timing.p95Ms.toFixed(2).padStart(8)} ms  rows ${timing.rows}${same === undefined ? '' : same ? '  same rows' : '  ROWS DIFFER'}`)
    const plan = (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, sets[0])).rows.map((row) => row['QUERY PLAN']).join('\n')
    explains.push({ title: `${name}: ${variant}`, plan })
  }

  // PROTOTYPE_ONLY=list: only the allocation list cases (a quicker run while iterating).
  const only = process.env.PROTOTYPE_ONLY
  if (only === 'list') {
    await time('allocations of one lorry, month', 'today', ALLOCATION_LIST)
    await time('allocations of one lorry, month', 'status filter on stored columns', ALLOCATION_LIST_SARGABLE)
    for (const name of ['allocations, type=lorry, day', 'allocations, type=lorry, month', 'allocations, site 3, week'] as const) {
      await time(name, 'today', ALLOCATION_LIST)
      await time(name, 'status filter on stored columns', ALLOCATION_LIST_SARGABLE)
    }
    await db.query(INDEXES.liveDuring)
    await db.query(INDEXES.startsAt)
    await db.query('ANALYZE allocation')
    for (const name of ['allocations, type=lorry, day', 'allocations, type=lorry, month', 'allocations, site 3, week'] as const) {
      await time(name, 'split at from + btree (lower(during), id) + gist (during) WHERE live', ALLOCATION_LIST_SPLIT)
    }
    await writeReport('prototype-list-latest.md', `PROTOTYPE_ONLY=list, ${allocations.toLocaleString('en-GB')} allocations, ${runs} runs per query`, timings, [], explains, '')
    return
  }

  // -- reads, today and rewritten, on today's schema
  await time('allocations of one lorry, month', 'today', ALLOCATION_LIST)
  await time('allocations of one lorry, month', 'status filter on stored columns', ALLOCATION_LIST_SARGABLE)
  await time('allocations, type=lorry, day', 'today', ALLOCATION_LIST)
  await time('allocations, type=lorry, month', 'today', ALLOCATION_LIST)
  await time('allocations, type=lorry, month', 'status filter on stored columns', ALLOCATION_LIST_SARGABLE)
  await time('allocations, site 3, week', 'today', ALLOCATION_LIST)
  await time('available lorries, day', 'today', RESOURCE_LIST)
  await time('available lorries, day', 'NOT EXISTS without OR', RESOURCE_LIST_WINDOWED)
  await time('available lorries, month', 'today', RESOURCE_LIST)
  // Seconds at 1m without a better index (see the doc): a few runs are enough.
  await time('available lorries, month', 'NOT EXISTS without OR', RESOURCE_LIST_WINDOWED, 3)
  await time('free time of one lorry, month', 'today', FREE)
  await time('free time of one lorry, month', 'inlined range_agg', FREE_INLINE)
  // Today's slot search takes seconds at 1m: a few runs are enough.
  await time('slots, lorries, week, PT2H', 'today', SLOTS, 3)
  await time('slots, lorries, week, PT2H', 'set-based range_agg', SLOTS_SET_BASED)
  await time('history of one allocation', 'today', HISTORY)

  // -- a partial GiST index on during for live rows: kept for everything below
  {
    const start = performance.now()
    await db.query(INDEXES.liveDuring)
    await db.query('ANALYZE allocation')
    console.log(`${INDEXES.liveDuring} (${((performance.now() - start) / 1000).toFixed(1)} s)`)
  }
  await time('available lorries, day', 'today + gist (during) WHERE live', RESOURCE_LIST)
  await time('available lorries, month', 'today + gist (during) WHERE live', RESOURCE_LIST)
  await time('slots, lorries, week, PT2H', 'set-based range_agg + gist (during) WHERE live', SLOTS_SET_BASED)

  // -- the write path, today's schema (and the partial index above)
  const pgbenchDir = path.join(work, 'pgbench')
  await fs.mkdir(pgbenchDir)
  const adminId = Number((await db.query<{ id: string }>('SELECT id FROM account WHERE name = \'admin\'')).rows[0]!.id)
  const common = { databaseUrl: cluster.url, clients: 8, durationSeconds, workDir: pgbenchDir, adminId, tokenHashHex: hashToken(token).toString('hex') }
  // The booking as one autocommit statement: set_config runs in the statement that inserts
  // (the triggers fire after it), so BEGIN, the separate set_config and COMMIT go away.
  const oneStatement = rewrite(INSERT, 'FROM resource r\n', "FROM resource r, (SELECT set_config('invsys.actor', $10::text, true)) AS actor\n")
  const writes: Array<{ name: string, result: PgbenchResult }> = []
  let year = 2035
  const bench = async (name: string, script: 'bare' | 'chain', scriptText?: string) => {
    const result = await runPgbench({ ...common, script, scriptText, timeBase: Date.UTC((year += 5) - 5, 0, 1) / 1000 })
    writes.push({ name, result })
    console.log(`pgbench ${name.padEnd(70)} ${result.tps.toFixed(0).padStart(6)} tps  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms  failed ${result.failed}`)
  }
  // Alternated, twice each: on a shared machine the load drifts between runs.
  for (let round = 1; round <= 2; round++) {
    await bench(`today: token lookup, BEGIN, set_config, INSERT, COMMIT (5 round trips), run ${round}`, 'chain')
    await bench(`proposed: token lookup, INSERT with set_config inside (2 round trips), run ${round}`, 'chain', chainScript(oneStatement))
  }
  // Years 2035 to 2054 (five a run): every history row of those bookings must name the actor.
  const actors = (await db.query<{ missing: number, events: number }>(`
    SELECT count(*) FILTER (WHERE e.actor_id IS DISTINCT FROM $1)::int AS missing, count(*)::int AS events
    FROM allocation a JOIN allocation_event e ON e.allocation_id = a.id
    WHERE a.during && tstzrange('2035-01-01', '2055-01-01')`, [adminId])).rows[0]!
  console.log(`bookings through the chain and the one statement: ${actors.missing} of ${actors.events} history rows without the actor`)
  await bench('today: the INSERT alone, run 1', 'bare')

  // -- utc_text inlinable: same history text, cheaper trigger
  const utcTextToday = (await db.query<{ def: string }>('SELECT pg_get_functiondef(\'utc_text(timestamptz)\'::regprocedure) AS def')).rows[0]!.def
  await db.query(UTC_TEXT_INLINABLE)
  const check = (await db.query<{ differ: number, checked: number }>(`
    SELECT count(*) FILTER (WHERE e.new_row <> allocation_snapshot(a))::int AS differ, count(*)::int AS checked
    FROM allocation a JOIN allocation_event e ON e.allocation_id = a.id AND e.operation = 'insert'`)).rows[0]!
  console.log(`utc_text without SET TimeZone: ${check.differ} of ${check.checked} history rows would read differently`)
  await bench('utc_text inlinable: the INSERT alone, run 1', 'bare')
  await db.query(utcTextToday)
  await bench('today: the INSERT alone, run 2', 'bare')
  await db.query(UTC_TEXT_INLINABLE)
  await bench('utc_text inlinable: the INSERT alone, run 2', 'bare')

  // -- indexes for lookups by resource: a btree on resource_id (also what ON DELETE CASCADE
  // from resource needs), then instead a GiST (resource_id, during) without the partial
  // predicate. (Rebuilding the exclusion constraint's index, grown row by row, changed
  // nothing with random ids: 1.13 → 1.21 ms for free time, after 90 s of REINDEX.)
  const index = async (sql: string) => {
    const start = performance.now()
    await db.query(sql)
    await db.query('ANALYZE allocation')
    console.log(`${sql} (${((performance.now() - start) / 1000).toFixed(1)} s)`)
  }
  const lookups = async (variant: string) => {
    await time('allocations of one lorry, month', variant, ALLOCATION_LIST)
    await time('free time of one lorry, month', variant, FREE)
    await time('free time of one lorry, month', `${variant}, inlined range_agg`, FREE_INLINE)
    await time('available lorries, month', `${variant}, NOT EXISTS without OR`, RESOURCE_LIST_WINDOWED)
  }
  await index(INDEXES.resourceId)
  await lookups('today + btree (resource_id)')
  await bench('utc_text inlinable + btree (resource_id): the INSERT alone', 'bare')
  await index('DROP INDEX allocation_resource_id_idx')
  await index(INDEXES.resourceDuring)
  await lookups('today + gist (resource_id, during)')
  await index('DROP INDEX allocation_resource_id_during_idx')
  await index(INDEXES.startsAt)
  await time('allocations, type=lorry, day', 'today + btree (lower(during), id)', ALLOCATION_LIST)
  await time('allocations, type=lorry, month', 'today + btree (lower(during), id)', ALLOCATION_LIST)
  await time('allocations, site 3, week', 'today + btree (lower(during), id)', ALLOCATION_LIST)
  await time('allocations, type=lorry, day', 'split at from + btree (lower(during), id)', ALLOCATION_LIST_SPLIT)
  await time('allocations, type=lorry, month', 'split at from + btree (lower(during), id)', ALLOCATION_LIST_SPLIT)
  await time('allocations, site 3, week', 'split at from + btree (lower(during), id)', ALLOCATION_LIST_SPLIT)
  await index(INDEXES.resourceId)
  await bench('utc_text inlinable + btree (resource_id) + btree (lower(during), id): the INSERT alone', 'bare')

  await writeReport('prototype-latest.md',
    `${allocations.toLocaleString('en-GB')} allocations, ${runs} runs per query (client-side time, one connection), pgbench 8 clients ${durationSeconds} s, ${pgbenchVersion}. Bulk load ${load.allocationsSeconds.toFixed(1)} s.`,
    timings, writes, explains,
    `utc_text without SET TimeZone: ${check.differ} of ${check.checked} history rows read differently. Bookings through the chain and the one statement: ${actors.missing} of ${actors.events} history rows without the actor.`)
  console.log(`whole run ${((performance.now() - started) / 1000).toFixed(0)} s`)
}

async function writeReport (
  name: string, head: string, timings: Timing[], writes: Array<{ name: string, result: PgbenchResult }>,
  explains: Array<{ title: string, plan: string }>, checks: string
): Promise<void> {
  const out = [
    '# Prototypes of the proposed changes (npm run bench:prototype)', '',
    `${new Date().toISOString()}: ${head} Shared machine: ${os.cpus().length} cores, load average at the end ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}.`, '',
    '| query | variant | median ms | p95 ms | rows | same rows as today |', '|---|---|---:|---:|---:|---|',
    ...timings.map((t) => `| ${t.name} | ${t.variant} | ${t.medianMs.toFixed(2)} | ${t.p95Ms.toFixed(2)} | ${t.rows} | ${t.same === undefined ? '' : t.same ? 'yes' : '**no**'} |`), '',
    ...(writes.length === 0
      ? []
      : ['| write path (pgbench, -M prepared) | tps | p50 ms | p99 ms | failed |', '|---|---:|---:|---:|---:|',
          ...writes.map((w) => `| ${w.name} | ${w.result.tps.toFixed(0)} | ${w.result.p50Ms.toFixed(2)} | ${w.result.p99Ms.toFixed(2)} | ${w.result.failed} |`), '']),
    checks, '',
    '## Plans (EXPLAIN (ANALYZE, BUFFERS), first parameter set)', '',
    ...explains.flatMap((e) => [`### ${e.title}`, '', '```', e.plan, '```', ''])
  ].join('\n')
  const file = path.join(repoRoot, 'services/api/bench/results', name)
  await fs.mkdir(path.dirname(file), { recursive: true })
  await fs.writeFile(file, out)
  console.log(`\n${path.relative(process.cwd(), file)}`)
}

/** The chain script with the booking as one statement (the set_config inside the INSERT). */
function chainScript (insert: string): string {
  return [
    '\\set n :n + 1', '\\set slot :n * :nclients + :client_id', '\\set car random(1, :ncars)',
    '\\set t0 :tbase + :slot * 7200', '\\set t1 :t0 + 7200',
    `${AUTHENTICATE.trim().replace('$1', ':th')};`,
    `${insert.trim().replace(/\$(\d+)/g, (_, n: string) => [carIdSql(':car'), ':rtype', 'to_timestamp(:t0)', 'to_timestamp(:t1)', ':kind', ':descr', ':data', ':status', ':hold', ':actor'][Number(n) - 1]!)};`
  ].join('\n') + '\n'
}

void CARS
try {
  await main()
  await cleanupAll()
  process.exit(0)
} catch (error) {
  console.error(error)
  await cleanupAll()
  process.exit(1)
}
