import type { Db, Page } from './db.js'
import type { FreeTime, Slot } from '../schemas/availability.js'

/**
 * The window searched for resource `e`: for a member ($member true) only the part they may
 * book in, [now + min_notice, now + max_advance), so they see nothing that breaks notice
 * or advance. resource_free_time keeps every gap clear of the buffers.
 */
const searchSpan = (from: string, to: string, member: string) =>
  `CASE WHEN ${member}::boolean THEN member_booking_span(e.resource_id, tstzrange(${from}, ${to}, '[)'), now()) ELSE tstzrange(${from}, ${to}, '[)') END`

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

// The duration is added to each gap's start rather than compared with its length, so that
// months and days keep their calendar meaning (P1M from 31 January ends on 28 February).
// For a member, a resource whose min_duration or max_duration rules out a booking of
// that duration has no slots.
const SLOTS = `
  SELECT r.id AS resource_id, r.name AS resource_name, lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM resource r
  JOIN effective_rule e ON e.resource_id = r.id
  CROSS JOIN LATERAL unnest(resource_free_time(r.id, ${searchSpan('$3', '$4', '$8')})) AS gap
  WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
    AND lower(gap) + $5::interval <= upper(gap)
    AND (NOT $8::boolean OR (
          (e.min_duration IS NULL OR lower(gap) + e.min_duration <= lower(gap) + $5::interval) AND
          (e.max_duration IS NULL OR lower(gap) + $5::interval <= lower(gap) + e.max_duration)))
  ORDER BY lower(gap), r.name, r.id
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
  return (await db.query<FreeTime>(FREE, [resourceId, type ?? null, window.from, window.to, page.limit + 1, page.offset, options.rules])).rows
}

export interface SlotSearch extends Window {
  type: string
  site_id?: number
  /** An ISO 8601 duration already checked by the caller; PostgreSQL reads it as an interval. */
  duration: string
}

/**
 * Free gaps at least `duration` long across the resources of a type (and site), earliest
 * first, buffers kept clear. With `options.rules`, only what a member may book.
 */
export async function findSlots (db: Db, search: SlotSearch, page: Page, options: SearchOptions): Promise<Slot[]> {
  return (await db.query<Slot>(SLOTS, [search.type, search.site_id ?? null, search.from, search.to, search.duration,
    page.limit + 1, page.offset, options.rules])).rows
}
