import type pg from 'pg'
import { withTransaction, type Db } from './db.js'
import { selectFrom, type Guard, type RuleOptions } from './allocations.js'
import { DomainError, ruleViolation, seriesConflict, type OccurrenceConflict } from './outcomes.js'
import { brokenRulesOfEach, quotaBreachesOfEach, type SpanBreach } from './rules.js'
import type { Actor } from '../schemas/accounts.js'
import type { Allocation } from '../schemas/allocations.js'
import type { Series, SkippedOccurrence } from '../schemas/series.js'

/** What a series is booked as: its rule, and the occurrences the rule gives, first one first. */
export interface NewSeries {
  rrule: string
  time_zone: string
  mode: 'all_or_nothing' | 'skip_conflicts'
  kind: string
  description: string | null
  data: Record<string, unknown>
  occurrences: Array<{ starts_at: string, ends_at: string }>
}

/** A series as stored, without its occurrences: what a guard judges. */
type SeriesRow = Omit<Series, 'allocations' | 'skipped'>

/** The caller's say on changing a series, asked under its row lock (policy, not SQL). */
export type SeriesGuard = (current: SeriesRow) => DomainError | undefined

const SERIES = `
  SELECT s.id, s.resource_id, r.type AS resource_type, s.rrule, s.time_zone, s.mode, s.kind,
         s.starts_at, s.ends_at, s.description, s.data, s.owner_id, s.created_at, s.skipped
  FROM series s
  JOIN resource r ON r.id = s.resource_id
  WHERE s.id = $1`

const LOCK = `${SERIES} FOR UPDATE OF s`

const OCCURRENCES = `
  ${selectFrom('allocation')}
  WHERE a.series_id = $1
  ORDER BY lower(a.during), a.id`

// The series row first, so that every occurrence can name it. Nothing when the resource
// does not exist (or is not of the type $2).
const INSERT_SERIES = `
  INSERT INTO series (resource_id, rrule, time_zone, mode, starts_at, ends_at, kind, description, data, owner_id)
  SELECT r.id, $3, $4, $5, $6, $7, $8, $9, $10, $11
  FROM resource r
  WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
  RETURNING id, resource_id`

// Every occurrence in ONE statement, in order of time, with the same ON CONFLICT DO
// NOTHING as a single booking: an occurrence whose slot is taken is "no row", not an
// error, so simultaneous series back off at once instead of deadlocking. Two series
// inserting in order of time can never wait on each other in a cycle: each waits only
// on a row that starts before the one it is stuck at. The exclusion constraint judges
// each row exactly as it judges a single booking (and run-out holds in the way are
// expired by the same trigger first). $4 is the acting account. $5: the owner's quotas
// must allow each occurrence, counting the occurrences inserted before it: the quota
// check is applied above the ordered subquery (PostgreSQL does not push a volatile
// function below it), so it runs for each row as the insert asks for it, after the row
// before was inserted, and booking_quota_breach() sees that row.
const BOOK = `
  WITH inserted AS (
    INSERT INTO allocation (resource_id, during, kind, description, data, status, owner_id, updated_by, series_id)
    SELECT o.resource_id, o.during, o.kind, o.description, o.data, 'confirmed', o.owner_id, $4, o.series_id
    FROM (
      SELECT s.resource_id, allocation_range(o.starts_at, o.ends_at) AS during, s.kind, s.description, s.data, s.owner_id, s.id AS series_id
      FROM series s
      CROSS JOIN unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS o(starts_at, ends_at, n)
      WHERE s.id = $1
      ORDER BY o.n
      OFFSET 0
    ) AS o
    WHERE NOT $5::boolean OR NOT EXISTS (SELECT 1 FROM booking_quota_breach(o.resource_id, o.during, o.owner_id, NULL, o.series_id))
    ON CONFLICT DO NOTHING
    RETURNING *
  )
  ${selectFrom('inserted')}`

// Of the occurrences asked for, those the series did not get, each with the live
// allocations in its way as the exclusion constraint sees them (each widened by its
// buffers, against the occurrence widened by the buffers in force now): one row per
// pair, or a row of nulls when what was in the way has been cancelled since.
const MISSING = `
  SELECT o.n, o.starts_at AS occurrence_starts_at, o.ends_at AS occurrence_ends_at, c.*
  FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS o(starts_at, ends_at, n)
  LEFT JOIN LATERAL (
    ${selectFrom('allocation')}
    WHERE a.resource_id = $4
      AND allocation_blocks(a.status, a.expires_at)
      AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after)
          && resource_blocked_range($4, allocation_range(o.starts_at, o.ends_at))
  ) c ON true
  WHERE NOT EXISTS (
    SELECT 1 FROM allocation m
    WHERE m.series_id = $1 AND m.during = allocation_range(o.starts_at, o.ends_at))
  ORDER BY o.n, c.starts_at, c.id`

const RECORD_SKIPPED = 'UPDATE series SET skipped = $2 WHERE id = $1'

// The occurrences a cancel takes, locked in id order (as every multi-row lock here is).
const TO_CANCEL = `
  ${selectFrom('allocation')}
  WHERE a.series_id = $1
    AND lower(a.during) >= coalesce($2::timestamptz, now())
    AND allocation_blocks(a.status, a.expires_at)
  ORDER BY a.id
  FOR UPDATE OF a`

const CANCEL = `
  UPDATE allocation SET status = 'cancelled', cancelled_at = now(), expires_at = NULL, updated_by = $2
  WHERE id = ANY ($1::uuid[]) AND allocation_blocks(status, expires_at)`

type MissingRow = Partial<Allocation> & { n: string, occurrence_starts_at: string, occurrence_ends_at: string }

/**
 * The occurrences among `asked` that the series has no allocation for, in order, each
 * with what it overlaps; times as the database writes them.
 */
async function findMissing (db: pg.ClientBase, seriesId: string, resourceId: string, asked: NewSeries['occurrences']): Promise<OccurrenceConflict[]> {
  const { rows } = await db.query<MissingRow>(MISSING, [seriesId, asked.map((o) => o.starts_at), asked.map((o) => o.ends_at), resourceId])
  const missing = new Map<string, OccurrenceConflict>()
  for (const { n, occurrence_starts_at: startsAt, occurrence_ends_at: endsAt, ...allocation } of rows) {
    const entry = missing.get(n) ?? { starts_at: startsAt, ends_at: endsAt, conflicts: [] }
    if (allocation.id) entry.conflicts.push(allocation as Allocation)
    missing.set(n, entry)
  }
  return [...missing.values()]
}

/** The refusal of an all-or-nothing series by the first of `breaches`, saying how many occurrences break a rule. */
function seriesRuleViolation (breaches: SpanBreach[]): DomainError {
  const [{ starts_at: startsAt, refusal }] = breaches as [SpanBreach]
  const n = breaches.length
  return ruleViolation(refusal.code, `${n} occurrence${n === 1 ? '' : 's'} of the series break${n === 1 ? 's' : ''} a booking rule; ` +
    `the first, at ${startsAt}: ${refusal.message}`, refusal.details.rule!)
}

const skippedByRule = ({ starts_at: startsAt, ends_at: endsAt, refusal }: SpanBreach): SkippedOccurrence =>
  ({ starts_at: startsAt, ends_at: endsAt, reason: 'rule', rule: refusal.details.rule!, conflicts: [] })

/**
 * Books every occurrence for `actor`, who owns the series and them, in one transaction.
 * With `options.rules`, each occurrence is first judged by the booking rules that bind
 * members, as a single booking is (notice and advance as of this transaction's now()),
 * and by the member's quotas as it is inserted, counting the occurrences before it.
 * all_or_nothing: an occurrence a rule or quota forbids fails the whole request with its
 * RULE_* refusal, and any occurrence that collides with SERIES_CONFLICT (the transaction
 * rolls back: no series, no occurrence). skip_conflicts: the allowed, free ones are
 * booked, the others recorded as skipped, with the rule or the allocations in their way.
 * Undefined when the resource does not exist (or is not of `type`).
 */
export async function createSeries (
  db: Db, resourceId: string, type: string | undefined, fields: NewSeries, actor: Actor, options: RuleOptions
): Promise<Series | undefined> {
  return withTransaction(db, async (client) => {
    const first = fields.occurrences[0]!
    const { rows: [created] } = await client.query<{ id: string, resource_id: string }>(INSERT_SERIES, [resourceId, type ?? null,
      fields.rrule, fields.time_zone, fields.mode, first.starts_at, first.ends_at, fields.kind, fields.description, fields.data, actor.id])
    if (!created) return undefined
    const skipped: SkippedOccurrence[] = []
    let pending = fields.occurrences
    if (options.rules) {
      const breaches = await brokenRulesOfEach(client, created.resource_id, pending)
      if (breaches.length > 0 && fields.mode === 'all_or_nothing') throw seriesRuleViolation(breaches)
      skipped.push(...breaches.map(skippedByRule))
      const broken = new Set(breaches.map((b) => b.index))
      pending = pending.filter((_, i) => !broken.has(i))
    }
    // An occurrence found missing with nothing in its way was refused by a quota, or lost
    // its slot to an allocation cancelled in between: the latter is tried again, as a
    // single booking would be.
    for (let attempt = 1; pending.length > 0; attempt++) {
      const { rowCount } = await client.query(BOOK, [created.id, pending.map((o) => o.starts_at), pending.map((o) => o.ends_at), actor.id, options.rules])
      if (rowCount === pending.length) break
      const missing = await findMissing(client, created.id, created.resource_id, pending)
      const crowded = missing.find((m) => m.conflicts.some((c) => c.series_id === created.id))
      if (crowded) {
        throw new DomainError('SERIES_OVERLAPS_ITSELF', `with the resource's buffers (GET …/rules), the occurrence at ${crowded.starts_at} ` +
          'comes too close to an earlier one of the same series: space the occurrences further apart or make them shorter')
      }
      const unobstructed = missing.filter((m) => m.conflicts.length === 0)
      const overQuota = options.rules && unobstructed.length > 0
        ? await quotaBreachesOfEach(client, created.resource_id, created.id, actor.id, unobstructed)
        : []
      if (overQuota.length > 0 && fields.mode === 'all_or_nothing') throw seriesRuleViolation(overQuota)
      skipped.push(...overQuota.map(skippedByRule))
      const refused = new Set(overQuota.map((b) => unobstructed[b.index]))
      const retry = attempt < 5 ? unobstructed.filter((m) => !refused.has(m)) : []
      skipped.push(...missing.filter((m) => !retry.includes(m) && !refused.has(m)).map((m) => ({ ...m, reason: 'conflict' as const })))
      if (fields.mode === 'all_or_nothing' && skipped.length > 0) break
      pending = retry.map(({ starts_at: startsAt, ends_at: endsAt }) => ({ starts_at: startsAt, ends_at: endsAt }))
    }
    if (skipped.length > 0) {
      skipped.sort((a, b) => Date.parse(a.starts_at) - Date.parse(b.starts_at))
      if (fields.mode === 'all_or_nothing') throw seriesConflict(skipped.map(({ starts_at: startsAt, ends_at: endsAt, conflicts }) => ({ starts_at: startsAt, ends_at: endsAt, conflicts })))
      await client.query(RECORD_SKIPPED, [created.id, JSON.stringify(skipped)])
    }
    return (await getSeries(client, created.id))!
  }, { actor: actor.id })
}

/** A series with all its occurrences (every status, by start) and what it skipped. */
export async function getSeries (db: Db, id: string): Promise<Series | undefined> {
  const { rows: [series] } = await db.query<Omit<Series, 'allocations'>>(SERIES, [id])
  if (!series) return undefined
  const { rows: allocations } = await db.query<Allocation>(OCCURRENCES, [id])
  return { ...series, allocations }
}

function refuse (refusal: DomainError | undefined): void {
  if (refusal) throw refusal
}

/**
 * Cancels, as `actor`, the occurrences starting at or after `from` (by default now:
 * those that have not started), when `guard` allows it for the series and `occurrenceGuard`
 * for each of them; one refusal cancels nothing. False when no such series exists.
 * Cancelling again is fine: what no longer blocks is left as it is.
 */
export async function cancelSeries (db: Db, id: string, from: string | undefined, actor: Actor, guard: SeriesGuard, occurrenceGuard: Guard): Promise<boolean> {
  return withTransaction(db, async (client) => {
    const { rows: [series] } = await client.query<SeriesRow>(LOCK, [id])
    if (!series) return false
    refuse(guard(series))
    const { rows: occurrences } = await client.query<Allocation>(TO_CANCEL, [id, from ?? null])
    for (const occurrence of occurrences) refuse(occurrenceGuard(occurrence))
    if (occurrences.length > 0) await client.query(CANCEL, [occurrences.map((o) => o.id), actor.id])
    return true
  }, { actor: actor.id })
}
