import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type pg from 'pg'
import {
  claimDeliveries, enabledEndpoints, forgetDelivery, queueForEndpoint, recordAttempt, type AttemptOutcome, type Claimed
} from '../database/webhooks.js'
import { AddressPolicy, postJson, resolveTarget, signature, systemResolver, TargetRefused, type Resolver } from '../outbound.js'
import { QuietWarnings } from '../logging.js'
import type { ChangeFeed } from './events.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Webhook delivery in this replica, and the address check URLs go through. */
    webhooks: WebhookWorker
  }
}

/** How a delivery attempt ended, for GET /metrics. */
type DeliveryOutcome = 'delivered' | 'failed' | 'error' | 'timeout' | 'refused'

/** The Standard Webhooks timeout: an endpoint that has not answered by then has failed this attempt. */
const TIMEOUT_MS = 15_000
/** The lease outlasts the timeout, with room to record the outcome: nobody else sends it meanwhile. */
const LEASE_SECONDS = 20
/** Deliveries in flight from one replica, across endpoints and resources. */
const IN_FLIGHT = 8
/** Events looked at per endpoint and statement when queueing. */
const QUEUE_BATCH = 500
/** Due retries and lapsed leases are looked for this often; new events are acted on at once. */
const TICK_MS = 1000
/** How long a closing app waits for deliveries in flight before it lets them go (their leases lapse). */
const DRAIN_MS = 5000
/** Retry-After is honoured up to a day. */
const MAX_RETRY_AFTER_S = 86_400
const DELIVERY_FAILED = 'webhook delivery: a step failed; trying again shortly'

interface WebhookWorkerOptions {
  pool: pg.Pool
  feed: ChangeFeed
  log: FastifyBaseLogger
  /** Seconds to wait before each attempt (WEBHOOK_RETRY_SCHEDULE). */
  schedule: number[]
  policy: AddressPolicy
  resolve: Resolver
}

/** Seconds from a Retry-After header (seconds or an HTTP date), or undefined. */
function retryAfterSeconds (header: string | undefined, now: number): number | undefined {
  if (header === undefined) return undefined
  const seconds = /^\s*\d+\s*$/.test(header) ? Number(header) : (Date.parse(header) - now) / 1000
  return Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0), MAX_RETRY_AFTER_S) : undefined
}

/**
 * Delivers the change feed to the registered endpoints (docs/events.md), in every replica:
 * queues each event an endpoint wants (in feed order, from its cursor), then sends what is
 * due, a few at a time, one event per endpoint and resource at a time, so that a
 * resource's events arrive in order. At least once: a delivery counts only after a 2xx; a
 * replica that dies mid-delivery leaves its lease to lapse, and the event is sent again
 * with the same webhook-id.
 */
class WebhookWorker {
  /** Attempts by outcome, since this replica started (GET /metrics). */
  readonly outcomes: Record<DeliveryOutcome, number> = { delivered: 0, failed: 0, error: 0, timeout: 0, refused: 0 }
  private readonly inFlight = new Map<string, AbortController>()
  private readonly lease = randomUUID()
  private timer: NodeJS.Timeout | undefined
  private kickTimer: NodeJS.Timeout | undefined
  private running = false
  private again = false
  private endpoints: string[] = []
  private endpointsCheckedAt = 0
  private queueWanted = true
  private closing = false
  private readonly warnings: QuietWarnings

  constructor (private readonly options: WebhookWorkerOptions) {
    this.warnings = new QuietWarnings(options.log)
    // The feed grew (or may have): queue, then send.
    options.feed.onNumbered(() => { this.queueWanted = true; this.kick() })
  }

  start (): void {
    this.timer = setInterval(() => { this.queueWanted = true; this.kick() }, TICK_MS)
    this.timer.unref()
    this.kick()
  }

  /** Stops taking work; waits a little for deliveries in flight, then drops them (their leases lapse). */
  async close (): Promise<void> {
    this.closing = true
    clearInterval(this.timer)
    clearTimeout(this.kickTimer)
    for (let waited = 0; this.inFlight.size > 0 && waited < DRAIN_MS; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50))
    for (const controller of this.inFlight.values()) controller.abort()
  }

  /** The reason `url` may not be sent to now, or undefined; for checking a URL an admin gives. */
  async refusal (url: string): Promise<string | undefined> {
    try {
      await resolveTarget(new URL(url), this.options.policy, this.options.resolve)
      return undefined
    } catch (error) {
      if (error instanceof TargetRefused) return error.message
      throw error
    }
  }

  /** Looks for work soon (now, unless a run is on: then right after it). */
  kick (): void {
    if (this.closing) return
    if (this.running) {
      this.again = true
      return
    }
    this.kickTimer ??= setTimeout(() => {
      this.kickTimer = undefined
      void this.run()
    }, 10)
  }

  /** An endpoint was registered, changed or deleted here: look at the list again now. */
  endpointsChanged (): void {
    this.endpointsCheckedAt = 0
    this.queueWanted = true
    this.kick()
  }

  private async run (): Promise<void> {
    this.running = true
    this.again = false
    try {
      // The list of enabled endpoints is read at most once a tick (others' changes show
      // within a second): with none, the feed growing costs no query at all.
      if (Date.now() - this.endpointsCheckedAt >= TICK_MS) {
        this.endpoints = await enabledEndpoints(this.options.pool)
        this.endpointsCheckedAt = Date.now()
      }
      if (this.endpoints.length === 0) return
      if (this.queueWanted) {
        this.queueWanted = false
        for (const id of this.endpoints) {
          for (let scanned = QUEUE_BATCH; scanned === QUEUE_BATCH && !this.closing;) scanned = await queueForEndpoint(this.options.pool, id, QUEUE_BATCH)
        }
      }
      const free = IN_FLIGHT - this.inFlight.size
      if (free > 0 && !this.closing) {
        for (const claimed of await claimDeliveries(this.options.pool, free, this.lease, LEASE_SECONDS)) this.send(claimed)
      }
    } catch (error) {
      this.warnings.warn('delivery', error as Error, DELIVERY_FAILED)
    } finally {
      this.running = false
      if (this.again) this.kick()
    }
  }

  private send (claimed: Claimed): void {
    const key = `${claimed.endpoint_id} ${claimed.position}`
    const controller = new AbortController()
    this.inFlight.set(key, controller)
    void this.attempt(claimed, controller.signal)
      .catch((error: Error) => this.warnings.warn('delivery', error, DELIVERY_FAILED))
      .finally(() => {
        this.inFlight.delete(key)
        // The next event of that resource may be due now.
        this.kick()
      })
  }

  private async attempt (claimed: Claimed, signal: AbortSignal): Promise<void> {
    if (!claimed.event) {
      await forgetDelivery(this.options.pool, claimed)
      return
    }
    const body = JSON.stringify(claimed.event)
    const attemptedAt = new Date()
    const timestamp = Math.floor(attemptedAt.getTime() / 1000)
    const signatures = [claimed.secret, claimed.previous_secret].filter((secret): secret is string => secret !== null)
      .map((secret) => signature(secret, claimed.event!.id, timestamp, body))
    const headers = {
      'user-agent': 'invsys-webhooks',
      'webhook-id': claimed.event.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signatures.join(' ')
    }
    let status: number | null = null
    let error: string | null = null
    let retryAfter: string | undefined
    let kind: DeliveryOutcome
    try {
      const url = new URL(claimed.url)
      const target = await resolveTarget(url, this.options.policy, this.options.resolve)
      const answer = await postJson(url, target, headers, body, TIMEOUT_MS, signal)
      status = answer.status
      retryAfter = answer.retryAfter
      kind = status >= 200 && status < 300 ? 'delivered' : 'failed'
      if (status >= 300 && status < 400) error = `answered ${status}: redirects are not followed`
      else if (kind === 'failed') error = `answered ${status}`
    } catch (caught) {
      const failure = caught as Error & { code?: string }
      kind = caught instanceof TargetRefused ? 'refused' : /no answer within/.test(failure.message) ? 'timeout' : 'error'
      error = caught instanceof TargetRefused ? `refused: ${failure.message}` : `${failure.code ? `${failure.code}: ` : ''}${failure.message}`
    }
    if (signal.aborted && kind !== 'delivered') return
    this.outcomes[kind]++
    const durationMs = Date.now() - attemptedAt.getTime()
    const outcome = this.outcome(claimed, kind, status, error, retryAfter, attemptedAt, durationMs)
    await recordAttempt(this.options.pool, claimed, this.lease, outcome)
    // A retry due before the next tick is looked for when it is due.
    const due = outcome.nextAttemptAt ? outcome.nextAttemptAt.getTime() - Date.now() : Infinity
    if (due < TICK_MS) setTimeout(() => this.kick(), Math.max(due, 0)).unref()
  }

  /** What follows an attempt: done, the next attempt (the schedule's, or Retry-After's), or the endpoint disabled. */
  private outcome (claimed: Claimed, kind: DeliveryOutcome, status: number | null, error: string | null,
    retryAfter: string | undefined, attemptedAt: Date, durationMs: number): AttemptOutcome {
    const base = { attemptedAt, status, error, durationMs }
    if (kind === 'delivered') return { ...base, nextAttemptAt: null, disable: null }
    if (status === 410) return { ...base, nextAttemptAt: null, disable: `the endpoint answered 410 Gone to event ${claimed.position} at ${attemptedAt.toISOString()}` }
    const { schedule } = this.options
    if (claimed.attempts >= schedule.length) {
      return { ...base, nextAttemptAt: null, disable: `event ${claimed.position} failed all ${schedule.length} attempts of the retry schedule; the last, at ${attemptedAt.toISOString()}: ${error ?? `answered ${status}`}` }
    }
    const honoured = status === 429 || status === 503 ? retryAfterSeconds(retryAfter, Date.now()) : undefined
    // Jitter (±10%) keeps endpoints that failed together from being retried together.
    const delay = honoured ?? schedule[claimed.attempts]! * (0.9 + Math.random() * 0.2)
    return { ...base, nextAttemptAt: new Date(Date.now() + delay * 1000), disable: null }
  }
}

interface WebhookOptions {
  /** How host names are resolved for webhooks (tests give their own). */
  resolve?: Resolver
}

/** Decorates the app with its webhook worker, which starts when the app is ready and stops when it closes. */
export const webhooks = fp<WebhookOptions>(async function webhooks (app: FastifyInstance, options) {
  const worker = new WebhookWorker({
    pool: app.pg.pool,
    feed: app.feed,
    log: app.log,
    schedule: app.config.webhookRetrySchedule,
    policy: new AddressPolicy(app.config.webhookAllowedCidrs),
    resolve: options.resolve ?? systemResolver
  })
  app.decorate('webhooks', worker)
  app.addHook('onReady', async () => { worker.start() })
  app.addHook('preClose', async () => { await worker.close() })
}, { name: 'invsys-webhooks', dependencies: ['invsys-config', 'invsys-database', 'invsys-change-feed'] })
