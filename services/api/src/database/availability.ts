import type { Db, Page } from './db.js'
import type { FreeTime, Slot } from '../schemas/availability.js'

// Joining the resource makes an unknown id (or one of another type) give no rows, like a
// fully booked window; the caller tells the two apart only when the page is empty.
const FREE = `
  SELECT lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM resource r
  CROSS JOIN LATERAL unnest(resource_free_time(r.id, tstzrange($3, $4, '[)'))) AS gap
  WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
  ORDER BY lower(gap)
  LIMIT $5 OFFSET $6`

// The duration is added to each gap's start rather than compared with its length, so that
// months and days keep their calendar meaning (P1M from 31 January ends on 28 February).
const SLOTS = `
  SELECT r.id AS resource_id, r.name AS resource_name, lower(gap) AS starts_at, upper(gap) AS ends_at
  FROM resource r
  CROSS JOIN LATERAL unnest(resource_free_time(r.id, tstzrange($3, $4, '[)'))) AS gap
  WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
    AND lower(gap) + $5::interval <= upper(gap)
  ORDER BY lower(gap), r.name, r.id
  LIMIT $6 OFFSET $7`

export interface Window { from: string, to: string }

/** The free parts of [from, to) for one resource (of `type`, when given), earliest first. */
export async function listFreeTime (db: Db, resourceId: string, type: string | undefined, window: Window, page: Page): Promise<FreeTime[]> {
  return (await db.query<FreeTime>(FREE, [resourceId, type ?? null, window.from, window.to, page.limit + 1, page.offset])).rows
}

export interface SlotSearch extends Window {
  type: string
  site_id?: number
  /** An ISO 8601 duration already checked by the caller; PostgreSQL reads it as an interval. */
  duration: string
}

/** Free gaps at least `duration` long across the resources of a type (and site), earliest first. */
export async function findSlots (db: Db, search: SlotSearch, page: Page): Promise<Slot[]> {
  return (await db.query<Slot>(SLOTS, [search.type, search.site_id ?? null, search.from, search.to, search.duration,
    page.limit + 1, page.offset])).rows
}
