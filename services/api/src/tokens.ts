import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * API tokens: `invsys_` and base64url of 32 random bytes (256 bits). The prefix makes
 * a leaked token recognisable (secret scanners, log greps); the rest is the secret.
 */
const TOKEN_PREFIX = 'invsys_'

/**
 * What is accepted as a token: the prefix and 24 to 200 base64url characters. Generated
 * tokens have 43; the lower bound lets an operator choose BOOTSTRAP_ADMIN_TOKEN (and
 * admits the development token) while refusing obviously short ones.
 */
export const TOKEN_FORMAT = /^invsys_[A-Za-z0-9_-]{24,200}$/

/**
 * The admin token created on first start with the embedded database and no
 * BOOTSTRAP_ADMIN_TOKEN, so that the README's curl examples work as written. It is
 * public knowledge: never used with DATABASE_URL (config.ts decides).
 */
export const DEVELOPMENT_ADMIN_TOKEN = 'invsys_dev_admin_token_change_me'

export function generateToken (): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url')
}

/**
 * SHA-256 of the token: what the database stores and looks tokens up by. A fast hash
 * is the right tool here, unlike for passwords: a token carries 256 random bits, so a
 * stolen hash cannot be reversed by trying candidates, however fast each try is. A
 * slow KDF would only make every request slower.
 */
export function hashToken (token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

/** The non-secret start of a token (prefix and 4 characters), shown in token lists. */
export function tokenDisplayPrefix (token: string): string {
  return token.slice(0, TOKEN_PREFIX.length + 4)
}

/**
 * Whether `token` hashes to `storedHash`, compared in constant time. The row was found
 * by this very hash, so this is defence in depth: it keeps the final decision free of
 * an early-exit comparison whatever the lookup path becomes. (The index lookup's timing
 * can only tell an attacker about the hash of their own guess, which is no help.)
 */
export function tokenMatches (token: string, storedHash: Buffer): boolean {
  const presented = hashToken(token)
  return presented.length === storedHash.length && timingSafeEqual(presented, storedHash)
}

/**
 * Calendar feed secrets: base64url of 32 random bytes (256 bits), the whole of the last
 * path segment of a feed's address, /feeds/<secret>.ics. No prefix: the address is the
 * only place one appears, and it is recognisable by its path. Stored, like tokens, as
 * hashToken(secret) only.
 */
export const FEED_SECRET_FORMAT = /^[A-Za-z0-9_-]{43}$/

export function generateFeedSecret (): string {
  return randomBytes(32).toString('base64url')
}

/** The public path of a feed: the only place its secret is ever written. */
export function feedPath (secret: string): string {
  return `/feeds/${secret}.ics`
}

/** What logs show instead of any feed address. */
const REDACTED_FEED_PATH = '/feeds/[redacted].ics'

// A path under /feeds/, however it is spelled (repeated slashes, any case): the whole of
// it and its query string are replaced, since a mistyped address still holds the secret.
const FEED_URL = /^\/+feeds(\/|$)/i
// In a whole log line: a /feeds/ path (also inside an absolute URL) up to the end of the
// URL; /api/feeds/:id names a feed by its id and stays readable.
const FEED_URL_IN_TEXT = /(?<!\/api)\/+feeds\/[^\s"'\\<>]*/gi
// A secret-shaped name sent to some other path by mistake (/api/feeds/<secret>.ics).
const SECRET_FILE = /[A-Za-z0-9_-]{43}\.ics/g

/**
 * A request URL as logs may show it: /feeds/<anything> becomes /feeds/[redacted].ics.
 * The path is also compared %-decoded, so /%66eeds/… is caught too.
 */
export function redactFeedUrl (url: string): string {
  const path = url.split('?')[0]!
  let decoded = path
  try { decoded = decodeURIComponent(path) } catch { /* a malformed escape: compare it as sent */ }
  return FEED_URL.test(path) || FEED_URL.test(decoded) ? REDACTED_FEED_PATH : url.replace(SECRET_FILE, '[redacted].ics')
}

/** Every feed address inside a whole log line (a message that quotes a URL), redacted. */
export function redactFeedUrlsInText (text: string): string {
  return text.replace(FEED_URL_IN_TEXT, REDACTED_FEED_PATH).replace(SECRET_FILE, '[redacted].ics')
}

/**
 * Webhook signing secrets, as Standard Webhooks writes them: `whsec_` and the standard
 * base64 of 32 random bytes (the bytes are the HMAC key). Stored as they are (signing
 * needs them), shown once, never logged (logging.ts redacts anything shaped like one).
 */
export function generateWebhookSecret (): string {
  return `whsec_${randomBytes(32).toString('base64')}`
}
