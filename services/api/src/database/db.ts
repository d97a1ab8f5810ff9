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

// PostgreSQL's ISO output in UTC: 2030-06-01 09:00:00.123456+00, with five-digit years
// and a " BC" suffix for times the API refuses but psql can store.
const PG_TIMESTAMPTZ = /^(\d{4,})-(\d\d)-(\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)\+00( BC)?$/

/**
 * Times leave the database as text in UTC (the session time zone), turned into RFC 3339
 * with `Z` without passing through a JS Date, so microseconds a client sent come back intact.
 * A year RFC 3339 cannot write (before 1, after 9999: only psql can store one) is written
 * as ISO 8601 writes it and JavaScript's toISOString does (-000001, +010000; 1 BC is
 * 0000), and infinity as PostgreSQL spells it, so that such a row reads instead of failing.
 */
function parseTimestamptz (value: string): string {
  const match = PG_TIMESTAMPTZ.exec(value)
  if (!match) return value
  const [, year, month, day, time, bc] = match as unknown as [string, string, string, string, string, string | undefined]
  if (bc === undefined && year.length === 4) return `${year}-${month}-${day}T${time}Z`
  const astronomical = bc === undefined ? Number(year) : 1 - Number(year)
  const written = astronomical >= 0 && astronomical <= 9999
    ? String(astronomical).padStart(4, '0')
    : `${astronomical < 0 ? '-' : '+'}${String(Math.abs(astronomical)).padStart(6, '0')}`
  return `${written}-${month}-${day}T${time}Z`
}

/**
 * bigint as a number: every id the API issues or accepts is at most 2^53 - 1, where
 * numbers are exact (the database holds its ids to that). A larger value only psql can
 * write (an actor id set by hand); it reads rounded rather than fail the reply.
 */
function parseInt8 (value: string): number {
  return Number(value)
}

/** Type parsers for this pool only: the global pg.types stay untouched. */
const types = {
  getTypeParser (oid: number, format?: 'text' | 'binary') {
    if (oid === TIMESTAMPTZ_OID) return parseTimestamptz
    if (oid === INT8_OID) return parseInt8
    return pg.types.getTypeParser(oid, format)
  }
}

/** PostgreSQL cuts every statement off after this long (statement_timeout, set per connection). */
const STATEMENT_TIMEOUT_MS = 30_000

/**
 * Pool settings every connection of the service shares, so replies never depend on the
 * server's defaults. `waitMs` bounds how long a query waits for a connection (all in use,
 * or a new one not answering): then it fails, and the request is answered 503, never left hanging.
 *
 * A connection through HAProxy can also hang on a server that froze (SIGSTOP, a stalled
 * disk, a network partition) with its socket still open: PostgreSQL's statement_timeout
 * cannot fire there, and it never bounds a commit's wait for the synchronous standby
 * either. `query_timeout` is node-postgres's own clock on every query, a little longer than
 * statement_timeout so that PostgreSQL's own (clean) cancel always comes first when the
 * server is alive; the client then fails the query and the pool drops the connection.
 * TCP keepalive finds a peer that vanished without closing the socket (a dead machine).
 */
export function poolOptions (connectionString: string, max: number, waitMs = 5000): pg.PoolConfig {
  return {
    connectionString,
    max,
    types,
    Client: Connection,
    application_name: 'invsys-api',
    // Ask for UTC and ISO output per connection: parseTimestamptz relies on both.
    options: `-c TimeZone=UTC -c DateStyle=ISO,YMD -c statement_timeout=${STATEMENT_TIMEOUT_MS}`,
    connectionTimeoutMillis: waitMs,
    query_timeout: STATEMENT_TIMEOUT_MS + 5000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    idleTimeoutMillis: 30000
  }
}

// Errors after which nothing the request asked for can have been committed. A failed
// query is ambiguous when its connection died (the statement may have committed before
// the answer was lost), unless it never left: the connection failed while being made,
// or the statement ran inside a transaction that was never committed.
const notCommitted = new WeakSet<object>()

/** Marks `error` as one after which nothing can have been committed; returns it, to be thrown. */
export function nothingCommitted<E> (error: E): E {
  if (typeof error === 'object' && error !== null) notCommitted.add(error)
  return error
}

/** True when `error` was marked by nothingCommitted: whatever it interrupted was surely not committed. */
export function surelyNotCommitted (error: unknown): boolean {
  return typeof error === 'object' && error !== null && notCommitted.has(error)
}

/**
 * The pool's connection class: a connection that fails while it is being made (HAProxy
 * with no primary to forward to closes it at once, a server still starting refuses it)
 * has sent no statement, and its error says so. Through HAProxy such a failure reads
 * "Connection terminated unexpectedly", exactly as a connection lost mid-statement does.
 */
class Connection extends pg.Client {
  override connect (): Promise<pg.Client>
  override connect (callback: ConnectCallback): void
  override connect (callback?: ConnectCallback): Promise<pg.Client> | void {
    if (callback === undefined) return super.connect().catch((error: unknown) => { throw nothingCommitted(error) })
    const done = callback as (err: Error | null, client?: pg.Client) => void
    super.connect((error: Error | null) => (error ? done(nothingCommitted(error)) : done(null, this)))
  }
}

type ConnectCallback = ((err: Error) => void) | ((err: null, c: pg.Client) => void)

/**
 * A connection can fail at any moment (PostgreSQL stopped or restarted, a backend
 * terminated), and pg reports it as an 'error' event on the client as well as by failing
 * its query. An 'error' event nobody listens to kills the process; the pool listens only
 * while a client is idle, not while it is checked out (a transaction), so every client
 * gets a listener of its own for its whole life. The failed query is what the request
 * answers (503); the pool drops the broken client and connects afresh when asked next.
 */
export function survivePoolErrors (pool: pg.Pool, onError: (error: Error, idle: boolean) => void): void {
  pool.on('connect', (client) => { client.on('error', (error) => onError(error, false)) })
  pool.on('error', (error) => onError(error, true))
}

/**
 * A named statement: each pooled connection parses it once, then only binds and runs it.
 * For hot statements whose plan does not depend on which optional filters are given (a
 * lookup by key, the booking); a query whose best plan does stays unnamed, so that it is
 * planned for the values at hand every time.
 */
export function prepared (name: string, text: string, values: unknown[]): pg.QueryConfig {
  return { name, text, values }
}

/** How many resources a walk may pass per row of its page before the whole search is the cheaper way. */
const WALK_PER_ROW = 4

/** How many resources a walk judges first, to tell whether walking is worth it at all. */
const WALK_SAMPLE = 16

/**
 * A walk's LIMIT (a one-row query, its column n): its budget, unless the first WALK_SAMPLE
 * resources of `fleet` (the resources the walk passes, in its order, as `r`) are less than
 * one in WALK_PER_ROW free by `free` (a condition on `r`, as the walk judges them) and
 * there are more resources than the budget (those that `where`, a condition on resource
 * `r`, keeps). Then the walk would likely pass its whole budget without filling the page
 * (a fleet mostly busy, as at a synchronised fleet's busy hour), so it stops after the
 * sample and the whole search follows at once (walked_all is false). A fleet within the
 * budget is walked whole, a complete answer in one statement; a budget no larger than the
 * sample is walked without one.
 */
export const walkLimit = (fleet: string, free: string, where: string, budget: string) => `
    SELECT CASE WHEN s.seen < ${WALK_SAMPLE} OR ${WALK_PER_ROW} * s.free >= s.seen OR ${fleetSize(where, budget)} < ${budget}
                THEN ${budget}::int ELSE s.seen::int END AS n
    FROM (SELECT count(*) AS seen, count(*) FILTER (WHERE r.free) AS free
          FROM (SELECT ${free} AS free FROM (${fleet}
                  LIMIT CASE WHEN ${budget}::int <= ${WALK_SAMPLE} THEN 0 ELSE ${WALK_SAMPLE} END) AS r) AS r) AS s`

/**
 * A walk's row: walked_all is whether the walk reached every resource it could look at
 * (there are fewer than its budget), so that what it found is all there is.
 */
export interface Walked { walked_all: boolean }

/**
 * walked_all for a walk over the resources that `where` (a condition on resource `r`)
 * keeps, with `budget` the walk's limit: counted from the resource indexes alone, and no
 * further than the budget.
 */
export const walkedAll = (where: string, budget: string) => `${fleetSize(where, budget)} < ${budget} AS walked_all`

/** How many resources `where` (a condition on resource `r`) keeps, counted from the resource indexes alone and no further than `limit`. */
const fleetSize = (where: string, limit: string) => `(SELECT count(*) FROM (SELECT FROM resource r WHERE ${where} LIMIT ${limit}) AS fleet)`

/** What a walk found, without its walked_all, and whether that is all there is (none when it found nothing: not known). */
export interface Walk<T> { rows: T[], all: boolean }

/** Runs a walk with its budget for `wanted` rows: a few resources per row. */
export async function walkFor<T> (wanted: number, walk: (budget: number) => Promise<Array<T & Walked>>): Promise<Walk<T>> {
  const walked = await walk(WALK_PER_ROW * wanted)
  return { rows: walked.map(({ walked_all: _, ...row }) => row as T), all: walked[0]?.walked_all === true }
}

/**
 * A page of resources found by walking them in page order: a short walk first (a few
 * resources per row of the page), which is the page when it fills the page and the row
 * after it, or when it reached every resource (a fleet smaller than the walk's budget);
 * otherwise `whole`, the search that is always complete.
 */
export async function walkedPage<T> (page: Page, walk: (budget: number) => Promise<Array<T & Walked>>, whole: () => Promise<T[]>): Promise<T[]> {
  const walked = await walkFor(page.offset + page.limit + 1, walk)
  return walked.rows.length === page.limit + 1 || walked.all ? walked.rows : whole()
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
    // A client whose ROLLBACK fails has lost its connection, and one that found a server
    // that cannot take writes (a standby, one shutting down) is of no further use: each
    // goes, not back to the pool, which connects afresh (through HAProxy, to the primary).
    let broken: Error | undefined
    let result: T
    try {
      await client.query('BEGIN')
      if (options.actor !== undefined) await client.query(SET_ACTOR, [String(options.actor)])
      result = await work(client)
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => { broken = rollbackError })
      const code = (error as { code?: string }).code
      if (code !== undefined && /^(25|57|08)/.test(code)) broken ??= error as Error
      client.release(broken)
      if (attempt < 3 && code !== undefined && RETRYABLE.has(code)) continue
      // Before COMMIT: the transaction is rolled back (or dies with its connection).
      throw nothingCommitted(error)
    }
    try {
      // The one ambiguous moment: a COMMIT whose answer is lost may have committed.
      await client.query('COMMIT')
      client.release()
      return result
    } catch (error) {
      client.release(error as Error)
      throw error
    }
  }
}
