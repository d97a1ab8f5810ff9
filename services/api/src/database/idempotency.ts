import type { Db } from './db.js'

/** One Idempotency-Key as a request holds it: whose key, where it was used, and whose claim it is. */
export interface KeyClaim { account: number, key: string, method: string, path: string, claim: string }

export interface StoredKey {
  request_hash: string
  status_code: number | null
  location: string | null
  body: string | null
}

// Inserting the claim is what serialises two requests with one key: the claim is made
// inside the transaction that then runs the request and stores its response, so a second
// request with the key waits on the first one's uncommitted row (up to the lock_timeout
// its caller sets) and then finds its stored response, or, when the first rolled back or
// its session died (a failover), claims the key itself at once. An expired row is taken
// over in the same statement. So is an abandoned claim: a row without a response committed
// by a version that claimed in a statement of its own, left behind when its process died.
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

// A refusal's response, stored after its transaction rolled back; a request that claimed
// the key meanwhile keeps it.
const STORE = `
  INSERT INTO idempotency_key (account_id, key, method, path, request_hash, claim, status_code, location, body)
  VALUES ($5, $1, $2, $3, $6, $4, $7, $8, $9)
  ON CONFLICT (account_id, key, method, path) DO UPDATE SET
    request_hash = EXCLUDED.request_hash, claim = EXCLUDED.claim, status_code = EXCLUDED.status_code,
    location = EXCLUDED.location, body = EXCLUDED.body, created_at = now(), expires_at = now() + interval '24 hours'
  WHERE idempotency_key.expires_at <= now()`

const FIND = `
  SELECT request_hash, status_code, location, body FROM idempotency_key
  WHERE account_id = $4 AND key = $1 AND method = $2 AND path = $3 AND expires_at > now()`

const COMPLETE = `
  UPDATE idempotency_key SET status_code = $6, location = $7, body = $8
  WHERE key = $1 AND method = $2 AND path = $3 AND claim = $4 AND account_id = $5`

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

/** Stores the response for replays, in the transaction that holds the claim. */
export async function completeKey (db: Db, claim: KeyClaim, statusCode: number, location: string | null, body: string): Promise<void> {
  await db.query(COMPLETE, [...values(claim), statusCode, location, body])
}

/** Stores a response for a key nobody holds (a refusal, once its transaction rolled back). */
export async function storeKey (db: Db, claim: KeyClaim, requestHash: string, statusCode: number, location: string | null, body: string): Promise<void> {
  await db.query(STORE, [...values(claim), requestHash, statusCode, location, body])
}

export async function purgeExpiredKeys (db: Db): Promise<void> {
  await db.query(PURGE)
}
