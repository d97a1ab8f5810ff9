import { isClient, prepared, withTransaction, type Db, type Page } from './db.js'
import type { Allocation, AllocationFilter } from '../schemas/allocations.js'
import type { Actor } from '../schemas/accounts.js'
import { allocationCancelled, allocationConflict, DomainError, holdExpired } from './outcomes.js'
import { getResource } from './resources.js'
import { freeResourceRows, unblocked } from './availability.js'
import { refuseBrokenRules, refuseWhenEveryResourceBreaksRules } from './rules.js'

/** Narrows a lookup to one resource and/or one type, as the nested and per-type routes need. */
export interface Scope { resourceId?: string, type?: string }

/**
 * The caller's say on changing an allocation, asked under the row lock with the
 * allocation as stored: a refusal stops the change, nothing lets it go ahead. Who may
 * change what is policy (src/policy.ts), not SQL.
 */
export type Guard = (current: Allocation) => DomainError | undefined

/** What an allocation is written as; a move merges onto the stored one and writes it whole. */
interface AllocationFields {
  starts_at: string | null
  ends_at: string | null
  kind: string
  description: string | null
  data: Record<string, unknown>
}

/**
 * Whether the booking rules that bind members (length, notice, advance, open ends, opening
 * hours, slot grid, quotas) are judged for this write: policy decides (src/policy.ts).
 * Buffers are always enforced, by the exclusion constraint.
 */
export interface RuleOptions { rules: boolean }

/** A new allocation is confirmed at once, or held for hold_seconds (then null otherwise). */
export interface NewAllocation extends AllocationFields {
  status: 'confirmed' | 'held'
  hold_seconds: number | null
}

/**
 * The allocation representation, read from `source`: the table, or rows a CTE just wrote.
 * The status is as of now: a hold past its expires_at reads as expired even before any
 * write has marked it so. A zero buffer reads null, as "no rule" does in the rules.
 */
export const selectFrom = (source: string) => `
  SELECT a.id, a.resource_id, r.type AS resource_type,
         lower(a.during) AS starts_at, upper(a.during) AS ends_at,
         a.kind, allocation_current_status(a.status, a.expires_at) AS status, a.description, a.data,
         a.created_at, a.updated_at, a.cancelled_at, a.expires_at, a.owner_id, a.updated_by,
         iso_duration(nullif(a.buffer_before, '0')) AS buffer_before, iso_duration(nullif(a.buffer_after, '0')) AS buffer_after, a.series_id
  FROM ${source} a
  JOIN resource r ON r.id = a.resource_id`

const SELECT = selectFrom('allocation')

const SCOPED = 'a.id = $1 AND ($2::uuid IS NULL OR a.resource_id = $2) AND ($3::text IS NULL OR r.type = $3)'

const GET = `${SELECT} WHERE ${SCOPED}`

const LOCK = `${SELECT} WHERE ${SCOPED} FOR UPDATE OF a`

// The filters of the list across resources, as each part of LIST applies them.
const LIST_FILTERS = `
       AND ($1::uuid IS NULL OR a.resource_id = $1)
       AND ($2::text IS NULL OR r.type = $2)
       AND ($3::bigint IS NULL OR r.site_id = $3)
       AND ($6::text IS NULL OR a.kind = $6)
       AND ($7::text = 'all' OR allocation_current_status(a.status, a.expires_at) = $7)`

// Across resources, by start, a page at a time. What overlaps [from, to) is what started
// before from and is still going on at from (few: at most one live allocation per
// resource at any instant, found through allocation_during_idx), followed by what starts
// within the window, read in page order from allocation_starts_idx and no further than
// the page needs. Each part stops at the end of the page; together they are the page. So
// a page costs the same however long the window and however many allocations there are.
// Unnamed: which filters are given decides the plan, so it is planned with them.
export const LIST = `
  WITH page AS (
    (SELECT a.* FROM allocation a JOIN resource r ON r.id = a.resource_id
     WHERE $4::timestamptz IS NOT NULL AND a.during @> $4::timestamptz AND allocation_starts(a.during) < $4::timestamptz
       ${LIST_FILTERS}
     ORDER BY allocation_starts(a.during), a.id
     LIMIT $8::bigint + $9::bigint)
    UNION ALL
    (SELECT a.* FROM allocation a JOIN resource r ON r.id = a.resource_id
     WHERE allocation_starts(a.during) >= coalesce($4::timestamptz, '-infinity')
       AND allocation_starts(a.during) < coalesce($5::timestamptz, 'infinity')
       ${LIST_FILTERS}
     ORDER BY allocation_starts(a.during), a.id
     LIMIT $8::bigint + $9::bigint)
  )
  ${selectFrom('page')}
  ORDER BY allocation_starts(a.during), a.id
  LIMIT $8 OFFSET $9`

// One resource's allocations: always the per-resource index (allocation_resource_span_idx)
// whatever the other filters, so one plan serves every call (a named statement); the
// status and kind filter the few rows the window leaves.
export const LIST_OF_RESOURCE = `
  ${SELECT}
  WHERE a.resource_id = $1
    AND ($2::text IS NULL OR r.type = $2)
    AND allocation_overlaps(a.during, tstzrange($3::timestamptz, $4::timestamptz, '[)'))
    AND ($5::text IS NULL OR a.kind = $5)
    AND ($6::text = 'all' OR allocation_current_status(a.status, a.expires_at) = $6)
  ORDER BY allocation_starts(a.during), a.id
  LIMIT $7 OFFSET $8`

// ON CONFLICT DO NOTHING turns an overlap into "no row" instead of an error. Two
// simultaneous overlapping inserts would otherwise each wait on the other's index
// entry and one would die as a deadlock (40P01) after deadlock_timeout; speculative
// insertion lets the loser back off at once. The only constraint it can absorb here
// is the exclusion constraint (ids are generated), so "no row" means "overlap". Run-out
// holds in the way are expired by a trigger inside this same statement, before the check.
// A hold's expires_at is counted from the same now() as created_at, which
// allocation_hold_length compares it with. $10, the acting account, owns what it creates.
// The booking is this one statement, in no transaction of its own: it names the actor for
// the triggers (the history) itself, as withTransaction would, before any row is written
// (the insert reads its rows through the join with acting), and the setting ends with the
// statement. $11: the member rules must allow it, judged with the insert's own now(), and
// the actor's quotas (booking_quota_breach() holds its lock per member and quota scope until
// this statement commits, so a simultaneous booking by the same member counts this one).
// No row: the rules, an overlap, or no such resource; the caller finds out which. The rules
// are inlined (booking_rule_violations()), not asked of booking_rules_allow(): this
// statement is prepared and keeps one generic plan per connection, which the function's
// COST would make look costlier than planning it afresh for every booking (measured: a
// custom plan every time, 0.3 ms more a booking).
export const INSERT = `
  WITH acting AS (
    SELECT set_config('invsys.actor', $10::bigint::text, true)
  ), inserted AS (
    INSERT INTO allocation (resource_id, during, kind, description, data, status, expires_at, owner_id, updated_by)
    SELECT r.id, allocation_range($3, $4), $5, $6, $7, $8,
           CASE WHEN $8 = 'held' THEN now() + make_interval(secs => $9::int) END, $10, $10
    FROM resource r CROSS JOIN acting
    WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
      AND (NOT $11::boolean OR NOT EXISTS (SELECT 1 FROM booking_rule_violations(r.id, allocation_range($3, $4), now())))
      AND (NOT $11::boolean OR NOT EXISTS (SELECT 1 FROM booking_quota_breach(r.id, allocation_range($3, $4), $10::bigint)))
    ON CONFLICT DO NOTHING
    RETURNING *
  )
  ${selectFrom('inserted')}`

// One candidate per statement: the first resource of the type (and site), by name, that
// has not been tried and looked free, booked with the same ON CONFLICT DO NOTHING insert
// as a single resource, so simultaneous requests never deadlock. No row: nothing is left
// to try. A row without an allocation id: someone took that one in between.
// Free means free with buffers: no live allocation's widened range meets the new one's,
// widened by the candidate's own buffers. The first BOOK_ANY_WALK resources by name are
// each looked up in the exclusion constraint's index; when one of them is free (and
// allowed) it is the answer, and nothing else runs: PostgreSQL runs the arms of UNION ALL
// in order and stops at the LIMIT. Otherwise the free ones among all (freeResourceRows,
// from the kept free time: none to read when the fleet is out) are taken by name, which
// repeats the walk's free ones after it, to the same verdict. $12: the member rules and
// the actor's quotas must allow it too (the quota locks held as in INSERT), judged only
// for resources that are free: outside the subquery, which OFFSET 0 keeps whole, since in
// one WHERE the planner put the cheaper-looking quota check first and judged every
// resource of the type. Its plan depends on the values (it is planned afresh for every
// request), so the rules go through booking_rules_allow(), which keeps them out of that
// planning. The actor is named as in INSERT, so each attempt is a booking whole on its own.
const UNTRIED = 'r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2) AND r.id <> ALL ($3::uuid[])'
const BOOK_ANY_WALK = 16
export const BOOK_ANY = `
  WITH acting AS (
    SELECT set_config('invsys.actor', $11::bigint::text, true)
  ), candidate AS (
    SELECT f.id FROM (
      (SELECT w.id, w.name FROM (
         SELECT r.id, r.name, e.buffer_before, e.buffer_after FROM resource r
         JOIN effective_rule e ON e.resource_id = r.id
         WHERE ${UNTRIED}
         ORDER BY r.name, r.id
         LIMIT ${BOOK_ANY_WALK}) AS w
       WHERE ${unblocked('allocation_range($4, $5)', 'w')}
       ORDER BY w.name, w.id)
      UNION ALL
      (SELECT r.id, r.name FROM (${freeResourceRows('allocation_range($4, $5)', '$1')}) AS r
       WHERE ${UNTRIED}
       ORDER BY r.name, r.id)
      OFFSET 0
    ) AS f
    WHERE (NOT $12::boolean OR booking_rules_allow(f.id, allocation_range($4, $5), now()))
      AND (NOT $12::boolean OR NOT EXISTS (SELECT 1 FROM booking_quota_breach(f.id, allocation_range($4, $5), $11::bigint)))
    LIMIT 1
  ), inserted AS (
    INSERT INTO allocation (resource_id, during, kind, description, data, status, expires_at, owner_id, updated_by)
    SELECT id, allocation_range($4, $5), $6, $7, $8, $9,
           CASE WHEN $9 = 'held' THEN now() + make_interval(secs => $10::int) END, $11, $11
    FROM candidate CROSS JOIN acting
    ON CONFLICT DO NOTHING
    RETURNING *
  )
  SELECT c.id AS candidate_id, booked.*
  FROM candidate c
  LEFT JOIN (${selectFrom('inserted')}) booked ON true`

const EMPTY_SPAN = 'SELECT isempty(allocation_range($1, $2)) AS empty'

// What the exclusion constraint compares: each live allocation widened by its buffers,
// against the new range widened by the buffers the trigger gives it (the rules in force now).
const OVERLAPPING = `
  ${SELECT}
  WHERE a.resource_id = $1
    AND allocation_blocks(a.status, a.expires_at)
    AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after)
        && resource_blocked_range($1, allocation_range($2, $3))
    AND ($4::uuid IS NULL OR a.id <> $4)
  ORDER BY lower(a.during) ASC NULLS FIRST, a.id`

const UPDATE = `
  WITH updated AS (
    UPDATE allocation
    SET during = allocation_range($2, $3), kind = $4, description = $5, data = $6, updated_by = $7
    WHERE id = $1
    RETURNING *
  )
  ${selectFrom('updated')}`

// Cancelling what no longer blocks (already cancelled, or a hold that ran out) changes
// nothing, not even updated_at. $2 is the acting account.
const CANCEL = `
  UPDATE allocation SET status = 'cancelled', cancelled_at = now(), expires_at = NULL, updated_by = $2
  WHERE id = $1 AND allocation_blocks(status, expires_at)`

const CONFIRM = `
  WITH confirmed AS (
    UPDATE allocation SET status = 'confirmed', expires_at = NULL, updated_by = $2
    WHERE id = $1
    RETURNING *
  )
  ${selectFrom('confirmed')}`

function scopeValues (id: string, scope: Scope) {
  return [id, scope.resourceId ?? null, scope.type ?? null]
}

export async function listAllocations (db: Db, filter: AllocationFilter, page: Page): Promise<Allocation[]> {
  const status = filter.status ?? 'confirmed'
  if (filter.resource_id !== undefined && filter.site_id === undefined) {
    return (await db.query<Allocation>(prepared('allocation-list-of-resource', LIST_OF_RESOURCE, [filter.resource_id, filter.type ?? null,
      filter.from ?? null, filter.to ?? null, filter.kind ?? null, status, page.limit + 1, page.offset]))).rows
  }
  return (await db.query<Allocation>(LIST, [filter.resource_id ?? null, filter.type ?? null, filter.site_id ?? null,
    filter.from ?? null, filter.to ?? null, filter.kind ?? null, status, page.limit + 1, page.offset])).rows
}

export async function getAllocation (db: Db, id: string, scope: Scope = {}): Promise<Allocation | undefined> {
  return (await db.query<Allocation>(prepared('allocation-get', GET, scopeValues(id, scope)))).rows[0]
}

async function lockAllocation (db: Db, id: string, scope: Scope = {}): Promise<Allocation | undefined> {
  return (await db.query<Allocation>(LOCK, scopeValues(id, scope))).rows[0]
}

/**
 * The live allocations of a resource in the way of [starts_at, ends_at), leaving out
 * `except`: those that overlap it once both are widened by their buffers.
 */
async function overlappingAllocations (db: Db, resourceId: string, startsAt: string | null, endsAt: string | null, except?: string): Promise<Allocation[]> {
  return (await db.query<Allocation>(prepared('allocation-overlapping', OVERLAPPING, [resourceId, startsAt, endsAt, except ?? null]))).rows
}

/**
 * Books the slot for `actor`, who owns the new allocation, or refuses with
 * ALLOCATION_CONFLICT and what is in the way (buffers included), or with RULE_* when
 * `options.rules` and a member rule forbids it. Undefined when the resource does not
 * exist (or is not of `type`).
 */
export async function createAllocation (
  db: Db, resourceId: string, type: string | undefined, fields: NewAllocation, actor: Actor, options: RuleOptions
): Promise<Allocation | undefined> {
  // No transaction: the INSERT is the booking, whole, rules and actor included. What
  // follows a refusal only explains it, in the order a refusal is judged: the rules, then
  // what is in the way, then whether the resource exists. Found nothing (the blocking
  // allocation was cancelled in between, or a max_advance that now() has caught up with):
  // try again.
  for (let attempt = 1; attempt <= 5; attempt++) {
    const { rows } = await db.query<Allocation>(prepared('allocation-insert', INSERT, [resourceId, type ?? null,
      fields.starts_at, fields.ends_at, fields.kind, fields.description, fields.data, fields.status, fields.hold_seconds,
      actor.id, options.rules]))
    if (rows[0]) return rows[0]
    if (options.rules) await refuseBrokenRules(db, resourceId, type, fields, { owner: actor.id })
    const conflicts = await overlappingAllocations(db, resourceId, fields.starts_at, fields.ends_at)
    if (conflicts.length > 0) throw allocationConflict(conflicts)
    if (!await getResource(db, resourceId, type)) return undefined
  }
  throw allocationConflict([])
}

/** Where book-any-free may look: every resource of a type, or those at one site. */
export interface AnyResource { type: string, site_id?: number }

type Attempt = Partial<Allocation> & { candidate_id: string }

async function bookFirstCandidate (db: Db, where: AnyResource, tried: string[], fields: NewAllocation, actor: Actor, options: RuleOptions): Promise<Attempt | undefined> {
  return (await db.query<Attempt>(prepared('allocation-book-any', BOOK_ANY, [where.type, where.site_id ?? null, tried, fields.starts_at, fields.ends_at,
    fields.kind, fields.description, fields.data, fields.status, fields.hold_seconds, actor.id, options.rules]))).rows[0]
}

/**
 * Books the first free resource of a type (and site), moving on to the next candidate
 * whenever a concurrent request takes the one it tried. Undefined when none is free.
 * Each attempt rules one resource out, so the loop ends after at most one attempt per
 * resource of the type. With `options.rules`, only resources whose member rules allow
 * the booking are candidates, and when every resource's rules forbid it the refusal is
 * the first one's RULE_*.
 */
export async function bookAnyFree (db: Db, where: AnyResource, fields: NewAllocation, actor: Actor, options: RuleOptions): Promise<Allocation | undefined> {
  // Each attempt is one statement that books whole or not at all and names the actor
  // itself, so no transaction is needed around them. A candidate lost to a concurrent
  // request is "no row" (ON CONFLICT DO NOTHING), not an error.
  const tried: string[] = []
  for (;;) {
    const attempt = await bookFirstCandidate(db, where, tried, fields, actor, options)
    if (!attempt) {
      if (options.rules) await refuseWhenEveryResourceBreaksRules(db, where.type, where.site_id, fields, actor.id)
      return undefined
    }
    const { candidate_id: candidate, ...allocation } = attempt
    if (allocation.id) return allocation as Allocation
    tried.push(candidate)
  }
}

/** Whether [starts_at, ends_at) is empty (an inverted or zero-length pair), judged as the allocation table would. */
export async function isEmptySpan (db: Db, startsAt: string | null, endsAt: string | null): Promise<boolean> {
  return (await db.query<{ empty: boolean }>(EMPTY_SPAN, [startsAt, endsAt])).rows[0]!.empty
}

async function updateAllocation (db: Db, id: string, fields: AllocationFields, actor: Actor): Promise<Allocation> {
  return (await db.query<Allocation>(UPDATE, [id, fields.starts_at, fields.ends_at, fields.kind, fields.description, fields.data, actor.id])).rows[0]!
}

async function markConfirmed (db: Db, id: string, actor: Actor): Promise<Allocation> {
  return (await db.query<Allocation>(CONFIRM, [id, actor.id])).rows[0]!
}

function refuse (refusal: DomainError | undefined): void {
  if (refusal) throw refusal
}

/**
 * Cancels, as `actor`, when `guard` allows it. False when no such allocation exists in
 * the scope; cancelling twice is fine.
 */
export async function cancelAllocation (db: Db, id: string, scope: Scope, actor: Actor, guard: Guard): Promise<boolean> {
  return withTransaction(db, async (client) => {
    const current = await lockAllocation(client, id, scope)
    if (!current) return false
    refuse(guard(current))
    await client.query(CANCEL, [id, actor.id])
    return true
  }, { actor: actor.id })
}

/** The fields PATCH may change: any of the input fields, each kept when absent. */
export type AllocationPatchFields = Partial<AllocationFields>

/**
 * Applies a patch (a move, when times change) under a row lock, as `actor`, when
 * `guard` allows it (the lock keeps the check and the update together). The exclusion
 * constraint judges the new times exactly as it judges an insert, with the buffers in
 * force now; with `options.rules`, so do the member rules, when the times change
 * (notice and advance only when the start does). Undefined when not found in the scope;
 * a cancelled allocation is history and is not changed.
 */
export async function patchAllocation (
  db: Db, id: string, scope: Scope, patch: AllocationPatchFields, actor: Actor, guard: Guard, options: RuleOptions
): Promise<Allocation | undefined> {
  let moved: (AllocationFields & { resource_id: string }) | undefined
  try {
    return await withTransaction(db, async (client) => {
      const current = await lockAllocation(client, id, scope)
      if (!current) return undefined
      refuse(guard(current))
      if (current.status === 'cancelled') throw allocationCancelled()
      if (current.status === 'expired') throw holdExpired(current.expires_at)
      moved = { ...current, ...patch }
      if (options.rules) await refuseBrokenMove(client, current, moved)
      return await updateAllocation(client, id, moved, actor)
    }, { actor: actor.id })
  } catch (error) {
    // Read what overlaps only after the failed transaction is gone (or, inside a
    // caller's transaction, is the caller's to end): a failed transaction reads nothing.
    if ((error as { code?: string }).code === '23P01' && moved && !isClient(db)) {
      throw allocationConflict(await overlappingAllocations(db, moved.resource_id, moved.starts_at, moved.ends_at, id))
    }
    throw error
  }
}

const MOVE = `
  SELECT allocation_range($1, $2) IS DISTINCT FROM allocation_range($3, $4) AS moved,
         $1::timestamptz IS DISTINCT FROM $3::timestamptz AS start_moved`

/**
 * A move is judged by the member rules as a new booking would be, except that keeping the
 * start skips notice and advance; the owner's quotas count it in place of where it was.
 */
async function refuseBrokenMove (db: Db, current: Allocation, moved: AllocationFields & { resource_id: string }): Promise<void> {
  const { rows: [change] } = await db.query<{ moved: boolean, start_moved: boolean }>(MOVE,
    [moved.starts_at, moved.ends_at, current.starts_at, current.ends_at])
  if (change!.moved) {
    await refuseBrokenRules(db, current.resource_id, undefined, moved, { owner: current.owner_id, except: current.id }, change!.start_moved)
  }
}

/**
 * Turns a live hold into a confirmed allocation, under a row lock so that a cancel or a
 * second confirm cannot interleave. Undefined when not found in the scope. The slot is
 * already the hold's, so confirming never conflicts with another allocation; a trigger
 * refuses confirming a run-out hold in psql too.
 */
export async function confirmAllocation (db: Db, id: string, scope: Scope, actor: Actor, guard: Guard): Promise<Allocation | undefined> {
  return withTransaction(db, async (client) => {
    const current = await lockAllocation(client, id, scope)
    if (!current) return undefined
    refuse(guard(current))
    switch (current.status) {
      case 'held':
        return markConfirmed(client, id, actor)
      case 'expired':
        throw holdExpired(current.expires_at)
      case 'confirmed':
        throw new DomainError('ALREADY_CONFIRMED', 'the allocation is already confirmed')
      default:
        throw allocationCancelled()
    }
  }, { actor: actor.id })
}
