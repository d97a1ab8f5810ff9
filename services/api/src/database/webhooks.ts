import { withTransaction, type Db, type Page } from './db.js'
import type { FeedEvent } from '../schemas/events.js'
import type { WebhookAttempt, WebhookEndpoint, WebhookPatch } from '../schemas/webhooks.js'

/** What an endpoint is made with. */
interface NewEndpoint {
  url: string
  types: string[] | null
  resource_type: string | null
  description: string | null
}

// Never the secrets: they leave the database only to sign a delivery.
const COLUMNS = `id, url, types, resource_type, description, enabled, disabled_reason, disabled_at,
  CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END AS previous_secret_expires_at, created_at, updated_at`

// Events from now on: the endpoint starts at the head of the feed.
const INSERT = `
  INSERT INTO webhook_endpoint (url, types, resource_type, description, secret, fanned_out_through)
  SELECT $1, $2, $3, $4, $5, last_position FROM event_feed
  RETURNING ${COLUMNS}`

const LIST = `SELECT ${COLUMNS} FROM webhook_endpoint ORDER BY created_at, id LIMIT $1 OFFSET $2`

const GET = `SELECT ${COLUMNS} FROM webhook_endpoint WHERE id = $1`

const LOCK = 'SELECT enabled FROM webhook_endpoint WHERE id = $1 FOR UPDATE'

// $5: true turns it on (the reason goes), false off (with $6, the reason), null leaves it.
const UPDATE = `
  UPDATE webhook_endpoint SET
    url = coalesce($2, url),
    types = CASE WHEN $3 THEN $4::text[] ELSE types END,
    description = CASE WHEN $7 THEN $8 ELSE description END,
    enabled = coalesce($5, enabled),
    disabled_reason = CASE WHEN $5 IS NULL THEN disabled_reason WHEN $5 THEN NULL ELSE coalesce(disabled_reason, $6) END,
    disabled_at = CASE WHEN $5 IS NULL THEN disabled_at WHEN $5 THEN NULL ELSE coalesce(disabled_at, now()) END,
    updated_at = now()
  WHERE id = $1
  RETURNING ${COLUMNS}`

// Re-enabled: what it still owes is tried again at once, with the whole schedule ahead.
const RESUME = `
  UPDATE webhook_delivery SET attempts = 0, next_attempt_at = now()
  WHERE endpoint_id = $1 AND delivered_at IS NULL`

const DELETE = 'DELETE FROM webhook_endpoint WHERE id = $1'

// The old secret keeps signing for a day, so receivers can switch at their pace.
const ROTATE = `
  UPDATE webhook_endpoint
  SET previous_secret = secret, previous_secret_expires_at = now() + interval '24 hours', secret = $2, updated_at = now()
  WHERE id = $1
  RETURNING ${COLUMNS}`

const ATTEMPTS = `
  SELECT e.id AS event_id, a.position, e.type, a.attempted_at, a.response_status, a.error, a.duration_ms, a.next_attempt_at
  FROM webhook_attempt a
  JOIN event e ON e.position = a.position
  WHERE a.endpoint_id = $1
  ORDER BY a.id DESC
  LIMIT $2 OFFSET $3`

const ENABLED = 'SELECT id FROM webhook_endpoint WHERE enabled ORDER BY id'

// One endpoint's cursor, locked so that replicas take turns (SKIP LOCKED: another is at it).
const LOCK_CURSOR = `
  SELECT greatest(w.fanned_out_through, f.kept_from - 1) AS cursor, w.types, w.resource_type
  FROM webhook_endpoint w, event_feed f
  WHERE w.id = $1 AND w.enabled
  FOR UPDATE OF w SKIP LOCKED`

// The next events after the cursor, in order; those the endpoint wants are queued.
const QUEUE = `
  WITH batch AS (
    SELECT e.position, e.type, e.resource_id, e.resource_type
    FROM event e
    WHERE e.position > $2
    ORDER BY e.position
    LIMIT $5
  ), queued AS (
    INSERT INTO webhook_delivery (endpoint_id, position, resource_id)
    SELECT $1, b.position, b.resource_id FROM batch b
    WHERE ($3::text[] IS NULL OR b.type = ANY ($3::text[])) AND ($4::text IS NULL OR b.resource_type = $4)
    ON CONFLICT DO NOTHING
  )
  SELECT max(position) AS through, count(*)::int AS scanned FROM batch`

const ADVANCE = 'UPDATE webhook_endpoint SET fanned_out_through = $2 WHERE id = $1'

// What may be sent now: owed, due, not leased (or its lease lapsed: the replica sending it
// died), and the first owed of its resource for its endpoint (per resource, in order).
// SKIP LOCKED and the lease keep replicas from sending the same one at the same time.
const CLAIM = `
  WITH due AS (
    SELECT d.endpoint_id, d.position
    FROM webhook_delivery d
    JOIN webhook_endpoint w ON w.id = d.endpoint_id
    WHERE d.delivered_at IS NULL AND w.enabled AND d.next_attempt_at <= now()
      AND (d.lease_until IS NULL OR d.lease_until <= now())
      AND NOT EXISTS (
        SELECT 1 FROM webhook_delivery p
        WHERE p.endpoint_id = d.endpoint_id AND p.resource_id = d.resource_id
          AND p.delivered_at IS NULL AND p.position < d.position)
    ORDER BY d.next_attempt_at, d.position
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
  ), claimed AS (
    UPDATE webhook_delivery d
    SET lease = $2, lease_until = now() + make_interval(secs => $3), attempts = d.attempts + 1
    FROM due
    WHERE d.endpoint_id = due.endpoint_id AND d.position = due.position
    RETURNING d.endpoint_id, d.position, d.attempts
  )
  SELECT c.endpoint_id, c.position, c.attempts, w.url, w.secret,
         CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret END AS previous_secret,
         (SELECT event_json(e) FROM event e WHERE e.position = c.position) AS event
  FROM claimed c
  JOIN webhook_endpoint w ON w.id = c.endpoint_id`

// The attempt is recorded whatever became of the lease; the delivery only by its holder.
const RECORD = `
  WITH delivery AS (
    UPDATE webhook_delivery
    SET lease = NULL, lease_until = NULL,
        delivered_at = CASE WHEN $4::int BETWEEN 200 AND 299 THEN now() END,
        next_attempt_at = coalesce($8, next_attempt_at)
    WHERE endpoint_id = $1 AND position = $2 AND lease = $3
  ), disabled AS (
    UPDATE webhook_endpoint SET enabled = false, disabled_reason = $9, disabled_at = now(), updated_at = now()
    WHERE id = $1 AND $9::text IS NOT NULL AND enabled
  )
  INSERT INTO webhook_attempt (endpoint_id, position, attempted_at, response_status, error, duration_ms, next_attempt_at)
  SELECT $1, $2, $5, $4, $6, $7, $8
  WHERE EXISTS (SELECT 1 FROM webhook_delivery WHERE endpoint_id = $1 AND position = $2)`

const FORGET = 'DELETE FROM webhook_delivery WHERE endpoint_id = $1 AND position = $2'

// Per endpoint, how long its oldest owed event (first in feed order) has waited: queued or
// not yet queued. 0 when it owes nothing.
const OLDEST_OWED = `
  SELECT w.id AS endpoint_id,
         coalesce(extract(epoch FROM now() - (
           SELECT e.occurred_at FROM event e
           WHERE e.position = least(
             (SELECT min(d.position) FROM webhook_delivery d WHERE d.endpoint_id = w.id AND d.delivered_at IS NULL),
             (SELECT min(e2.position) FROM event e2 WHERE e2.position > w.fanned_out_through)))), 0)::float8 AS seconds
  FROM webhook_endpoint w`

export async function createEndpoint (db: Db, fields: NewEndpoint, secret: string): Promise<WebhookEndpoint> {
  return (await db.query<WebhookEndpoint>(INSERT, [fields.url, fields.types, fields.resource_type, fields.description, secret])).rows[0]!
}

export async function listEndpoints (db: Db, page: Page): Promise<WebhookEndpoint[]> {
  return (await db.query<WebhookEndpoint>(LIST, [page.limit + 1, page.offset])).rows
}

export async function getEndpoint (db: Db, id: string): Promise<WebhookEndpoint | undefined> {
  return (await db.query<WebhookEndpoint>(GET, [id])).rows[0]
}

/**
 * Applies a PATCH under the endpoint's row lock; `disabledBy` is the reason written when
 * it is turned off. Turning it on again resumes what it still owes, at once. Undefined
 * when there is no such endpoint.
 */
export async function updateEndpoint (db: Db, id: string, patch: WebhookPatch, disabledBy: string): Promise<WebhookEndpoint | undefined> {
  return withTransaction(db, async (client) => {
    const { rows: [current] } = await client.query<{ enabled: boolean }>(LOCK, [id])
    if (!current) return undefined
    const { rows: [updated] } = await client.query<WebhookEndpoint>(UPDATE, [id, patch.url ?? null, patch.types !== undefined, patch.types ?? null,
      patch.enabled ?? null, disabledBy, patch.description !== undefined, patch.description ?? null])
    if (patch.enabled === true && !current.enabled) await client.query(RESUME, [id])
    return updated
  })
}

export async function deleteEndpoint (db: Db, id: string): Promise<boolean> {
  return ((await db.query(DELETE, [id])).rowCount ?? 0) > 0
}

/** Gives the endpoint a new secret; the old one signs too for 24 hours. Undefined when there is no such endpoint. */
export async function rotateSecret (db: Db, id: string, secret: string): Promise<WebhookEndpoint | undefined> {
  return (await db.query<WebhookEndpoint>(ROTATE, [id, secret])).rows[0]
}

/** The endpoint's delivery attempts, newest first. */
export async function listAttempts (db: Db, id: string, page: Page): Promise<WebhookAttempt[]> {
  return (await db.query<WebhookAttempt>(ATTEMPTS, [id, page.limit + 1, page.offset])).rows
}

export async function enabledEndpoints (db: Db): Promise<string[]> {
  return (await db.query<{ id: string }>(ENABLED)).rows.map((row) => row.id)
}

/**
 * Queues, for one endpoint, what it wants of the next `batch` events of the feed, and
 * moves its cursor past them. How many events were looked at (0: it is up to date, or
 * another replica is at it, or it is disabled).
 */
export async function queueForEndpoint (db: Db, id: string, batch: number): Promise<number> {
  return withTransaction(db, async (client) => {
    const { rows: [endpoint] } = await client.query<{ cursor: number, types: string[] | null, resource_type: string | null }>(LOCK_CURSOR, [id])
    if (!endpoint) return 0
    const { rows: [queued] } = await client.query<{ through: number | null, scanned: number }>(QUEUE,
      [id, endpoint.cursor, endpoint.types, endpoint.resource_type, batch])
    if (queued!.through !== null) await client.query(ADVANCE, [id, queued!.through])
    return queued!.scanned
  })
}

/** A delivery claimed for one attempt, with what it takes to send it. */
export interface Claimed {
  endpoint_id: string
  position: number
  /** This attempt's number, counted since it was queued or its endpoint re-enabled. */
  attempts: number
  url: string
  secret: string
  previous_secret: string | null
  /** Null when the feed no longer has it (past retention). */
  event: FeedEvent | null
}

/** Leases up to `limit` deliveries for `leaseSeconds` under `lease`. */
export async function claimDeliveries (db: Db, limit: number, lease: string, leaseSeconds: number): Promise<Claimed[]> {
  return (await db.query<Claimed>(CLAIM, [limit, lease, leaseSeconds])).rows
}

/** How an attempt ended, as recorded. */
export interface AttemptOutcome {
  attemptedAt: Date
  status: number | null
  error: string | null
  durationMs: number
  /** When to try again; null when delivered or the endpoint is disabled. */
  nextAttemptAt: Date | null
  /** Set when the endpoint is to be disabled, with why. */
  disable: string | null
}

/** Records an attempt; a 2xx marks the delivery done, anything else schedules the next or disables the endpoint. */
export async function recordAttempt (db: Db, claimed: Pick<Claimed, 'endpoint_id' | 'position'>, lease: string, outcome: AttemptOutcome): Promise<void> {
  await db.query(RECORD, [claimed.endpoint_id, claimed.position, lease, outcome.status, outcome.attemptedAt, outcome.error,
    outcome.durationMs, outcome.nextAttemptAt, outcome.disable])
}

/** Drops a delivery whose event the feed no longer has. */
export async function forgetDelivery (db: Db, claimed: Pick<Claimed, 'endpoint_id' | 'position'>): Promise<void> {
  await db.query(FORGET, [claimed.endpoint_id, claimed.position])
}

/** Per endpoint, the age in seconds of the oldest event it is owed (0: none). */
export async function oldestOwed (db: Db): Promise<Array<{ endpoint_id: string, seconds: number }>> {
  return (await db.query<{ endpoint_id: string, seconds: number }>(OLDEST_OWED)).rows
}
