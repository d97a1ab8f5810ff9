import pg from 'pg'

/**
 * Anything that can run a query: the pool, or a client. A function given a client runs
 * on it as it is, so it joins whatever transaction the caller has open there.
 */
export type Db = pg.Pool | pg.ClientBase

/** A page of a collection: the caller asks for `limit`, the query fetches one more to know whether a next page exists. */
export interface Page { limit: number, offset: number }

const TIMESTAMPTZ_OID = 1184
const INT8_OID = 20

/**
 * Times leave the database as text in UTC (the session time zone), turned into RFC 3339
 * with `Z` without passing through a JS Date, so microseconds a client sent come back intact.
 */
function parseTimestamptz (value: string): string {
  return value.replace(' ', 'T').replace(/\+00$/, 'Z')
}

/** Type parsers for this pool only: the global pg.types stay untouched. */
const types = {
  getTypeParser (oid: number, format?: 'text' | 'binary') {
    if (oid === TIMESTAMPTZ_OID) return parseTimestamptz
    // Identity ids stay far below 2^53; the API validates ids to that bound too.
    if (oid === INT8_OID) return (value: string) => Number(value)
    return pg.types.getTypeParser(oid, format)
  }
}

/** Pool settings every connection of the service shares, so replies never depend on the server's defaults. */
export function poolOptions (connectionString: string, max: number): pg.PoolConfig {
  return {
    connectionString,
    max,
    types,
    application_name: 'invsys-api',
    // Ask for UTC and ISO output per connection: parseTimestamptz relies on both.
    options: '-c TimeZone=UTC -c DateStyle=ISO,YMD -c statement_timeout=30000',
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000
  }
}

const RETRYABLE = new Set(['40P01', '40001'])

// The account acting in this transaction, for triggers to read with
// current_setting('invsys.actor', true). Transaction-local (the third argument), so
// it can never leak to the next user of the pooled connection. This is the hook
// point for the allocation history trigger: it records this value as the actor, and
// a change made in psql without it is recorded with no actor.
const SET_ACTOR = 'SELECT set_config(\'invsys.actor\', $1, true)'

export interface TransactionOptions {
  /** The id of the account making the change; set as invsys.actor first thing. */
  actor?: number
}

/** A client (the caller's transaction, if any), as opposed to the pool. */
export function isClient (db: Db): db is pg.ClientBase {
  return !(db instanceof pg.Pool)
}

/**
 * Runs `work` in one transaction. Given the pool, on its own client: committed on
 * success, rolled back on any error, the client always released, and a deadlock or
 * serialisation failure retried a few times as a whole. Given a client, `work` runs on
 * it directly, inside the transaction its owner opened (the outermost caller commits),
 * so transactional functions compose.
 */
export async function withTransaction<T> (db: Db, work: (client: pg.ClientBase) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  if (isClient(db)) {
    if (options.actor !== undefined) await db.query(SET_ACTOR, [String(options.actor)])
    return work(db)
  }
  for (let attempt = 1; ; attempt++) {
    const client = await db.connect()
    try {
      await client.query('BEGIN')
      if (options.actor !== undefined) await client.query(SET_ACTOR, [String(options.actor)])
      const result = await work(client)
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined)
      const code = (error as { code?: string }).code
      if (attempt < 3 && code !== undefined && RETRYABLE.has(code)) continue
      throw error
    } finally {
      client.release()
    }
  }
}
