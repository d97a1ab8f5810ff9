import { CREDENTIALS_CHANNEL, credentialsChange, type CredentialsChange } from '../database/accounts.js'
import type { Account } from '../schemas/accounts.js'
import type { Listener } from './notifications.js'

/** How a request's token was checked: from what this replica keeps, or in the database. */
export type CacheOutcome = 'hit' | 'miss'

/** What a token lookup found, as the auth hook uses it. */
export interface KnownToken { account: Account, tokenId: string, tokenHash: Buffer }

interface Entry extends KnownToken { loadedAt: number }

export interface TokenCacheOptions {
  /** The replica's listening connection (plugins/notifications.ts). */
  listener: Listener
  /** Tokens kept at most; the least recently used go first. */
  maxEntries: number
  /**
   * How long a lookup is kept. A minute: the lookup stamps last_used_at (at most once a
   * minute), so a busy token still has it written about once a minute.
   */
  ttlMs?: number
}

/**
 * Token lookups kept in this process, so that a request with a token seen in the last
 * minute costs no query on the pool.
 *
 * Revocation must still take effect on the very next request, on every replica. Every
 * change to a token or an account makes PostgreSQL NOTIFY (notify_credentials_changed),
 * and this cache hears it on the replica's listening connection and drops what it keeps
 * about the token or account named. A kept lookup is used only after a round trip on that
 * connection made after the request arrived (`confirm`): PostgreSQL delivers pending
 * notifications before it answers, so every change committed before the request came in
 * has been applied by then, whichever replica made it. Concurrent requests share one
 * round trip. While the listener is down nothing kept is trusted (or kept): every
 * request looks its token up as if there were no cache, until it listens again.
 */
export class TokenCache {
  private readonly entries = new Map<string, Entry>()
  private readonly ttlMs: number
  private readonly listener: Listener
  /** Bumped by every change heard and every loss of the listener: a lookup that began before one is not kept. */
  private generation = 0
  private closed = false
  /** Requests answered from what is kept, and those that asked the database (for GET /metrics). */
  readonly lookups: Record<CacheOutcome, number> = { hit: 0, miss: 0 }

  constructor (private readonly options: TokenCacheOptions) {
    this.ttlMs = options.ttlMs ?? 60_000
    this.listener = options.listener
    this.listener.subscribe(CREDENTIALS_CHANNEL, (payload) => this.changed(credentialsChange(payload)))
    // Lost, or listening again: changes made meanwhile were never heard.
    this.listener.onReset(() => this.forget())
  }

  /** Forgets everything; later lookups are not kept. */
  close (): void {
    this.closed = true
    this.forget()
  }

  /** The marker to hand back to `remember`: taken before the lookup starts. */
  mark (): number {
    return this.generation
  }

  /** A kept lookup of this token hash, not yet confirmed (see `confirm`). */
  find (tokenHash: Buffer): KnownToken | undefined {
    if (!this.trusted) return undefined
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
    return this.trusted ? this.listener.roundTrip() : Promise.resolve(false)
  }

  /** Keeps a lookup the database just answered, unless a change was heard since `mark`. */
  remember (tokenHash: Buffer, token: KnownToken, mark: number): void {
    if (!this.trusted || mark !== this.generation || this.options.maxEntries <= 0) return
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
    return !this.closed && this.listener.listening
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
}
