/**
 * Why the booking insert says ON CONFLICT DO NOTHING: many clients booking the same slot
 * at once. A plain INSERT against the exclusion constraint makes simultaneous inserters
 * wait on each other's index entries; PostgreSQL breaks the cycle only after
 * deadlock_timeout (1 s by default), killing one with 40P01. ON CONFLICT DO NOTHING uses
 * speculative insertion, which backs off at once instead.
 *
 *   npm run bench:conflicts -- [rounds] [clients]
 *
 * Prints, per strategy, the deadlocks PostgreSQL counted and the time per round, and the
 * ratio of the two measured in this one run (absolute times depend on the machine).
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { startEmbeddedPostgres } from '../src/boot/embedded.js'
import { repoRoot } from '../src/config.js'
import { freePort, tempDir } from '../../../scripts/lib/local.mjs'

const rounds = Number(process.argv[2] ?? 10)
const clients = Number(process.argv[3] ?? 20)

const PLAIN = `
  INSERT INTO allocation (resource_id, during)
  VALUES ($1, allocation_range($2, $3))`

const SPECULATIVE = `
  INSERT INTO allocation (resource_id, during)
  VALUES ($1, allocation_range($2, $3))
  ON CONFLICT DO NOTHING`

async function deadlocks (pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()')
  return Number(rows[0].deadlocks)
}

async function round (pool: pg.Pool, sql: string): Promise<{ ms: number, won: number }> {
  const { rows } = await pool.query("INSERT INTO resource (type, name) VALUES ('car', gen_random_uuid()::text) RETURNING id")
  const start = performance.now()
  const results = await Promise.allSettled(Array.from({ length: clients }, () =>
    pool.query(sql, [rows[0].id, '2030-01-01T10:00:00Z', '2030-01-01T12:00:00Z'])))
  const ms = performance.now() - start
  return { ms, won: results.filter((r) => r.status === 'fulfilled' && r.value.rowCount === 1).length }
}

async function measure (pool: pg.Pool, name: string, sql: string): Promise<number> {
  const before = await deadlocks(pool)
  const times: number[] = []
  for (let i = 0; i < rounds; i++) {
    const { ms, won } = await round(pool, sql)
    if (won !== 1) throw new Error(`${name}: ${won} inserts won a round, expected exactly 1`)
    times.push(ms)
  }
  times.sort((a, b) => a - b)
  const median = times[Math.floor(times.length / 2)]!
  console.log(`${name.padEnd(28)} deadlocks ${String(await deadlocks(pool) - before).padStart(3)}   median round ${median.toFixed(1)} ms`)
  return median
}

const dir = await tempDir('invsys-bench-')
const database = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port: await freePort(), database: 'bench', fast: true })
try {
  const pool = new pg.Pool({ connectionString: database.url, max: clients })
  // Losers of a deadlock are terminated by the server; that is measured, not fatal.
  pool.on('error', () => undefined)
  const client = await pool.connect()
  await client.query(await fs.readFile(path.join(repoRoot, 'postgres_scripts', 'create_tables.sql'), 'utf8'))
  client.release()
  console.log(`${rounds} rounds of ${clients} clients inserting the same slot at once (exactly one may win)`)
  const plain = await measure(pool, 'plain INSERT (23P01/40P01)', PLAIN)
  const speculative = await measure(pool, 'ON CONFLICT DO NOTHING', SPECULATIVE)
  console.log(`plain / ON CONFLICT median round time: ${(plain / speculative).toFixed(1)}x`)
  await pool.end()
} finally {
  await database.stop()
  await fs.rm(dir, { recursive: true, force: true })
}
