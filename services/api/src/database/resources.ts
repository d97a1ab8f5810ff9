import { walkedAll, walkedPage, walkLimit, withTransaction, type Db, type Page, type Walked } from './db.js'
import { freeResourceRows, unblocked } from './availability.js'
import type { Instrument, Resource, ResourceFilter } from '../schemas/resources.js'
import { DomainError } from './outcomes.js'

/** What a resource is written as; PATCH merges onto the stored one and writes it whole. */
export interface ResourceFields {
  type: string
  name: string
  site_id?: number | null
  mac?: string | null
}

const COLUMNS = 'id, type, name, site_id, mac::text AS mac, created_at, updated_at'

// The resources a list or an availability search looks at, as a condition on resource
// `r`: of type $1 (any when null), at site $2 (any when null).
const OF_TYPE = '($1::text IS NULL OR r.type = $1) AND ($2::bigint IS NULL OR r.site_id = $2)'

const LIST = `
  SELECT ${COLUMNS}
  FROM resource r
  WHERE ${OF_TYPE}
  ORDER BY r.type, r.name, r.id
  LIMIT $3 OFFSET $4`

// For a member ($member true), what the window of an availability search must also pass
// beyond the rules named in $7 (which judge a side left open as no side): with one end
// given, that end must be open (the instant after available_from, the one before
// available_to); with both, member $actor's quotas must allow booking it (read without the
// quota lock: a search, not a booking).
const memberWindow = (member: string, actor: string) => `
    (NOT ${member}::boolean OR (
      ($3::timestamptz IS NULL OR $4::timestamptz IS NOT NULL
        OR NOT isempty(resource_open_time(r.id, tstzrange($3::timestamptz, $3::timestamptz + interval '1 microsecond', '[)'))))
      AND ($4::timestamptz IS NULL OR $3::timestamptz IS NOT NULL
        OR NOT isempty(resource_open_time(r.id, tstzrange($4::timestamptz - interval '1 microsecond', $4::timestamptz, '[)'))))
      AND ($3::timestamptz IS NULL OR $4::timestamptz IS NULL
        OR booking_quotas_allow(r.id, tstzrange($3::timestamptz, $4::timestamptz, '[)'), ${actor}::bigint))))`

// None of the member rules named in $7 is broken by a booking of the window (an empty $7,
// an admin's, names none).
const RULES_ALLOW = `(cardinality($7::text[]) = 0
      OR booking_rules_allow(r.id, tstzrange($3::timestamptz, $4::timestamptz, '[)'), now(), $7::text[]))`

// The resources an availability walk passes, in page order, with their buffers.
const FLEET_IN_PAGE_ORDER = `
    SELECT r.*, e.buffer_before, e.buffer_after
    FROM resource r
    JOIN effective_rule e ON e.resource_id = r.id
    WHERE ${OF_TYPE}
    ORDER BY r.type, r.name, r.id`

// Nothing blocks the window on resource `r` (a row of FLEET_IN_PAGE_ORDER).
const FREE_IN_WINDOW = unblocked("tstzrange($3::timestamptz, $4::timestamptz, '[)')", 'r')

// available_from/available_to: keep only resources where the window could be booked: no
// blocking allocation (confirmed, or a hold that has not run out) in the way once both
// are widened by their buffers, and none of the member rules named in $7 broken (empty
// for admins); an omitted side is unbounded; for a member ($9, member $10), memberWindow().
// A walk: at most $8 resources in page order, each looked up in the
// exclusion constraint's index (resource_id, widened range) until the page is full, so a
// page costs one index probe per resource passed over: a handful when most are free; only
// the sample of walkLimit() when the first resources are nearly all busy.
// walked_all: whether those were every resource there is (walkedPage).
// The walk is a subquery with its own ORDER BY and LIMIT, the rules joined inside it, so
// that the planner reads the resources in order and stops as soon as the page is full;
// the type is said again outside so that it sees the walk is already in page order.
// OFFSET 0 keeps each probe a subplan run per resource reached. The buffers come from
// effective_rule in the same statement, not through resource_blocked_range(), which would
// be a function call per resource.
export const LIST_AVAILABLE = `
  WITH walk_limit AS (${walkLimit(FLEET_IN_PAGE_ORDER, FREE_IN_WINDOW, OF_TYPE, '$8')}
  ), walk AS (${FLEET_IN_PAGE_ORDER}
    LIMIT (SELECT n FROM walk_limit)
  )
  SELECT r.id, r.type, r.name, r.site_id, r.mac::text AS mac, r.created_at, r.updated_at,
         ${walkedAll(OF_TYPE, '(SELECT n FROM walk_limit)')}
  FROM walk r
  WHERE ($1::text IS NULL OR r.type = $1)
    AND ${FREE_IN_WINDOW}
    AND ${RULES_ALLOW}
    AND ${memberWindow('$9', '$10')}
  ORDER BY r.type, r.name, r.id
  LIMIT $5 OFFSET $6`

// The same page when a short walk did not fill it (most resources are busy in the window):
// the resources free in the window (freeResourceRows: of the type when one is given, as
// LIST_AVAILABLE_OF_TYPE_WHOLE), in page order. The member rules in $7 (and memberWindow(),
// $8, $9) are judged only for resources free in the window.
const listAvailableWhole = (type?: string) => `
  WITH page AS (
    SELECT r.id
    FROM (${freeResourceRows("tstzrange($3::timestamptz, $4::timestamptz, '[)')", type)}) AS r
    WHERE ${OF_TYPE}
      AND ${RULES_ALLOW}
      AND ${memberWindow('$8', '$9')}
    ORDER BY r.type, r.name, r.id
    LIMIT $5 OFFSET $6
  )
  SELECT r.id, r.type, r.name, r.site_id, r.mac::text AS mac, r.created_at, r.updated_at
  FROM page JOIN resource r USING (id)
  ORDER BY r.type, r.name, r.id`
const LIST_AVAILABLE_WHOLE = listAvailableWhole()
const LIST_AVAILABLE_OF_TYPE_WHOLE = listAvailableWhole('$1')

// $2 scopes the lookup to one type for the per-type routes; null means any type.
const GET = `SELECT ${COLUMNS} FROM resource WHERE id = $1 AND ($2::text IS NULL OR type = $2)`

const LOCK = `SELECT ${COLUMNS} FROM resource WHERE id = $1 AND ($2::text IS NULL OR type = $2) FOR UPDATE`

const INSERT = `
  INSERT INTO resource (type, name, site_id, mac)
  VALUES ($1, $2, $3, $4)
  RETURNING ${COLUMNS}`

// $6: on a per-type route a PUT must not turn a resource of another type into this one.
const UPSERT = `
  INSERT INTO resource (id, type, name, site_id, mac)
  VALUES ($1, $2, $3, $4, $5)
  ON CONFLICT (id) DO UPDATE SET
    type = EXCLUDED.type, name = EXCLUDED.name, site_id = EXCLUDED.site_id, mac = EXCLUDED.mac
  WHERE NOT $6::boolean OR resource.type = EXCLUDED.type
  RETURNING ${COLUMNS}, (xmax = 0) AS created`

const UPDATE = `
  UPDATE resource SET type = $2, name = $3, site_id = $4, mac = $5
  WHERE id = $1
  RETURNING ${COLUMNS}`

// Allocations that block the slot now or later: what a plain DELETE refuses to take with it.
const UNENDED_ALLOCATIONS = `
  SELECT count(*)::int AS count FROM allocation
  WHERE resource_id = $1 AND allocation_blocks(status, expires_at) AND allocation_ends(during) > now()`

const DELETE_CONTAINERS = 'DELETE FROM container WHERE freezer_id = $1'

const DELETE = 'DELETE FROM resource WHERE id = $1'

const LIST_INSTRUMENTS = `
  SELECT id, type, name, site_id, site_name, mac::text AS mac
  FROM instrument
  WHERE $1::bigint IS NULL OR site_id = $1
  ORDER BY type, name, id
  LIMIT $2 OFFSET $3`

function values (resource: ResourceFields) {
  return [resource.type, resource.name, resource.site_id ?? null, resource.mac ?? null]
}

/**
 * Which member rules judge an availability window: a window is a search, not a booking,
 * so a side left open is not held against it. A given end must be on the slot grid; a
 * given start is judged by notice and advance; a window with both ends by its length and
 * the opening hours too (with one end, LIST_AVAILABLE asks that the end given is open).
 */
function windowRules (filter: ResourceFilter): string[] {
  const bothEnds = ['min_notice', 'max_advance', 'min_duration', 'max_duration', 'opening_hours', 'slot_grid']
  if (filter.available_from === undefined) return filter.available_to === undefined ? [] : ['slot_grid']
  return filter.available_to === undefined ? ['min_notice', 'max_advance', 'slot_grid'] : bothEnds
}

/** With `options.rules` (a member, `options.actor`), available_from/to also keep only windows the member rules and their quotas allow. */
export async function listResources (db: Db, filter: ResourceFilter, page: Page, options: { rules: boolean, actor: number }): Promise<Resource[]> {
  if (filter.available_from === undefined && filter.available_to === undefined) {
    return (await db.query<Resource>(LIST, [filter.type ?? null, filter.site_id ?? null, page.limit + 1, page.offset])).rows
  }
  // When a short walk does not fill the page, most resources are busy in the window: then
  // the set-wise search gives the page.
  const values = [filter.type ?? null, filter.site_id ?? null, filter.available_from ?? null, filter.available_to ?? null,
    page.limit + 1, page.offset, options.rules ? windowRules(filter) : []]
  return walkedPage(page,
    async (budget) => (await db.query<Resource & Walked>(LIST_AVAILABLE, [...values, budget, options.rules, options.actor])).rows,
    async () => (await db.query<Resource>(filter.type === undefined ? LIST_AVAILABLE_WHOLE : LIST_AVAILABLE_OF_TYPE_WHOLE, [...values, options.rules, options.actor])).rows)
}

export async function getResource (db: Db, id: string, type?: string): Promise<Resource | undefined> {
  return (await db.query<Resource>(GET, [id, type ?? null])).rows[0]
}

async function lockResource (db: Db, id: string, type?: string): Promise<Resource | undefined> {
  return (await db.query<Resource>(LOCK, [id, type ?? null])).rows[0]
}

/** Created as `actor` (an account id), whom its event in the change feed names. */
export async function createResource (db: Db, resource: ResourceFields, actor: number): Promise<Resource> {
  return withTransaction(db, async (client) => (await client.query<Resource>(INSERT, values(resource))).rows[0]!, { actor })
}

/** Undefined when keepType is set and the id belongs to a resource of another type. */
export async function upsertResource (
  db: Db, id: string, resource: ResourceFields, keepType: boolean, actor: number
): Promise<{ resource: Resource, created: boolean } | undefined> {
  const row = await withTransaction(db, async (client) =>
    (await client.query<Resource & { created: boolean }>(UPSERT, [id, ...values(resource), keepType])).rows[0], { actor })
  if (!row) return undefined
  const { created, ...stored } = row
  return { resource: stored, created }
}

async function updateResource (db: Db, id: string, resource: ResourceFields): Promise<Resource | undefined> {
  return (await db.query<Resource>(UPDATE, [id, ...values(resource)])).rows[0]
}

async function countUnendedAllocations (db: Db, id: string): Promise<number> {
  return (await db.query<{ count: number }>(UNENDED_ALLOCATIONS, [id])).rows[0]!.count
}

async function deleteContainersOf (db: Db, freezerId: string): Promise<void> {
  await db.query(DELETE_CONTAINERS, [freezerId])
}

/** Its allocations go with it (ON DELETE CASCADE); containers must be gone first. */
async function deleteResource (db: Db, id: string): Promise<void> {
  await db.query(DELETE, [id])
}

/** Merges the given fields onto the stored resource under a row lock, as `actor`. Undefined when not found (in `type`). */
export async function patchResource (db: Db, id: string, type: string | undefined, patch: Partial<ResourceFields>, actor: number): Promise<Resource | undefined> {
  return withTransaction(db, async (client) => {
    const current = await lockResource(client, id, type)
    return current && updateResource(client, id, { ...current, ...patch })
  }, { actor })
}

/**
 * Deletes a resource and its past allocations. While allocations that have not ended
 * exist it refuses (IN_USE), unless `force`, which deletes them too, and a freezer's
 * containers. The row lock keeps a booking from slipping in between check and delete:
 * inserting an allocation takes a key-share lock on its resource. `actor` (an account
 * id) is set for the transaction, since deleting allocations is a change to them.
 */
export async function removeResource (db: Db, id: string, type: string | undefined, force: boolean, actor: number): Promise<boolean> {
  return withTransaction(db, async (client) => {
    if (!await lockResource(client, id, type)) return false
    if (!force) {
      const unended = await countUnendedAllocations(client, id)
      if (unended > 0) {
        throw new DomainError('IN_USE', `the resource has ${unended} allocation${unended === 1 ? '' : 's'} that ${unended === 1 ? 'has' : 'have'} not ended; cancel ${unended === 1 ? 'it' : 'them'} first or delete with ?force=true`)
      }
    } else {
      await deleteContainersOf(client, id)
    }
    await deleteResource(client, id)
    return true
  }, { actor })
}

export async function listInstruments (db: Db, siteId: number | undefined, page: Page): Promise<Instrument[]> {
  return (await db.query<Instrument>(LIST_INSTRUMENTS, [siteId ?? null, page.limit + 1, page.offset])).rows
}
