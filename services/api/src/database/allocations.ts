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

/** The allocation representation, read from `source`: the table, or rows a CTE just wrote. */
const selectFrom = (source: string) => `
  SELECT a.id, a.resource_id, r.type AS resource_type,
         lower(a.during) AS starts_at, upper(a.during) AS ends_at,
         a.kind, a.status, a.description, a.data,
         a.created_at, a.updated_at, a.cancelled_at, a.owner_id, a.updated_by
  FROM ${source} a
  JOIN resource r ON r.id = a.resource_id`

const SELECT = selectFrom('allocation')

const SCOPED = `a.id = $1 AND ($2::uuid IS NULL OR a.resource_id = $2) AND ($3::text IS NULL OR r.type = $3)`

const GET = `${SELECT} WHERE ${SCOPED}`

const LOCK = `${SELECT} WHERE ${SCOPED} FOR UPDATE OF a`

const LIST = `
  ${SELECT}
  WHERE ($1::uuid IS NULL OR a.resource_id = $1)
    AND ($2::text IS NULL OR r.type = $2)
    AND ($3::bigint IS NULL OR r.site_id = $3)
    AND a.during && tstzrange($4::timestamptz, $5::timestamptz, '[)')
    AND ($6::text IS NULL OR a.kind = $6)
    AND ($7::text = 'all' OR a.status = $7)
  ORDER BY lower(a.during) ASC NULLS FIRST, a.id
  LIMIT $8 OFFSET $9`

// ON CONFLICT DO NOTHING turns an overlap into "no row" instead of an error. Two
// simultaneous overlapping inserts would otherwise each wait on the other's index
// entry and one would die as a deadlock (40P01) after deadlock_timeout; speculative
// insertion lets the loser back off at once. The only constraint it can absorb here
// is the exclusion constraint (ids are generated), so "no row" means "overlap".
// $8, the acting account, owns what it creates.
const INSERT = `
  WITH inserted AS (
    INSERT INTO allocation (resource_id, during, kind, description, data, owner_id, updated_by)
    SELECT r.id, allocation_range($3, $4), $5, $6, $7, $8, $8
    FROM resource r
    WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
    ON CONFLICT DO NOTHING
    RETURNING *
  )
  ${selectFrom('inserted')}`

const OVERLAPPING = `
  ${SELECT}
  WHERE a.resource_id = $1
    AND a.status <> 'cancelled'
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

// Cancelling an already cancelled allocation changes nothing (not even updated_at),
// yet still reports that the allocation exists. $4 is the acting account, $5 true when
// it may cancel anyone's (an admin); otherwise only what it owns is cancelled, and the
// caller hears "not permitted" rather than a silent success. Owners never change, so
// the permission read with the row cannot go stale before the update.
const CANCEL = `
  WITH target AS (
    SELECT a.id, a.status, ($5 OR a.owner_id = $4) AS permitted
    FROM allocation a JOIN resource r ON r.id = a.resource_id
    WHERE ${SCOPED}
  ), cancelled AS (
    UPDATE allocation SET status = 'cancelled', cancelled_at = now(), updated_by = $4
    WHERE id IN (SELECT id FROM target WHERE permitted AND status <> 'cancelled')
  )
  SELECT permitted FROM target`

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
export async function createAllocation (pool: pg.Pool, resourceId: string, type: string | undefined, fields: AllocationFields, actor: Actor): Promise<Allocation | undefined> {
  // A transaction only so that triggers see the actor (withTransaction sets it).
  return withTransaction(pool, async (client) => {
    // An overlap found empty means the blocking allocation was cancelled in between: try again.
    for (let attempt = 1; attempt <= 5; attempt++) {
      const { rows } = await client.query<Allocation>(INSERT, [resourceId, type ?? null,
        fields.starts_at, fields.ends_at, fields.kind, fields.description, fields.data, actor.id])
      if (rows[0]) return rows[0]
      const conflicts = await overlappingAllocations(client, resourceId, fields.starts_at, fields.ends_at)
      if (conflicts.length > 0) throw new AllocationConflictError(conflicts)
      if (!await getResource(client, resourceId, type)) return undefined
    }
    throw new AllocationConflictError([])
  }, { actor: actor.id })
}

async function updateAllocation (db: Db, id: string, fields: AllocationFields, actor: Actor): Promise<Allocation> {
  return (await db.query<Allocation>(UPDATE, [id, fields.starts_at, fields.ends_at, fields.kind, fields.description, fields.data, actor.id])).rows[0]!
}

const notYours = () => new ForbiddenError('the allocation belongs to another account: only its owner or an admin may change or cancel it')

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
      if (actor.role !== 'admin' && current.owner_id !== actor.id) throw notYours()
      if (current.status === 'cancelled') {
        throw new ConflictError('the allocation is cancelled; create a new one instead', 'ALLOCATION_CANCELLED')
      }
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
