import type { Db } from './db.js'

/** One Idempotency-Key as a request holds it: whose key, where it was used, and whose claim it is. */
export interface KeyClaim { account: number, key: string, method: string, path: string, claim: string }

export interface StoredKey {
  request_hash: string
  status_code: number | null
  location: string | null
  body: string | null
}

// Inserting the claim is what serialises two requests with one key: the unique key makes
// the second wait for the first's insert and then find its row. An expired row, or an
// abandoned claim, is taken over in the same statement. A claim is abandoned when its
// request never stored a response (its process died) within 5 minutes, far beyond what
// one request can take: every statement is cut off after 30 s, and a request runs a few.
const CLAIM = `
  INSERT INTO idempotency_key (account_id, key, method, path, request_hash, claim)
  VALUES ($6, $1, $2, $3, $4, $5)
  ON CONFLICT (account_id, key, method, path) DO UPDATE SET
    request_hash = EXCLUDED.request_hash, claim = EXCLUDED.claim,
    status_code = NULL, location = NULL, body = NULL,
    created_at = now(), expires_at = now() + interval '24 hours'
  WHERE idempotency_key.expires_at <= now()
     OR (idempotency_key.status_code IS NULL AND idempotency_key.created_at <= now() - interval '5 minutes')
  RETURNING claim`

const FIND = `
  SELECT request_hash, status_code, location, body FROM idempotency_key
  WHERE account_id = $4 AND key = $1 AND method = $2 AND path = $3 AND expires_at > now()`

const COMPLETE = `
  UPDATE idempotency_key SET status_code = $6, location = $7, body = $8
  WHERE key = $1 AND method = $2 AND path = $3 AND claim = $4 AND account_id = $5`

const RELEASE = 'DELETE FROM idempotency_key WHERE key = $1 AND method = $2 AND path = $3 AND claim = $4 AND account_id = $5'

// A few at a time and skipping rows others hold, so purging never makes a request wait.
const PURGE = `
  DELETE FROM idempotency_key
  WHERE (account_id, key, method, path) IN (
    SELECT account_id, key, method, path FROM idempotency_key
    WHERE expires_at <= now()
    ORDER BY expires_at
    LIMIT 100
    FOR UPDATE SKIP LOCKED)`

function values (claim: KeyClaim) {
  return [claim.key, claim.method, claim.path, claim.claim, claim.account]
}

/** True when this request now holds the key (it was new, expired or abandoned). */
export async function claimKey (db: Db, claim: KeyClaim, requestHash: string): Promise<boolean> {
  return (await db.query(CLAIM, [claim.key, claim.method, claim.path, requestHash, claim.claim, claim.account])).rows.length > 0
}

/** The live row for a key, finished or still running; undefined once it has expired. */
export async function findKey (db: Db, key: Omit<KeyClaim, 'claim'>): Promise<StoredKey | undefined> {
  return (await db.query<StoredKey>(FIND, [key.key, key.method, key.path, key.account])).rows[0]
}

/** Stores the response for replays; a claim taken over meanwhile is left alone. */
export async function completeKey (db: Db, claim: KeyClaim, statusCode: number, location: string | null, body: string): Promise<void> {
  await db.query(COMPLETE, [...values(claim), statusCode, location, body])
}

/** Lets the key go, so that a retry runs the request again. */
export async function releaseKey (db: Db, claim: KeyClaim): Promise<void> {
  await db.query(RELEASE, values(claim))
}

export async function purgeExpiredKeys (db: Db): Promise<void> {
  await db.query(PURGE)
}
