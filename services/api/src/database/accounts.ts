import { prepared, type Db, type Page } from './db.js'
import type { Account, Actor, ApiToken, Role } from '../schemas/accounts.js'
import { DomainError } from './outcomes.js'

const ACCOUNT_COLUMNS = 'id, name, role, created_at'

// Never token_hash: it leaves the database only for authentication.
const TOKEN_COLUMNS = 'id, account_id, prefix, label, created_at, last_used_at, revoked_at'

const INSERT_ACCOUNT = `
  INSERT INTO account (name, role)
  VALUES ($1, $2)
  RETURNING ${ACCOUNT_COLUMNS}`

const LIST_ACCOUNTS = `
  SELECT ${ACCOUNT_COLUMNS} FROM account
  ORDER BY id
  LIMIT $1 OFFSET $2`

const GET_ACCOUNT = `SELECT ${ACCOUNT_COLUMNS} FROM account WHERE id = $1`

const FIND_ACCOUNT_BY_NAME = `SELECT ${ACCOUNT_COLUMNS} FROM account WHERE lower(name) = lower($1)`

// Selecting from account turns a missing account into "no row" rather than a foreign key error.
const INSERT_TOKEN = `
  INSERT INTO api_token (account_id, token_hash, prefix, label)
  SELECT id, $2, $3, $4 FROM account WHERE id = $1
  RETURNING ${TOKEN_COLUMNS}`

const LIST_TOKENS = `
  SELECT ${TOKEN_COLUMNS} FROM api_token
  WHERE account_id = $1
  ORDER BY created_at, id
  LIMIT $2 OFFSET $3`

const GET_TOKEN = `SELECT ${TOKEN_COLUMNS} FROM api_token WHERE id = $1`

// $2: the only account whose tokens the caller may revoke, or null for any. Revoking a
// revoked token changes nothing (the first revoked_at stays) and still reports it found.
const REVOKE_TOKEN = `
  WITH target AS (
    SELECT id, ($2::bigint IS NULL OR account_id = $2) AS permitted
    FROM api_token WHERE id = $1
  ), revoked AS (
    UPDATE api_token SET revoked_at = now()
    WHERE id = (SELECT id FROM target WHERE permitted) AND revoked_at IS NULL
  )
  SELECT permitted FROM target`

// One round trip: the lookup, and the last_used_at stamp at most once a minute per token,
// so a busy token costs one row write a minute rather than one per request (and an idle
// check writes nothing). Done in the same statement rather than fire-and-forget, so no
// write outlives its request (shutdown drains cleanly) and none fails unseen. Revoked
// tokens are reported, not stamped. The API keeps what this finds for a minute (see
// plugins/token-cache.ts), so a busy token comes here about once a minute.
export const AUTHENTICATE = `
  WITH found AS (
    SELECT t.id AS token_id, t.token_hash, t.revoked_at IS NOT NULL AS revoked,
           a.id, a.name, a.role, a.created_at
    FROM api_token t
    JOIN account a ON a.id = t.account_id
    WHERE t.token_hash = $1
  ), touched AS (
    UPDATE api_token SET last_used_at = now()
    WHERE id = (SELECT token_id FROM found WHERE NOT revoked)
      AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
  )
  SELECT token_id, token_hash, revoked, id, name, role, created_at FROM found`

// The first account, only while there is none. Two replicas booting together both see
// an empty table; the unique name makes the second one's insert do nothing.
const INSERT_FIRST_ADMIN = `
  WITH admin AS (
    INSERT INTO account (name, role)
    SELECT 'admin', 'admin' WHERE NOT EXISTS (SELECT 1 FROM account)
    ON CONFLICT DO NOTHING
    RETURNING id
  )
  INSERT INTO api_token (account_id, token_hash, prefix, label)
  SELECT id, $1, $2, 'bootstrap' FROM admin
  RETURNING id`

/** A token's secret parts as stored: the hash and the display prefix, never the token. */
export interface StoredToken { hash: Buffer, prefix: string, label: string | null }

export async function createAccount (db: Db, name: string, role: Role): Promise<Account> {
  return (await db.query<Account>(INSERT_ACCOUNT, [name, role])).rows[0]!
}

export async function listAccounts (db: Db, page: Page): Promise<Account[]> {
  return (await db.query<Account>(LIST_ACCOUNTS, [page.limit + 1, page.offset])).rows
}

export async function getAccount (db: Db, id: number): Promise<Account | undefined> {
  return (await db.query<Account>(GET_ACCOUNT, [id])).rows[0]
}

export async function findAccountByName (db: Db, name: string): Promise<Account | undefined> {
  return (await db.query<Account>(FIND_ACCOUNT_BY_NAME, [name])).rows[0]
}

/** Undefined when there is no such account. */
export async function createToken (db: Db, accountId: number, token: StoredToken): Promise<ApiToken | undefined> {
  return (await db.query<ApiToken>(INSERT_TOKEN, [accountId, token.hash, token.prefix, token.label])).rows[0]
}

export async function listTokens (db: Db, accountId: number, page: Page): Promise<ApiToken[]> {
  return (await db.query<ApiToken>(LIST_TOKENS, [accountId, page.limit + 1, page.offset])).rows
}

export async function getToken (db: Db, id: string): Promise<ApiToken | undefined> {
  return (await db.query<ApiToken>(GET_TOKEN, [id])).rows[0]
}

/**
 * Revokes a token for good; false when there is no such token. `actor` undefined is an
 * operator at the shell; a member may revoke only its own tokens (NOT_OWNER), an admin any.
 */
export async function revokeToken (db: Db, id: string, actor?: Actor): Promise<boolean> {
  const onlyAccount = actor && actor.role !== 'admin' ? actor.id : null
  const row = (await db.query<{ permitted: boolean }>(REVOKE_TOKEN, [id, onlyAccount])).rows[0]
  if (row && !row.permitted) throw new DomainError('NOT_OWNER', 'only an admin or the token\'s own account may revoke it')
  return row !== undefined
}

/** What a presented token's hash leads to; `revoked` ones authenticate nothing. */
export interface Authenticated { account: Account, tokenId: string, tokenHash: Buffer, revoked: boolean }

export async function authenticate (db: Db, tokenHash: Buffer): Promise<Authenticated | undefined> {
  const row = (await db.query<Account & { token_id: string, token_hash: Buffer, revoked: boolean }>(prepared('authenticate', AUTHENTICATE, [tokenHash]))).rows[0]
  if (!row) return undefined
  const { token_id: tokenId, token_hash: storedHash, revoked, ...account } = row
  return { account, tokenId, tokenHash: storedHash, revoked }
}

/** Creates the `admin` account with this token when no account exists; false when one did. */
export async function createFirstAdmin (db: Db, token: Omit<StoredToken, 'label'>): Promise<boolean> {
  return ((await db.query(INSERT_FIRST_ADMIN, [token.hash, token.prefix])).rowCount ?? 0) > 0
}

/**
 * The channel notify_credentials_changed() speaks on: 'token <id>' or 'account <id>' for
 * a token or account that changed (revoked, deleted, its role...; not a last_used_at
 * stamp alone), '*' after a TRUNCATE.
 */
export const CREDENTIALS_CHANNEL = 'invsys_credentials'

export type CredentialsChange = { token: string } | { account: number } | 'all'

/** What a notification on CREDENTIALS_CHANNEL says changed; anything unexpected reads as everything. */
export function credentialsChange (payload: string | undefined): CredentialsChange {
  const [kind, id] = (payload ?? '').split(' ')
  if (kind === 'token' && id) return { token: id }
  if (kind === 'account' && /^\d+$/.test(id ?? '')) return { account: Number(id) }
  return 'all'
}
