import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fastifyPostgres from '@fastify/postgres'
import fp from 'fastify-plugin'
import pg from 'pg'
import { poolOptions, survivePoolErrors, type Db } from '../database/db.js'
import { replicationLagMs } from '../database/health.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The pool a search that need not see the caller's own latest write reads from: the
     * replicas (DATABASE_READ_URL) while their lag is known to be within
     * DATABASE_READ_MAX_LAG_MS, else the primary. Always the primary without DATABASE_READ_URL.
     */
    readDb: () => Db
  }
}

/** How often the replicas' lag is measured while reads want them. */
const PROBE_EVERY_MS = 200
/** A probe slower than this counts as a replica not answering. */
const PROBE_TIMEOUT_MS = 1000

/**
 * Chooses between the replicas and the primary for each search, without making it wait:
 * the choice is made from the last lag measured, aged by the time since (a replica that
 * stopped replaying falls behind by exactly that), and a new measurement is started in the
 * background when the last one is older than PROBE_EVERY_MS. So a replica is used only
 * while lag + age <= maxLagMs; a replica that does not answer, or whose connection fails,
 * is not used until a measurement succeeds again, and searches read the primary meanwhile.
 * A read port that spreads connections over several replicas is measured through one
 * connection at a time: HAProxy's own check (Patroni's /replica?lag=) keeps a replica far
 * behind out of it.
 */
class ReadRouting {
  private measured: { lagMs: number, at: number } | undefined
  private probing = false
  private lastProbeAt = 0

  constructor (private readonly primary: pg.Pool, private readonly replicas: pg.Pool, private readonly maxLagMs: number,
    private readonly log: FastifyBaseLogger) {}

  pick (): Db {
    const now = Date.now()
    if (!this.probing && now - this.lastProbeAt >= PROBE_EVERY_MS) void this.probe()
    const measured = this.measured
    return measured && measured.lagMs + (now - measured.at) <= this.maxLagMs ? this.replicas : this.primary
  }

  /** A replica connection failed: read the primary until a measurement succeeds again. */
  lost (): void {
    this.measured = undefined
  }

  private async probe (): Promise<void> {
    this.probing = true
    const started = this.lastProbeAt = Date.now()
    try {
      const lagMs = await replicationLagMs(this.replicas, PROBE_TIMEOUT_MS)
      if (this.measured === undefined) this.log.info({ lagMs }, 'read replicas answer: searches read them while within DATABASE_READ_MAX_LAG_MS')
      this.measured = { lagMs, at: started }
    } catch (error) {
      if (this.measured !== undefined) this.log.warn({ err: error }, 'read replicas do not answer: searches read the primary')
      this.measured = undefined
    } finally {
      this.probing = false
    }
  }
}

/**
 * Decorates the app with `pg` (the primary's pool) and `readDb`, closed when the app
 * closes. Every connection is made through DATABASE_URL (and DATABASE_READ_URL), which in
 * a highly available deployment is HAProxy: after a failover, new connections reach the
 * new primary, and the pool replaces those the failover broke by itself.
 */
export const database = fp(async function database (app: FastifyInstance) {
  const { databaseUrl, databaseReadUrl, databaseReadMaxLagMs, poolMax, poolWaitMs } = app.config
  if (!databaseUrl) throw new Error('databaseUrl must be resolved before the app is built')
  await app.register(fastifyPostgres, poolOptions(databaseUrl, poolMax, poolWaitMs))
  // A lost connection must never crash the process: the request using it answers 503,
  // and the next query connects afresh.
  survivePoolErrors(app.pg.pool, (error, idle) => {
    app.log.warn({ code: (error as { code?: string }).code, message: error.message, idle }, 'database connection lost')
  })
  if (!databaseReadUrl) {
    app.decorate('readDb', () => app.pg.pool)
    return
  }
  const replicas = new pg.Pool({ ...poolOptions(databaseReadUrl, poolMax, poolWaitMs), application_name: 'invsys-api-read' })
  const routing = new ReadRouting(app.pg.pool, replicas, databaseReadMaxLagMs, app.log)
  survivePoolErrors(replicas, (error, idle) => {
    routing.lost()
    app.log.warn({ code: (error as { code?: string }).code, message: error.message, idle }, 'read replica connection lost')
  })
  app.decorate('readDb', () => routing.pick())
  app.addHook('onClose', async () => { await replicas.end() })
}, { name: 'invsys-database', dependencies: ['invsys-config'] })
