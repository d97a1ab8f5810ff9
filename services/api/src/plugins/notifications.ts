import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import pg from 'pg'
import { catchUpWithNotifications, listen } from '../database/notifications.js'
import { poolOptions } from '../database/db.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** This replica's one listening connection (LISTEN/NOTIFY), shared by the token cache and the change feed. */
    notifications: Listener
  }
}

type NotificationHandler = (payload: string | undefined) => void

interface ListenerOptions {
  /** Settings of the connection that listens (its own, outside the pool). */
  connection: pg.ClientConfig
  log: FastifyBaseLogger
  /** How often an idle listener checks that its connection still answers. */
  heartbeatMs?: number
}

/** How long a round trip may take before the connection is given up as broken. */
const ROUND_TRIP_TIMEOUT_MS = 2000
const RECONNECT_MIN_MS = 100
const RECONNECT_MAX_MS = 5000
const HEARTBEAT_MS = 10_000

/**
 * One connection per replica that LISTENs on every channel a part of the API subscribes
 * to, and hands each notification to the subscribers of its channel.
 *
 * Notifications sent while nobody listens are lost, so a subscriber must not trust what
 * it kept across a loss: every time the connection is lost, and again when it is
 * re-established, `onReset` callbacks run (the token cache forgets its lookups, the feed
 * wakes its long-polls to read again). A lost connection is replaced with backoff (100 ms
 * doubling to 5 s), whatever lost it: a restart, a failover to a new primary (the same
 * DATABASE_URL then leads there), a terminated backend. An idle connection is checked
 * every 10 s, so a dead one (a frozen primary sends nothing, not even an error) is noticed
 * without waiting for TCP to give up.
 */
export class Listener {
  private client: pg.Client | undefined
  private connected = false
  private closed = false
  private reconnectMs = RECONNECT_MIN_MS
  private reconnectTimer: NodeJS.Timeout | undefined
  private heartbeat: NodeJS.Timeout | undefined
  private lostAt: number | undefined
  private readonly gone = new WeakSet<pg.Client>()
  private readonly handlers = new Map<string, Set<NotificationHandler>>()
  private readonly resets = new Set<() => void>()
  private waiting: Array<(caughtUp: boolean) => void> = []
  private roundTripping = false
  /** Connections re-established after a loss, and whether one is up now (for GET /metrics). */
  readonly stats = { reconnects: 0 }

  constructor (private readonly options: ListenerOptions) {}

  /** Whether notifications are being received now. */
  get listening (): boolean {
    return this.connected
  }

  /** Calls `handler` with the payload of every notification on `channel`. */
  subscribe (channel: string, handler: NotificationHandler): void {
    const known = this.handlers.get(channel)
    if (known) {
      known.add(handler)
      return
    }
    this.handlers.set(channel, new Set([handler]))
    // A channel added while listening: a loss and a reconnection LISTEN to it whole.
    const client = this.client
    if (client && this.connected) {
      listen(client, [channel]).catch((error: Error) => this.lost(client, error))
    }
  }

  /** Calls `callback` whenever notifications may have been missed: the connection was lost, or is back. */
  onReset (callback: () => void): void {
    this.resets.add(callback)
  }

  /** Connects. Failing to is not fatal: the listener keeps trying, and says so. */
  async start (): Promise<void> {
    await this.connect()
  }

  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.reconnectTimer)
    clearInterval(this.heartbeat)
    const client = this.client
    this.client = undefined
    this.connected = false
    this.release(false)
    await client?.end().catch(() => undefined)
  }

  /**
   * True once every notification of a change committed before this call has been handed
   * to its subscribers (PostgreSQL delivers pending notifications before it answers a
   * query on the listening connection); false when the listener cannot say so. Calls that
   * arrive during a round trip share the next one, which starts after they arrived.
   */
  roundTrip (): Promise<boolean> {
    if (!this.connected) return Promise.resolve(false)
    return new Promise((resolve) => {
      this.waiting.push(resolve)
      if (!this.roundTripping) void this.roundTrips()
    })
  }

  private async roundTrips (): Promise<void> {
    this.roundTripping = true
    while (this.waiting.length > 0) {
      const client = this.client
      const batch = this.waiting
      this.waiting = []
      let caughtUp = false
      if (client && this.connected) {
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ROUND_TRIP_TIMEOUT_MS) })
        const outcome = await Promise.race([catchUpWithNotifications(client).then(() => 'ok' as const, () => 'failed' as const), timeout])
        clearTimeout(timer)
        if (outcome === 'ok') caughtUp = this.connected && this.client === client
        else this.lost(client, new Error(outcome === 'timeout' ? `no answer within ${ROUND_TRIP_TIMEOUT_MS} ms` : 'the round trip failed'))
      }
      for (const resolve of batch) resolve(caughtUp)
    }
    this.roundTripping = false
  }

  private release (caughtUp: boolean): void {
    const batch = this.waiting
    this.waiting = []
    for (const resolve of batch) resolve(caughtUp)
  }

  private reset (): void {
    for (const callback of this.resets) callback()
  }

  private async connect (): Promise<void> {
    if (this.closed) return
    const client = new pg.Client({ ...this.options.connection, keepAlive: true })
    client.on('notification', (message) => {
      for (const handler of this.handlers.get(message.channel) ?? []) handler(message.payload)
    })
    // Kept for the client's whole life, so that no later error goes unhandled.
    client.on('error', (error) => this.lost(client, error))
    client.on('end', () => this.lost(client, new Error('the connection ended')))
    try {
      await client.connect()
      await listen(client, [...this.handlers.keys()])
    } catch (error) {
      this.lost(client, error as Error)
      return
    }
    if (this.closed || this.gone.has(client)) {
      await client.end().catch(() => undefined)
      return
    }
    this.client = client
    this.connected = true
    // What was kept before cannot be trusted: changes made while nobody listened were never heard.
    this.reset()
    if (this.lostAt !== undefined) {
      this.stats.reconnects++
      this.options.log.info({ channels: [...this.handlers.keys()], downMs: Date.now() - this.lostAt }, 'listening for notifications again')
      this.lostAt = undefined
    }
    this.reconnectMs = RECONNECT_MIN_MS
    clearInterval(this.heartbeat)
    this.heartbeat = setInterval(() => { if (!this.roundTripping) void this.roundTrip() }, this.options.heartbeatMs ?? HEARTBEAT_MS)
    this.heartbeat.unref()
  }

  private lost (client: pg.Client, error: Error): void {
    // A client is lost once, however many ways it reports it (an error, then its end).
    if (this.gone.has(client)) return
    this.gone.add(client)
    if (this.client !== undefined && this.client !== client) return
    const wasListening = this.connected
    this.client = undefined
    this.connected = false
    clearInterval(this.heartbeat)
    this.release(false)
    this.reset()
    void client.end().catch(() => undefined)
    if (this.closed || this.reconnectTimer !== undefined) return
    if (wasListening || this.lostAt === undefined) {
      this.lostAt ??= Date.now()
      this.options.log.warn({ err: error, channels: [...this.handlers.keys()] },
        'not listening for notifications; reconnecting (meanwhile every token is looked up in the database, and long-polls read every few seconds)')
    }
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      void this.connect()
    }, this.reconnectMs)
    this.reconnectTimer.unref()
    this.reconnectMs = Math.min(this.reconnectMs * 2, RECONNECT_MAX_MS)
  }
}

/**
 * Decorates the app with its listener: one connection of its own, outside the pool
 * (it stays checked out for good, listening). Subscribers register while the app is
 * built; it connects when the app is ready, and closes with it.
 */
export const notifications = fp(async function notifications (app: FastifyInstance) {
  const { databaseUrl } = app.config
  if (!databaseUrl) throw new Error('databaseUrl must be resolved before the app is built')
  const listener = new Listener({ connection: { ...poolOptions(databaseUrl, 1), application_name: 'invsys-api-listener' }, log: app.log })
  app.decorate('notifications', listener)
  app.addHook('onReady', async () => { await listener.start() })
  app.addHook('onClose', async () => { await listener.close() })
}, { name: 'invsys-notifications', dependencies: ['invsys-config'] })
