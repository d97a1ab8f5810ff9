import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * API tokens: `invsys_` and base64url of 32 random bytes (256 bits). The prefix makes
 * a leaked token recognisable (secret scanners, log greps); the rest is the secret.
 */
export const TOKEN_PREFIX = 'invsys_'

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
