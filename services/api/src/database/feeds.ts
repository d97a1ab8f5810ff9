import type { Db, Page } from './db.js'
import type { Actor } from '../schemas/accounts.js'
import type { CalendarEntry } from './calendar.js'
import { DomainError } from './outcomes.js'

/** Exactly one of these is set: what a feed shows. */
export interface FeedScope {
  resource_id?: string
  site_id?: number
  type?: string
  mine?: true
}

/** A feed as the API shows it: never its secret or the secret's hash. */
export interface Feed extends FeedScope {
  id: string
  account_id: number
  label: string
  created_at: string
  revoked_at: string | null
}

/** A calendar entry of a feed: the allocation, its resource, and its site by name. */
export interface FeedEntry extends CalendarEntry {
  cancelled_at: string | null
  resource_name: string
  resource_type: string
  site_name: string | null
}

interface FeedRow {
  id: string
  account_id: number
  label: string
  resource_id: string | null
  site_id: number | null
  type: string | null
  mine: boolean | null
  created_at: string
  revoked_at: string | null
}

// Never secret_hash: it leaves the database only to be compared with a fetched address's.
const COLUMNS = 'id, account_id, label, resource_id, site_id, type, mine, created_at, revoked_at'

// A scope naming a missing resource, site or type fails on its foreign key, which the
// API reports as REFERENCE_NOT_FOUND naming the field: no window for a race in between.
const INSERT = `
  INSERT INTO calendar_feed (account_id, label, secret_hash, resource_id, site_id, type, mine)
  VALUES ($1, $2, $3, $4, $5, $6, $7)
  RETURNING ${COLUMNS}`

// $1: the only account whose feeds are listed, or null for everyone's (admins).
const LIST = `
  SELECT ${COLUMNS} FROM calendar_feed
  WHERE ($1::bigint IS NULL OR account_id = $1)
    AND ($2::boolean OR revoked_at IS NULL)
  ORDER BY created_at, id
  LIMIT $3 OFFSET $4`

// $2: the only account whose feeds the caller may revoke, or null for any. Revoking a
// revoked feed changes nothing (the first revoked_at stays) and still reports it found.
const REVOKE = `
  WITH target AS (
    SELECT id, ($2::bigint IS NULL OR account_id = $2) AS permitted
    FROM calendar_feed WHERE id = $1
  ), revoked AS (
    UPDATE calendar_feed SET revoked_at = now()
    WHERE id = (SELECT id FROM target WHERE permitted) AND revoked_at IS NULL
  )
  SELECT permitted FROM target`

// Revoked feeds are found too, and told apart by the caller after the hash comparison.
const BY_SECRET_HASH = `SELECT ${COLUMNS}, secret_hash FROM calendar_feed WHERE secret_hash = $1`

// Live allocations (confirmed, and holds that have not run out) and cancelled ones, so a
// calendar that showed a booking learns it was cancelled. A hold that ran out is left
// out: it was only ever tentative. One query for every scope: the null parameters drop
// out, and each scope has its index. The window is said twice: as && for
// allocation_during_idx (a site, a type, an owner), and as allocation_overlaps for
// allocation_resource_span_idx (one resource).
const ENTRIES = `
  SELECT a.id, lower(a.during) AS starts_at, upper(a.during) AS ends_at, a.kind,
         allocation_current_status(a.status, a.expires_at) AS status, a.description,
         a.created_at, a.updated_at, a.expires_at, a.cancelled_at,
         r.name AS resource_name, r.type AS resource_type, s.name AS site_name
  FROM allocation a
  JOIN resource r ON r.id = a.resource_id
  LEFT JOIN site s ON s.id = r.site_id
  WHERE ($1::uuid IS NULL OR a.resource_id = $1)
    AND ($2::bigint IS NULL OR r.site_id = $2)
    AND ($3::text IS NULL OR r.type = $3)
    AND ($4::bigint IS NULL OR a.owner_id = $4)
    AND (allocation_blocks(a.status, a.expires_at) OR a.status = 'cancelled')
    AND a.during && tstzrange($5, $6, '[)')
    AND allocation_overlaps(a.during, tstzrange($5, $6, '[)'))
  ORDER BY lower(a.during) ASC NULLS FIRST, a.id`

/** The row with only its own scope field: the others are absent rather than null. */
function toFeed (row: FeedRow): Feed {
  const { resource_id: resourceId, site_id: siteId, type, mine, ...rest } = row
  return {
    ...rest,
    ...(resourceId !== null ? { resource_id: resourceId } : {}),
    ...(siteId !== null ? { site_id: siteId } : {}),
    ...(type !== null ? { type } : {}),
    ...(mine ? { mine: true as const } : {})
  }
}

export async function createFeed (db: Db, accountId: number, label: string, secretHash: Buffer, scope: FeedScope): Promise<Feed> {
  const row = (await db.query<FeedRow>(INSERT, [accountId, label, secretHash,
    scope.resource_id ?? null, scope.site_id ?? null, scope.type ?? null, scope.mine ?? null])).rows[0]!
  return toFeed(row)
}

/** A member's feeds, or everyone's for an admin; revoked ones only when asked. */
export async function listFeeds (db: Db, actor: Actor, includeRevoked: boolean, page: Page): Promise<Feed[]> {
  const onlyAccount = actor.role === 'admin' ? null : actor.id
  return (await db.query<FeedRow>(LIST, [onlyAccount, includeRevoked, page.limit + 1, page.offset])).rows.map(toFeed)
}

/** Revokes a feed for good: its owner (NOT_OWNER for another member), or an admin. False when there is no such feed. */
export async function revokeFeed (db: Db, id: string, actor: Actor): Promise<boolean> {
  const onlyAccount = actor.role === 'admin' ? null : actor.id
  const row = (await db.query<{ permitted: boolean }>(REVOKE, [id, onlyAccount])).rows[0]
  if (row && !row.permitted) throw new DomainError('NOT_OWNER', 'only an admin or the feed\'s own account may revoke it')
  return row !== undefined
}

/** The feed whose secret hashes to `secretHash`, revoked or not, with the stored hash to compare. */
export async function findFeedBySecretHash (db: Db, secretHash: Buffer): Promise<{ feed: Feed, secretHash: Buffer } | undefined> {
  const row = (await db.query<FeedRow & { secret_hash: Buffer }>(BY_SECRET_HASH, [secretHash])).rows[0]
  if (!row) return undefined
  const { secret_hash: stored, ...feed } = row
  return { feed: toFeed(feed), secretHash: stored }
}

/** What a feed shows in [from, to): its scope's live and cancelled allocations. */
export async function listFeedEntries (db: Db, feed: Feed, from: string, to: string): Promise<FeedEntry[]> {
  return (await db.query<FeedEntry>(ENTRIES, [feed.resource_id ?? null, feed.site_id ?? null, feed.type ?? null,
    feed.mine ? feed.account_id : null, from, to])).rows
}
