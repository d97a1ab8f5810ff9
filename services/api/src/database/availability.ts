import { prepared, walkedPage, type Db, type Page } from './db.js'
import type { FreeTime, Slot } from '../schemas/availability.js'

/**
 * The window searched for resource `e` (a row of effective_rule): for a member ($member
 * true) only the part they may book in, [now + min_notice, now + max_advance), so they
 * see nothing that breaks notice or advance. resource_free_time keeps every gap clear of
 * the buffers.
 */
const searchSpan = (from: string, to: string, member: string) =>
  `CASE WHEN ${member}::boolean THEN member_booking_window(tstzrange(${from}, ${to}, '[)'), e.min_notice, e.max_advance, now())
        ELSE tstzrange(${from}, ${to}, '[)') END`

/** For a member, whether a booking of `duration` from `start` is within min_duration and max_duration of `e`. */
const lengthAllowed = (start: string, duration: string, member: string) => `
  (NOT ${member}::boolean OR (
    (e.min_duration IS NULL OR ${start} + e.min_duration <= ${start} + ${duration}) AND
    (e.max_duration IS NULL OR ${start} + ${duration} <= ${start} + e.max_duration)))`

// Joining the resource makes an unknown id (or one of another type) give no rows, like a
// fully booked window; the caller tells the two apart only when the page is empty. A
// member is not shown gaps shorter than min_duration: nothing fits there for them.
const FREE = `
  SELECT lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM effective_rule e
  CROSS JOIN LATERAL unnest(resource_free_time(e.resource_id, ${searchSpan('$3', '$4', '$7')})) AS gap
  WHERE e.resource_id = $1 AND ($2::text IS NULL OR e.type = $2)
    AND (NOT $7::boolean OR e.min_duration IS NULL OR lower(gap) + e.min_duration <= upper(gap))
  ORDER BY lower(gap)
  LIMIT $5 OFFSET $6`

// The resources of type $1 (at site $2) with their rules and search span: what SLOTS and
// SLOTS_AT_START look at, as `e`.
const SEARCHED = `
    SELECT r.id, r.name, e.buffer_before, e.buffer_after, e.min_duration, e.max_duration,
           ${searchSpan('$3', '$4', '$8')} AS span
    FROM resource r
    JOIN effective_rule e ON e.resource_id = r.id
    WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)`

// The allocations `a` that block `resource` (a row with the resource's id and its
// buffer_before and buffer_after rules) within `span`: each widened by its own buffers
// meets `span` widened by the resource's (what the exclusion constraint compares).
export const blocking = (span: string, resource = 'e') => `
      a.resource_id = ${resource}.id
      AND allocation_blocks(a.status, a.expires_at)
      AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after)
          && allocation_blocked_range(${span}, ${resource}.buffer_before, ${resource}.buffer_after)`

// Whether nothing blocks `span` on resource `r` (a row with the resource's id), one of the
// resources of `type`, judged set-wise rather than by a probe per resource. A resource
// without rules of its own follows its type's buffers, so all such resources are judged
// against one window widened by them: the live allocations that meet it are found through
// allocation_blocked_idx once, and each resource is a lookup in that set (PostgreSQL
// hashes an uncorrelated NOT IN subquery: `span` must not depend on the resource). A
// resource with rules of its own (few) is looked up alone in the exclusion constraint's
// index, as is every resource when no type is given. The cost is one pass over what is
// busy in the window plus a hash lookup per resource.
export const freeOver = (type: string, span: string, resource = 'r') => `
      CASE WHEN ${type}::text IS NULL OR ${resource}.id IN (SELECT resource_id FROM resource_rule)
        THEN NOT EXISTS (
          SELECT 1 FROM allocation a
          WHERE a.resource_id = ${resource}.id AND allocation_blocks(a.status, a.expires_at)
            AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after) && resource_blocked_range(${resource}.id, ${span}))
        ELSE ${resource}.id NOT IN (
          SELECT a.resource_id FROM allocation a
          WHERE allocation_blocks(a.status, a.expires_at)
            AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after) && type_blocked_range(${type}, ${span}))
      END`

// What allocation `a` takes from resource `e`'s free time: widened by its own buffers and,
// on each side, by the resource's for a new booking (resource_free_time() does the same).
const TAKEN = `allocation_blocked_range(a.during,
             a.buffer_before + coalesce(e.buffer_after, '0'), a.buffer_after + coalesce(e.buffer_before, '0'))`

// Each resource's free time is resource_free_time()'s multirange difference, written out
// here so that it is planned into the statement (one index probe per resource) instead
// of a function call per resource: the search span minus every blocking allocation
// widened by its own buffers and the resource's. O(resources of the type) probes.
// The duration is added to each gap's start rather than compared with its length, so that
// months and days keep their calendar meaning (P1M from 31 January ends on 28 February).
// For a member, a resource whose min_duration or max_duration rules out a booking of
// that duration has no slots.
export const SLOTS = `
  WITH searched AS (${SEARCHED})
  SELECT e.id AS resource_id, e.name AS resource_name, lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM searched e
  CROSS JOIN LATERAL (
    SELECT tstzmultirange(e.span) - coalesce(range_agg(${TAKEN}), '{}') AS free
    FROM allocation a
    WHERE ${blocking('e.span')}
  ) f
  CROSS JOIN LATERAL unnest(f.free) AS gap
  WHERE lower(gap) + $5::interval <= upper(gap)
    AND ${lengthAllowed('lower(gap)', '$5::interval', '$8')}
  ORDER BY lower(gap), e.name, e.id
  LIMIT $6 OFFSET $7`

// The slots that start at the window's start come first in SLOTS' order (no gap starts
// earlier), by name: every resource whose search span starts there and that is free for
// the duration from there, its gap ending where the first blocking allocation (widened as
// in SLOTS) begins, or where the span ends. This walks the resources by name, one probe
// each, and stops at the end of the page or after $9 resources (OFFSET 0 keeps the probe
// a subplan per resource reached). When most resources are free at the window's start,
// the usual case, it fills the page at a cost that grows with neither the allocations nor
// the resources (walkedPage).
export const SLOTS_AT_START = `
  WITH walk AS (${SEARCHED}
    ORDER BY r.name, r.id
    LIMIT $9
  )
  SELECT e.id AS resource_id, e.name AS resource_name, lower(e.span) AS starts_at,
         least(upper(e.span), (SELECT min(lower(${TAKEN})) FROM allocation a WHERE ${blocking('e.span')})) AS ends_at
  FROM walk e
  WHERE lower(e.span) = $3::timestamptz
    AND $3::timestamptz + $5::interval <= upper(e.span)
    AND ${lengthAllowed('$3::timestamptz', '$5::interval', '$8')}
    AND NOT EXISTS (
      SELECT 1 FROM allocation a
      WHERE ${blocking("tstzrange($3::timestamptz, $3::timestamptz + $5::interval, '[)')")}
      OFFSET 0)
  ORDER BY e.name, e.id
  LIMIT $6 OFFSET $7`

export interface Window { from: string, to: string }

/** Whether the search is for someone the member booking rules bind (policy decides). */
export interface SearchOptions { rules: boolean }

/**
 * The free parts of [from, to) for one resource (of `type`, when given), earliest first:
 * where a new allocation fits with its buffers and its neighbours'. With `options.rules`,
 * also only where a member may book (notice, advance, min_duration).
 */
export async function listFreeTime (db: Db, resourceId: string, type: string | undefined, window: Window, page: Page, options: SearchOptions): Promise<FreeTime[]> {
  return (await db.query<FreeTime>(prepared('free-time', FREE, [resourceId, type ?? null, window.from, window.to, page.limit + 1, page.offset, options.rules]))).rows
}

export interface SlotSearch extends Window {
  type: string
  site_id?: number
  /** An ISO 8601 duration already checked by the caller; PostgreSQL reads it as an interval. */
  duration: string
}

/**
 * Free gaps at least `duration` long across the resources of a type (and site), earliest
 * first, buffers kept clear. With `options.rules`, only what a member may book. The slots
 * at the window's start sort before all others, so when a short walk finds enough of them
 * to fill the page (and the row after it), they are the page; otherwise the full search.
 */
export async function findSlots (db: Db, search: SlotSearch, page: Page, options: SearchOptions): Promise<Slot[]> {
  const values = [search.type, search.site_id ?? null, search.from, search.to, search.duration, page.limit + 1, page.offset, options.rules]
  return walkedPage(page,
    async (budget) => (await db.query<Slot>(SLOTS_AT_START, [...values, budget])).rows,
    async () => (await db.query<Slot>(SLOTS, values)).rows)
}
