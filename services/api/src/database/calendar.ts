import type { Db } from './db.js'

/** What a calendar event is made of: one blocking allocation. */
export interface CalendarEntry {
  id: string
  starts_at: string | null
  ends_at: string | null
  kind: string
  status: string
  description: string | null
  created_at: string
  updated_at: string
  expires_at: string | null
}

// A feed is read whole by calendar clients, so it is not paged; the route bounds the window.
const BLOCKING = `
  SELECT a.id, lower(a.during) AS starts_at, upper(a.during) AS ends_at, a.kind,
         allocation_current_status(a.status, a.expires_at) AS status, a.description,
         a.created_at, a.updated_at, a.expires_at
  FROM allocation a
  WHERE a.resource_id = $1
    AND allocation_blocks(a.status, a.expires_at)
    AND allocation_overlaps(a.during, tstzrange($2, $3, '[)'))
  ORDER BY lower(a.during) ASC NULLS FIRST, a.id`

/** The confirmed allocations and live holds of a resource that overlap [from, to). */
export async function listCalendarEntries (db: Db, resourceId: string, from: string, to: string): Promise<CalendarEntry[]> {
  return (await db.query<CalendarEntry>(BLOCKING, [resourceId, from, to])).rows
}
