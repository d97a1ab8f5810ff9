import type pg from 'pg'
import { withTransaction, type Db, type Page } from './db.js'
import type { Allocation, AllocationFilter } from '../schemas/allocations.js'
import type { Actor } from '../schemas/accounts.js'
import { AllocationConflictError, ConflictError, ForbiddenError } from '../errors.js'
import { getResource } from './resources.js'

/** Narrows a lookup to one resource and/or one type, as the nested and per-type routes need. */
export interface Scope { resourceId?: string, type?: string }

/** What an allocation is written as; a move merges onto the stored one and writes it whole. */
export interface AllocationFields {
  starts_at: string | null
  ends_at: string | null
  kind: string
  description: string | null
  data: Record<string, unknown>
}

/** A new allocation is confirmed at once, or held for hold_seconds (then null otherwise). */
export interface NewAllocation extends AllocationFields {
  status: 'confirmed' | 'held'
  hold_seconds: number | null
}

/**
 * The allocation representation, read from `source`: the table, or rows a CTE just wrote.
 * The status is as of now: a hold past its expires_at reads as expired even before any
 * write has marked it so.
 */
const selectFrom = (source: string) => `
  SELECT a.id, a.resource_id, r.type AS resource_type,
         lower(a.during) AS starts_at, upper(a.during) AS ends_at,
         a.kind, allocation_current_status(a.status, a.expires_at) AS status, a.description, a.data,
         a.created_at, a.updated_at, a.cancelled_at, a.expires_at, a.owner_id, a.updated_by
  FROM ${source} a
  JOIN resource r ON r.id = a.resource_id`

const SELECT = selectFrom('allocation')

const SCOPED = `a.id = $1 AND ($2::uuid IS NULL OR a.resource_id = $2) AND ($3::text IS NULL OR r.type = $3)`

const GET = `${SELECT} WHERE ${SCOPED}`

const LOCK = `${SELECT} WHERE ${SCOPED} FOR UPDATE OF a`

export const LIST = `
  ${SELECT}
  WHERE ($1::uuid IS NULL OR a.resource_id = $1)
    AND ($2::text IS NULL OR r.type = $2)
    AND ($3::bigint IS NULL OR r.site_id = $3)
    AND a.during && tstzrange($4::timestamptz, $5::timestamptz, '[)')
    AND ($6::text IS NULL OR a.kind = $6)
    AND ($7::text = 'all' OR allocation_current_status(a.status, a.expires_at) = $7)
  ORDER BY lower(a.during) ASC NULLS FIRST, a.id
  LIMIT $8 OFFSET $9`

// ON CONFLICT DO NOTHING turns an overlap into "no row" instead of an error. Two
// simultaneous overlapping inserts would otherwise each wait on the other's index
// entry and one would die as a deadlock (40P01) after deadlock_timeout; speculative
// insertion lets the loser back off at once. The only constraint it can absorb here
// is the exclusion constraint (ids are generated), so "no row" means "overlap". Run-out
// holds in the way are expired by a trigger inside this same statement, before the check.
// A hold's expires_at is counted from the same now() as created_at, which
// allocation_hold_length compares it with. $10, the acting account, owns what it creates.
export const INSERT = `
  WITH inserted AS (
    INSERT INTO allocation (resource_id, during, kind, description, data, status, expires_at, owner_id, updated_by)
    SELECT r.id, allocation_range($3, $4), $5, $6, $7, $8,
           CASE WHEN $8 = 'held' THEN now() + make_interval(secs => $9::int) END, $10, $10
    FROM resource r
    WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
    ON CONFLICT DO NOTHING
    RETURNING *
  )
  ${selectFrom('inserted')}`

// One candidate per statement: the first resource of the type (and site), by name, that
// has not been tried and looked free, booked with the same ON CONFLICT DO NOTHING insert
// as a single resource, so simultaneous requests never deadlock. No row: nothing is left
// to try. A row without an allocation id: someone took that one in between.
const BOOK_ANY = `
  WITH candidate AS (
    SELECT r.id FROM resource r
    WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
      AND r.id <> ALL ($3::uuid[])
      AND NOT EXISTS (
        SELECT 1 FROM allocation a
        WHERE a.resource_id = r.id AND allocation_blocks(a.status, a.expires_at)
          AND a.during && allocation_range($4, $5))
    ORDER BY r.name, r.id
    LIMIT 1
  ), inserted AS (
    INSERT INTO allocation (resource_id, during, kind, description, data, status, expires_at, owner_id, updated_by)
    SELECT id, allocation_range($4, $5), $6, $7, $8, $9,
           CASE WHEN $9 = 'held' THEN now() + make_interval(secs => $10::int) END, $11, $11
    FROM candidate
    ON CONFLICT DO NOTHING
    RETURNING *
  )
  SELECT c.id AS candidate_id, booked.*
  FROM candidate c
  LEFT JOIN (${selectFrom('inserted')}) booked ON true`

const EMPTY_SPAN = 'SELECT isempty(allocation_range($1, $2)) AS empty'

const OVERLAPPING = `
  ${SELECT}
  WHERE a.resource_id = $1
    AND allocation_blocks(a.status, a.expires_at)
    AND a.during && allocation_range($2, $3)
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
// nothing, not even updated_at, yet still reports that the allocation exists. $4 is the
// acting account, $5 true when it may cancel anyone's (an admin); otherwise only what it
// owns is cancelled, and the caller hears "not permitted" rather than a silent success.
// Owners never change, so the permission read with the row cannot go stale before the update.
const CANCEL = `
  WITH target AS (
    SELECT a.id, a.status, a.expires_at, ($5 OR a.owner_id = $4) AS permitted
    FROM allocation a JOIN resource r ON r.id = a.resource_id
    WHERE ${SCOPED}
  ), cancelled AS (
    UPDATE allocation SET status = 'cancelled', cancelled_at = now(), expires_at = NULL, updated_by = $4
    WHERE id IN (SELECT id FROM target WHERE permitted AND allocation_blocks(status, expires_at))
  )
  SELECT permitted FROM target`

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
  return (await db.query<Allocation>(LIST, [filter.resource_id ?? null, filter.type ?? null, filter.site_id ?? null,
    filter.from ?? null, filter.to ?? null, filter.kind ?? null, filter.status ?? 'confirmed',
    page.limit + 1, page.offset])).rows
}

export async function getAllocation (db: Db, id: string, scope: Scope = {}): Promise<Allocation | undefined> {
  return (await db.query<Allocation>(GET, scopeValues(id, scope))).rows[0]
}

async function lockAllocation (db: Db, id: string, scope: Scope = {}): Promise<Allocation | undefined> {
  return (await db.query<Allocation>(LOCK, scopeValues(id, scope))).rows[0]
}

/** The live allocations of a resource that overlap [starts_at, ends_at), leaving out `except`. */
export async function overlappingAllocations (db: Db, resourceId: string, startsAt: string | null, endsAt: string | null, except?: string): Promise<Allocation[]> {
  return (await db.query<Allocation>(OVERLAPPING, [resourceId, startsAt, endsAt, except ?? null])).rows
}

/**
 * Books the slot for `actor`, who owns the new allocation, or throws
 * AllocationConflictError with what overlaps. Undefined when the resource does not
 * exist (or is not of `type`).
 */
export async function createAllocation (pool: pg.Pool, resourceId: string, type: string | undefined, fields: NewAllocation, actor: Actor): Promise<Allocation | undefined> {
  // A transaction only so that triggers (the history) see the actor; withTransaction sets it.
  return withTransaction(pool, async (client) => {
    // An overlap found empty means the blocking allocation was cancelled in between: try again.
    for (let attempt = 1; attempt <= 5; attempt++) {
      const { rows } = await client.query<Allocation>(INSERT, [resourceId, type ?? null,
        fields.starts_at, fields.ends_at, fields.kind, fields.description, fields.data, fields.status, fields.hold_seconds, actor.id])
      if (rows[0]) return rows[0]
      const conflicts = await overlappingAllocations(client, resourceId, fields.starts_at, fields.ends_at)
      if (conflicts.length > 0) throw new AllocationConflictError(conflicts)
      if (!await getResource(client, resourceId, type)) return undefined
    }
    throw new AllocationConflictError([])
  }, { actor: actor.id })
}

/** Where book-any-free may look: every resource of a type, or those at one site. */
export interface AnyResource { type: string, site_id?: number }

type Attempt = Partial<Allocation> & { candidate_id: string }

async function bookFirstCandidate (db: Db, where: AnyResource, tried: string[], fields: NewAllocation, actor: Actor): Promise<Attempt | undefined> {
  return (await db.query<Attempt>(BOOK_ANY, [where.type, where.site_id ?? null, tried, fields.starts_at, fields.ends_at,
    fields.kind, fields.description, fields.data, fields.status, fields.hold_seconds, actor.id])).rows[0]
}

/**
 * Books the first free resource of a type (and site), moving on to the next candidate
 * whenever a concurrent request takes the one it tried. Undefined when none is free.
 * Each attempt rules one resource out, so the loop ends after at most one attempt per
 * resource of the type.
 */
export async function bookAnyFree (pool: pg.Pool, where: AnyResource, fields: NewAllocation, actor: Actor): Promise<Allocation | undefined> {
  // One transaction, so that the history trigger sees the actor. A candidate lost to a
  // concurrent request is "no row" (ON CONFLICT DO NOTHING), not an error, so the
  // transaction stays usable for the next attempt.
  return withTransaction(pool, async (client) => {
    const tried: string[] = []
    for (;;) {
      const attempt = await bookFirstCandidate(client, where, tried, fields, actor)
      if (!attempt) return undefined
      const { candidate_id: candidate, ...allocation } = attempt
      if (allocation.id) return allocation as Allocation
      tried.push(candidate)
    }
  }, { actor: actor.id })
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

const notYours = () => new ForbiddenError('the allocation belongs to another account: only its owner or an admin may change, confirm or cancel it')

/** Members act only on what they own; admins on anything. */
function assertMayChange (allocation: Allocation, actor: Actor): void {
  if (actor.role !== 'admin' && allocation.owner_id !== actor.id) throw notYours()
}

/**
 * Cancels, as `actor`: members only their own allocations (ForbiddenError otherwise).
 * False when no such allocation exists in the scope; cancelling twice is fine.
 */
export async function cancelAllocation (pool: pg.Pool, id: string, scope: Scope, actor: Actor): Promise<boolean> {
  const row = await withTransaction(pool, async (client) =>
    (await client.query<{ permitted: boolean }>(CANCEL, [...scopeValues(id, scope), actor.id, actor.role === 'admin'])).rows[0],
  { actor: actor.id })
  if (row && !row.permitted) throw notYours()
  return row !== undefined
}

/** The fields PATCH may change: any of the input fields, each kept when absent. */
export type AllocationPatchFields = Partial<AllocationFields>

/**
 * Applies a patch (a move, when times change) under a row lock, as `actor`: members
 * only to their own allocations (ForbiddenError otherwise; the lock keeps the check
 * and the update together). The exclusion constraint judges the new times exactly as
 * it judges an insert. Undefined when not found in the scope; a cancelled allocation
 * is history and is not changed.
 */
export async function patchAllocation (pool: pg.Pool, id: string, scope: Scope, patch: AllocationPatchFields, actor: Actor): Promise<Allocation | undefined> {
  let moved: (AllocationFields & { resource_id: string }) | undefined
  try {
    return await withTransaction(pool, async (client) => {
      const current = await lockAllocation(client, id, scope)
      if (!current) return undefined
      assertMayChange(current, actor)
      if (current.status === 'cancelled') {
        throw new ConflictError('the allocation is cancelled; create a new one instead', 'ALLOCATION_CANCELLED')
      }
      if (current.status === 'expired') throw holdExpired(current)
      moved = { ...current, ...patch }
      return await updateAllocation(client, id, moved, actor)
    }, { actor: actor.id })
  } catch (error) {
    if ((error as { code?: string }).code === '23P01' && moved) {
      throw new AllocationConflictError(await overlappingAllocations(pool, moved.resource_id, moved.starts_at, moved.ends_at, id))
    }
    throw error
  }
}

function holdExpired (allocation: Allocation): ConflictError {
  return new ConflictError(`the hold expired at ${allocation.expires_at}; create a new one instead`, 'HOLD_EXPIRED')
}

/**
 * Turns a live hold into a confirmed allocation, under a row lock so that a cancel or a
 * second confirm cannot interleave. Undefined when not found in the scope. The slot is
 * already the hold's, so confirming never conflicts with another allocation; a trigger
 * refuses confirming a run-out hold in psql too.
 */
export async function confirmAllocation (pool: pg.Pool, id: string, scope: Scope, actor: Actor): Promise<Allocation | undefined> {
  return withTransaction(pool, async (client) => {
    const current = await lockAllocation(client, id, scope)
    if (!current) return undefined
    assertMayChange(current, actor)
    switch (current.status) {
      case 'held':
        return markConfirmed(client, id, actor)
      case 'expired':
        throw holdExpired(current)
      case 'confirmed':
        throw new ConflictError('the allocation is already confirmed', 'ALREADY_CONFIRMED')
      default:
        throw new ConflictError('the allocation is cancelled; create a new one instead', 'ALLOCATION_CANCELLED')
    }
  }, { actor: actor.id })
}
