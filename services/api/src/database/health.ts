import type pg from 'pg'
import type { Db } from './db.js'

// A standby answers reads but refuses writes: /ready must not call a demoted primary ready.
const PRIMARY = 'SELECT NOT pg_is_in_recovery() AS primary'

/** True when the server answers and takes writes (not a standby). */
export async function isPrimary (db: Db): Promise<boolean> {
  return (await db.query<{ primary: boolean }>(PRIMARY)).rows[0]!.primary
}

// How far behind the primary a standby's data is, in ms. A primary is never behind (the
// read port may fall back to it). A standby that replayed all it received from a live WAL
// receiver is behind by nothing (an idle primary sends no new commits, so the time since
// the last replayed one says nothing then); otherwise by the age of the last transaction
// it replayed, which overstates the lag after a quiet spell, never understates it (clocks
// that disagree could make it negative: none is counted). With no
// WAL receiver it is cut off, and how far behind is unknown: infinitely far, to the caller.
const LAG = `
  SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 'Infinity'
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE coalesce(greatest(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000, 0), 'Infinity')
  END::float8 AS lag_ms`

/** The replication lag of the server `db` reaches, in ms (0 on a primary); `timeoutMs` bounds the wait. */
export async function replicationLagMs (db: Db, timeoutMs: number): Promise<number> {
  // query_timeout per query is node-postgres's (its typings leave it out of QueryConfig).
  const query: pg.QueryConfig & { query_timeout: number } = { text: LAG, query_timeout: timeoutMs }
  return (await db.query<{ lag_ms: number }>(query)).rows[0]!.lag_ms
}
