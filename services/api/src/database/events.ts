import type { Db } from './db.js'
import type { FeedEvent } from '../schemas/events.js'

/** The channel event_number_committed() notifies on, with the last position it gave. */
export const EVENTS_CHANNEL = 'invsys_events'

/** What GET /api/events may be narrowed to. */
export interface EventFilter {
  types?: string[]
  resource_id?: string
  resource_type?: string
}

/** The feed's state: the last position given, and the first still served. */
interface FeedState { last_position: number, kept_from: number }

const STATE = 'SELECT last_position, kept_from FROM event_feed'

// In order of position, after $1 (and never before what is still kept). The view's two
// halves are each read in order from their position index and merged.
const LIST = `
  SELECT event_json(e) AS event
  FROM event e
  WHERE e.position > (SELECT greatest($1::bigint, kept_from - 1) FROM event_feed)
    AND ($2::text[] IS NULL OR e.type = ANY ($2::text[]))
    AND ($3::uuid IS NULL OR e.resource_id = $3::uuid)
    AND ($4::text IS NULL OR e.resource_type = $4::text)
  ORDER BY e.position
  LIMIT $5`

const NUMBER = 'SELECT event_number_committed($1) AS numbered'

const WAITING = `
  SELECT EXISTS (SELECT 1 FROM allocation_event WHERE position IS NULL)
      OR EXISTS (SELECT 1 FROM resource_event WHERE position IS NULL) AS waiting`

// Holds past their expires_at, written as expired (the history trigger announces each as
// allocation.expired). SKIP LOCKED: replicas sweeping at once share the rows, and a hold
// a request is changing right now is left to that request (or to the next sweep).
const EXPIRE_HOLDS = `
  UPDATE allocation SET status = 'expired'
  WHERE id IN (
    SELECT id FROM allocation
    WHERE status = 'held' AND expires_at <= now()
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)`

// The first position to keep: the first event written within the retention, or (none)
// the next position to be given. The scan walks the positions that are past retention,
// once: they are not looked at again.
const ADVANCE_KEPT_FROM = `
  WITH feed AS (
    SELECT last_position, kept_from FROM event_feed
  ), first_recent AS (
    SELECT min(p) AS p FROM (
      (SELECT h.position AS p FROM allocation_event h, feed
       WHERE h.position >= feed.kept_from AND h.at >= now() - make_interval(days => $1)
       ORDER BY h.position LIMIT 1)
      UNION ALL
      (SELECT r.position FROM resource_event r, feed
       WHERE r.position >= feed.kept_from AND r.occurred_at >= now() - make_interval(days => $1)
       ORDER BY r.position LIMIT 1)) AS recent
  )
  UPDATE event_feed f SET kept_from = coalesce(first_recent.p, feed.last_position + 1)
  FROM feed, first_recent
  WHERE coalesce(first_recent.p, feed.last_position + 1) > f.kept_from
  RETURNING f.kept_from`

// What the feed no longer serves goes: resource events, and what webhooks still owed of
// them (their attempts go with them). Allocation events are the allocations' history,
// which is kept.
const DELETE_RESOURCE_EVENTS = `
  DELETE FROM resource_event
  WHERE seq IN (
    SELECT seq FROM resource_event
    WHERE position > 0 AND position < (SELECT kept_from FROM event_feed)
    LIMIT $1)`

const DELETE_DELIVERIES = `
  DELETE FROM webhook_delivery
  WHERE (endpoint_id, position) IN (
    SELECT endpoint_id, position FROM webhook_delivery
    WHERE position < (SELECT kept_from FROM event_feed)
    LIMIT $1)`

export async function feedState (db: Db): Promise<FeedState> {
  return (await db.query<FeedState>(STATE)).rows[0]!
}

/** Up to `limit` events after position `after`, as the feed sends them. */
export async function listEvents (db: Db, after: number, filter: EventFilter, limit: number): Promise<FeedEvent[]> {
  const { rows } = await db.query<{ event: FeedEvent }>(LIST, [after, filter.types ?? null, filter.resource_id ?? null, filter.resource_type ?? null, limit])
  return rows.map((row) => row.event)
}

/** Numbers up to `batch` committed events; how many it numbered. */
export async function numberCommittedEvents (db: Db, batch: number): Promise<number> {
  return (await db.query<{ numbered: number }>(NUMBER, [batch])).rows[0]!.numbered
}

/** Whether committed (or in-flight) changes are waiting for a position. */
export async function eventsWaiting (db: Db): Promise<boolean> {
  return (await db.query<{ waiting: boolean }>(WAITING)).rows[0]!.waiting
}

/** Writes up to `batch` run-out holds as expired; how many. */
export async function expireRunOutHolds (db: Db, batch: number): Promise<number> {
  return (await db.query(EXPIRE_HOLDS, [batch])).rowCount ?? 0
}

/** Moves the feed's start past what is older than `days`; the new start, or undefined when it did not move. */
export async function advanceKeptFrom (db: Db, days: number): Promise<number | undefined> {
  return (await db.query<{ kept_from: number }>(ADVANCE_KEPT_FROM, [days])).rows[0]?.kept_from
}

/** Deletes up to `batch` resource events and owed deliveries the feed no longer serves; how many rows went. */
export async function deleteUnservedEvents (db: Db, batch: number): Promise<number> {
  const events = (await db.query(DELETE_RESOURCE_EVENTS, [batch])).rowCount ?? 0
  const deliveries = (await db.query(DELETE_DELIVERIES, [batch])).rowCount ?? 0
  return events + deliveries
}
