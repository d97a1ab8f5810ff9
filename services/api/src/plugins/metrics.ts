import type { FastifyInstance, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { oldestOwed } from '../database/webhooks.js'
import { errorCodeOf } from './errors.js'

/** Where Prometheus scrapes; public on the API's own port, never routed by nginx. */
const METRICS_PATH = '/metrics'

/**
 * Prometheus metrics of this process: requests by route and status with their latency,
 * the database pool, error responses by code (booking conflicts among them), the token
 * cache's hits and misses, and Node's own (event loop lag, memory, GC). One registry per
 * app, so tests building several apps in one process never share counters.
 */
export const metrics = fp(async function metrics (app: FastifyInstance) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'invsys_' })
  // The route pattern, not the URL: ids would make every request its own series.
  const labelNames = ['method', 'route', 'status'] as const
  const requests = new Counter({ name: 'invsys_http_requests_total', help: 'HTTP requests answered, by route pattern and status', labelNames, registers: [registry] })
  const latency = new Histogram({
    name: 'invsys_http_request_duration_seconds',
    help: 'Time to answer, by route pattern and status',
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry]
  })
  const errors = new Counter({ name: 'invsys_error_responses_total', help: 'Error responses by code', labelNames: ['code'], registers: [registry] })
  const conflicts = new Counter({
    name: 'invsys_booking_conflicts_total',
    help: 'Bookings refused because the slot was taken (409 ALLOCATION_CONFLICT)',
    registers: [registry]
  })
  const pool = app.pg.pool
  registry.registerMetric(new Gauge({
    name: 'invsys_db_pool_connections',
    help: 'The database pool: connections held (total), idle, requests waiting for one, and the size (max, PG_POOL_MAX)',
    labelNames: ['state'],
    registers: [],
    collect () {
      this.set({ state: 'total' }, pool.totalCount)
      this.set({ state: 'idle' }, pool.idleCount)
      this.set({ state: 'waiting' }, pool.waitingCount)
      this.set({ state: 'max' }, app.config.poolMax)
    }
  }))

  // Read at scrape time from the auth plugin's cache (registered after this one); absent
  // with AUTH_CACHE_SIZE=0, when every token is looked up in the database.
  registry.registerMetric(new Counter({
    name: 'invsys_auth_cache_lookups_total',
    help: 'Tokens checked on /api requests: from the lookups this replica keeps (hit) or in the database (miss)',
    labelNames: ['result'],
    registers: [],
    collect () {
      const lookups = app.tokenCache?.lookups
      if (!lookups) return
      this.reset()
      this.inc({ result: 'hit' }, lookups.hit)
      this.inc({ result: 'miss' }, lookups.miss)
    }
  }))
  registry.registerMetric(new Gauge({
    name: 'invsys_auth_cache_entries',
    help: 'Token lookups this replica keeps (at most AUTH_CACHE_SIZE; none while it is not listening for changes)',
    registers: [],
    collect () {
      if (app.tokenCache) this.set(app.tokenCache.size)
    }
  }))

  // The replica's listening connection (token cache, change feed): a failover shows here as
  // a reconnection, and a listener that cannot get back as connected 0.
  registry.registerMetric(new Gauge({
    name: 'invsys_listener_connected',
    help: 'Whether this replica\'s LISTEN connection (token revocations, the change feed) is up: 1 or 0',
    registers: [],
    collect () {
      this.set(app.notifications.listening ? 1 : 0)
    }
  }))
  registry.registerMetric(new Counter({
    name: 'invsys_listener_reconnects_total',
    help: 'Times this replica\'s LISTEN connection was re-established after it was lost',
    registers: [],
    collect () {
      this.reset()
      this.inc(app.notifications.stats.reconnects)
    }
  }))

  // Webhooks: what this replica's attempts came to, and how far behind each endpoint is
  // (read from the database at scrape time, so every replica shows the same).
  registry.registerMetric(new Counter({
    name: 'invsys_webhook_deliveries_total',
    help: 'Webhook delivery attempts by this replica, by outcome: delivered (2xx), failed (another status), error (no connection), timeout (no answer in 15 s), refused (a forbidden address)',
    labelNames: ['outcome'],
    registers: [],
    collect () {
      this.reset()
      for (const [outcome, count] of Object.entries(app.webhooks.outcomes)) this.inc({ outcome }, count)
    }
  }))
  registry.registerMetric(new Gauge({
    name: 'invsys_webhook_oldest_undelivered_seconds',
    help: 'Per webhook endpoint, how long ago its oldest event not yet delivered happened (0: none)',
    labelNames: ['endpoint'],
    registers: [],
    async collect () {
      this.reset()
      // A database that cannot answer leaves the gauge empty rather than failing the scrape.
      const rows = await oldestOwed(pool).catch(() => [])
      for (const row of rows) this.set({ endpoint: row.endpoint_id }, Math.round(row.seconds * 1000) / 1000)
    }
  }))

  app.addHook('onResponse', async (request, reply: FastifyReply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    if (route === METRICS_PATH) return
    const labels = { method: request.method, route, status: String(reply.statusCode) }
    requests.inc(labels)
    latency.observe(labels, reply.elapsedTime / 1000)
    const code = errorCodeOf(reply)
    if (code) {
      errors.inc({ code })
      if (code === 'ALLOCATION_CONFLICT') conflicts.inc()
    }
  })

  app.get(METRICS_PATH, {
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics of this process (not routed by nginx)',
      response: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } }
    }
  }, async (_request, reply) => {
    return reply.header('Content-Type', registry.contentType).send(await registry.metrics())
  })
}, { name: 'invsys-metrics', dependencies: ['invsys-config', 'invsys-errors', 'invsys-database', 'invsys-notifications', 'invsys-webhooks'] })
