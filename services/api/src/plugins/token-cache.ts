import pg from 'pg'
import type { FastifyBaseLogger } from 'fastify'
import {
  catchUpWithNotifications, CREDENTIALS_CHANNEL, credentialsChange, listenForCredentialChanges, type CredentialsChange
} from '../database/accounts.js'
import type { Account } from '../schemas/accounts.js'

/** How a request's token was checked: from what this replica keeps, or in the database. */
export type CacheOutcome = 'hit' | 'miss'

/** What a token lookup found, as the auth hook uses it. */
export interface KnownToken { account: Account, tokenId: string, tokenHash: Buffer }

interface Entry extends KnownToken { loadedAt: number }

export interface TokenCacheOptions {
  /** Settings of the connection that listens (its own, outside the pool). */
  connection: pg.ClientConfig
  /** Tokens kept at most; the least recently used go first. */
  maxEntries: number
  /**
   * How long a lookup is kept. A minute: the lookup stamps last_used_at (at most once a
   * minute), so a busy token still has it written about once a minute.
   */
  ttlMs?: number
  log: FastifyBaseLogger
}

/** How long a catch-up round trip may take before the listener is given up as broken. */
const CATCH_UP_TIMEOUT_MS = 2000
const RECONNECT_MIN_MS = 100
const RECONNECT_MAX_MS = 5000

/**
 * Token lookups kept in this process, so that a request with a token seen in the last
 * minute costs no query on the pool.
 *
 * Revocation must still take effect on the very next request, on every replica. Every
 * change to a token or an account makes PostgreSQL NOTIFY (notify_credentials_changed),
 * and this cache listens on a connection of its own and drops what it keeps about the
 * token or account named. A kept lookup is used only after a round trip on that
 * connection made after the request arrived (`confirm`): PostgreSQL delivers pending
 * notifications before it answers, so every change committed before the request came in
 * has been applied by then, whichever replica made it. Concurrent requests share one
 * round trip. While the listener is down nothing kept is trusted (or kept): every
 * request looks its token up as if there were no cache, until it listens again.
 */
export class TokenCache {
  private readonly entries = new Map<string, Entry>()
  private readonly ttlMs: number
  /** Bumped by every change heard and every loss of the listener: a lookup that began before one is not kept. */
  private generation = 0
  private client: pg.Client | undefined
  private listening = false
  private closed = false
  private reconnectMs = RECONNECT_MIN_MS
  private reconnectTimer: NodeJS.Timeout | undefined
  private readonly gone = new WeakSet<pg.Client>()
  private waiting: Array<(caughtUp: boolean) => void> = []
  private catchingUp = false
  /** Requests answered from what is kept, and those that asked the database (for GET /metrics). */
  readonly lookups: Record<CacheOutcome, number> = { hit: 0, miss: 0 }

  constructor (private readonly options: TokenCacheOptions) {
    this.ttlMs = options.ttlMs ?? 60_000
  }

  /** Connects the listener. Failing to is not fatal: the cache stays unused and keeps trying. */
  async start (): Promise<void> {
    await this.connect()
  }

  /** Stops listening and forgets everything; later lookups are not kept. */
  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.reconnectTimer)
    this.forget()
    const client = this.client
    this.client = undefined
    this.listening = false
    this.release(false)
    await client?.end().catch(() => undefined)
  }

  /** The marker to hand back to `remember`: taken before the lookup starts. */
  mark (): number {
    return this.generation
  }

  /** A kept lookup of this token hash, not yet confirmed (see `confirm`). */
  find (tokenHash: Buffer): KnownToken | undefined {
    if (!this.listening) return undefined
    const key = tokenHash.toString('base64')
    const entry = this.entries.get(key)
    if (!entry) return undefined
    if (Date.now() - entry.loadedAt >= this.ttlMs) {
      this.entries.delete(key)
      return undefined
    }
    // Least recently used last out: a Map iterates in insertion order.
    this.entries.delete(key)
    this.entries.set(key, entry)
    return entry
  }

  /**
   * True once every change committed before this call has reached this cache (and
   * dropped what it named): find the entry again afterwards. False when the listener
   * cannot say so, and the caller must ask the database.
   */
  confirm (): Promise<boolean> {
    if (!this.listening) return Promise.resolve(false)
    return new Promise((resolve) => {
      this.waiting.push(resolve)
      if (!this.catchingUp) void this.catchUp()
    })
  }

  /** Keeps a lookup the database just answered, unless a change was heard since `mark`. */
  remember (tokenHash: Buffer, token: KnownToken, mark: number): void {
    if (!this.listening || mark !== this.generation || this.options.maxEntries <= 0) return
    this.entries.set(tokenHash.toString('base64'), { ...token, loadedAt: Date.now() })
    if (this.entries.size > this.options.maxEntries) {
      this.entries.delete(this.entries.keys().next().value!)
    }
  }

  /** Counts how a request's token was checked. */
  counted (outcome: CacheOutcome): void {
    this.lookups[outcome]++
  }

  /** How many lookups are kept (for tests and diagnostics). */
  get size (): number {
    return this.entries.size
  }

  /** Whether the listener is up, so that kept lookups may be used. */
  get trusted (): boolean {
    return this.listening
  }

  // One round trip at a time; requests that arrive meanwhile wait for the next one, which
  // starts after they arrived, as `confirm` promises.
  private async catchUp (): Promise<void> {
    this.catchingUp = true
    while (this.waiting.length > 0) {
      const client = this.client
      const batch = this.waiting
      this.waiting = []
      let caughtUp = false
      if (client && this.listening) {
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), CATCH_UP_TIMEOUT_MS) })
        const outcome = await Promise.race([catchUpWithNotifications(client).then(() => 'ok' as const, () => 'failed' as const), timeout])
        clearTimeout(timer)
        if (outcome === 'ok') caughtUp = this.listening && this.client === client
        else this.lost(client, new Error(outcome === 'timeout' ? `no answer within ${CATCH_UP_TIMEOUT_MS} ms` : 'the round trip failed'))
      }
      for (const resolve of batch) resolve(caughtUp)
    }
    this.catchingUp = false
  }

  private release (caughtUp: boolean): void {
    const batch = this.waiting
    this.waiting = []
    for (const resolve of batch) resolve(caughtUp)
  }

  private forget (): void {
    this.entries.clear()
    this.generation++
  }

  private changed (change: CredentialsChange): void {
    this.generation++
    if (change === 'all') {
      this.entries.clear()
      return
    }
    for (const [key, entry] of this.entries) {
      if ('token' in change ? entry.tokenId === change.token : entry.account.id === change.account) this.entries.delete(key)
    }
  }

  private async connect (): Promise<void> {
    if (this.closed) return
    const client = new pg.Client({ ...this.options.connection, keepAlive: true })
    client.on('notification', (message) => {
      if (message.channel === CREDENTIALS_CHANNEL) this.changed(credentialsChange(message.payload))
    })
    // Kept for the client's whole life, so that no later error goes unhandled.
    client.on('error', (error) => this.lost(client, error))
    client.on('end', () => this.lost(client, new Error('the connection ended')))
    try {
      await client.connect()
      await listenForCredentialChanges(client)
    } catch (error) {
      this.lost(client, error as Error)
      return
    }
    if (this.closed) {
      await client.end().catch(() => undefined)
      return
    }
    this.client = client
    this.listening = true
    // Changes made while nobody listened were never heard: start from nothing.
    this.forget()
    if (this.reconnectMs > RECONNECT_MIN_MS) this.options.log.info('token cache: listening for credential changes again')
    this.reconnectMs = RECONNECT_MIN_MS
  }

  private lost (client: pg.Client, error: Error): void {
    // A client is lost once, however many ways it reports it (an error, then its end).
    if (this.gone.has(client)) return
    this.gone.add(client)
    if (this.client !== undefined && this.client !== client) return
    const wasListening = this.listening
    this.client = undefined
    this.listening = false
    this.forget()
    this.release(false)
    void client.end().catch(() => undefined)
    if (this.closed || this.reconnectTimer !== undefined) return
    if (wasListening || this.reconnectMs === RECONNECT_MIN_MS) {
      this.options.log.warn({ err: error }, 'token cache: not listening for credential changes; every request looks its token up until it is again')
    }
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      void this.connect()
    }, this.reconnectMs)
    this.reconnectTimer.unref()
    this.reconnectMs = Math.min(this.reconnectMs * 2, RECONNECT_MAX_MS)
  }
}
