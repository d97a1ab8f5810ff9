import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type pg from 'pg'
import {
  advanceKeptFrom, deleteUnservedEvents, EVENTS_CHANNEL, eventsWaiting, expireRunOutHolds, numberCommittedEvents
} from '../database/events.js'
import { QuietWarnings } from '../logging.js'
import type { Listener } from './notifications.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The change feed's machinery in this replica: numbering, hold expiry, retention, and waking long-polls. */
    feed: ChangeFeed
  }
}

/** Events numbered per statement; a backlog takes several, back to back. */
const NUMBER_BATCH = 1000
/** Batches numbered before the app is ready: changes written while no API ran (the mock data, psql) are in the feed when it starts. */
const STARTING_BATCHES = 10
/** A pass at most this often (a write request asks for one at once, but many are served together). */
const PASS_SPACING_MS = 25
/** How often a replica looks for changes it was not told about (psql, other replicas, a lost poke). */
const IDLE_CHECK_MS = 250
/** How often run-out holds are written as expired: allocation.expired comes at most this late (plus a pass). */
const SWEEP_MS = 15_000
const SWEEP_BATCH = 500
/** How often events past EVENT_RETENTION_DAYS are let go, and how soon after start the first time. */
const RETENTION_MS = 3_600_000
const FIRST_RETENTION_MS = 10_000
const RETENTION_BATCH = 1000

interface ChangeFeedOptions {
  pool: pg.Pool
  listener: Listener
  log: FastifyBaseLogger
  retentionDays: number
}

/**
 * What each API replica does for the change feed (docs/events.md):
 *
 * - numbers committed changes (event_number_committed), as soon as a write request of
 *   this replica has answered, and otherwise whenever a quick check finds some waiting
 *   (psql edits, other replicas): one replica at a time, in the database;
 * - writes run-out holds as expired every 15 s, so that allocation.expired comes within
 *   a pass of that even if nothing else touches the resource (every replica does it;
 *   SKIP LOCKED shares the rows);
 * - moves the feed's start past EVENT_RETENTION_DAYS, hourly;
 * - wakes long-polling requests when the feed grows (NOTIFY invsys_events, from
 *   whichever replica numbered), or when notifications may have been missed.
 */
export class ChangeFeed {
  /** The last position this replica has heard of. */
  head = 0
  /** Set when the app closes: long-polls answer at once. */
  closing = false
  private readonly waiters = new Set<() => void>()
  private readonly numberedCallbacks = new Set<() => void>()
  private readonly timers: NodeJS.Timeout[] = []
  private passTimer: NodeJS.Timeout | undefined
  private numbering = false
  private wanted = false
  private lastPass = 0
  private sweeping = false
  private readonly warnings: QuietWarnings

  constructor (private readonly options: ChangeFeedOptions) {
    this.warnings = new QuietWarnings(options.log)
    options.listener.subscribe(EVENTS_CHANNEL, (payload) => this.heard(Number(payload)))
    // Notifications may have been missed: every long-poll reads again.
    options.listener.onReset(() => this.wake())
  }

  /** Starts the periodic jobs, after numbering what is waiting (a few batches at most: the rest follows at once). */
  async start (): Promise<void> {
    await this.pass(STARTING_BATCHES)
    const every = (ms: number, job: () => Promise<void>) => { const timer = setInterval(() => { void job() }, ms); timer.unref(); this.timers.push(timer) }
    every(IDLE_CHECK_MS, () => this.checkWaiting())
    every(SWEEP_MS, () => this.sweep())
    every(RETENTION_MS, () => this.retain())
    const first = setTimeout(() => { void this.retain() }, FIRST_RETENTION_MS)
    first.unref()
    this.timers.push(first)
  }

  /** Stops the timers; long-polls answer at once. */
  close (): void {
    this.closing = true
    for (const timer of this.timers) clearTimeout(timer)
    clearTimeout(this.passTimer)
    this.wake()
  }

  /** A change was (probably) committed here: number it soon. */
  poke (): void {
    if (this.closing) return
    this.wanted = true
    if (this.numbering || this.passTimer) return
    const wait = Math.max(0, this.lastPass + PASS_SPACING_MS - Date.now())
    this.passTimer = setTimeout(() => {
      this.passTimer = undefined
      void this.pass()
    }, wait)
    this.passTimer.unref()
  }

  /** Resolves once an event past position `seen` has been heard of, or notifications may have been missed, or after `ms`. */
  changedSince (seen: number, ms: number): Promise<void> {
    if (this.head > seen || this.closing || ms <= 0) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.waiters.add(done)
    })
  }

  /** Calls `callback` whenever the feed grows (or may have): the webhook worker's cue. */
  onNumbered (callback: () => void): void {
    this.numberedCallbacks.add(callback)
  }

  private heard (position: number): void {
    if (!Number.isSafeInteger(position) || position <= this.head) return
    this.head = position
    this.wake()
  }

  private wake (): void {
    for (const done of [...this.waiters]) done()
    for (const callback of this.numberedCallbacks) callback()
  }

  private async pass (maxBatches = Infinity): Promise<void> {
    this.numbering = true
    try {
      for (let numbered = NUMBER_BATCH, batches = 0; numbered === NUMBER_BATCH && !this.closing; batches++) {
        if (batches === maxBatches) {
          this.wanted = true
          break
        }
        this.wanted = false
        this.lastPass = Date.now()
        numbered = await numberCommittedEvents(this.options.pool, NUMBER_BATCH)
      }
    } catch (error) {
      this.warnings.warn('numbering', error as Error, 'could not number committed changes for the feed; trying again shortly')
    } finally {
      this.numbering = false
      if (this.wanted) this.poke()
    }
  }

  private async checkWaiting (): Promise<void> {
    if (this.numbering || this.passTimer || this.closing) return
    try {
      if (await eventsWaiting(this.options.pool)) this.poke()
    } catch (error) {
      this.warnings.warn('numbering', error as Error, 'could not look for changes to number for the feed; trying again shortly')
    }
  }

  private async sweep (): Promise<void> {
    if (this.sweeping || this.closing) return
    this.sweeping = true
    try {
      let expired = 0
      for (let batch = SWEEP_BATCH; batch === SWEEP_BATCH;) {
        batch = await expireRunOutHolds(this.options.pool, SWEEP_BATCH)
        expired += batch
      }
      if (expired > 0) this.poke()
    } catch (error) {
      this.warnings.warn('sweep', error as Error, 'could not write run-out holds as expired; trying again in 15 s')
    } finally {
      this.sweeping = false
    }
  }

  private async retain (): Promise<void> {
    if (this.closing) return
    try {
      const keptFrom = await advanceKeptFrom(this.options.pool, this.options.retentionDays)
      if (keptFrom !== undefined) this.options.log.info({ keptFrom, days: this.options.retentionDays }, 'change feed: events before this position are past retention')
      for (let deleted = RETENTION_BATCH; deleted > 0 && !this.closing;) deleted = await deleteUnservedEvents(this.options.pool, RETENTION_BATCH)
    } catch (error) {
      this.warnings.warn('retention', error as Error, 'could not let go of events past EVENT_RETENTION_DAYS; trying again in an hour')
    }
  }
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Decorates the app with its change feed. A write request through this replica that
 * succeeded asks for a numbering pass at once, so that its events reach readers within
 * milliseconds; anything else is found by the quick periodic check.
 */
export const changeFeed = fp(async function changeFeed (app: FastifyInstance) {
  const feed = new ChangeFeed({ pool: app.pg.pool, listener: app.notifications, log: app.log, retentionDays: app.config.eventRetentionDays })
  app.decorate('feed', feed)
  app.addHook('onResponse', async (request, reply) => {
    if (!READS.has(request.method) && reply.statusCode < 400 && request.url.startsWith('/api/')) feed.poke()
  })
  app.addHook('onReady', async () => { await feed.start() })
  // Before the server waits for requests in flight: long-polls must not hold a shutdown.
  app.addHook('preClose', async () => { feed.close() })
  app.addHook('onClose', async () => { feed.close() })
}, { name: 'invsys-change-feed', dependencies: ['invsys-config', 'invsys-database', 'invsys-notifications'] })
