import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { redactFeedUrl } from './tokens.js'

/**
 * Keeping credentials out of the logs. Fastify logs no request headers, pino redacts any
 * that a line carries (app.ts), and the HTTP parser's errors are logged without the raw
 * request (plugins/errors.ts). What is left is text a client chose: a token pasted into a
 * URL, a query parameter's name, or a value PostgreSQL repeats in an error message. Every
 * line is scrubbed of anything shaped like a token as it is written, and request URLs
 * are also read percent-decoded, so `%69nvsys_…` is caught as well.
 */

// A token's prefix (its underscore possibly percent-encoded) and the start of a secret.
const TOKEN_LIKE = /invsys(?:_|%5f)[A-Za-z0-9_%-]{4,}/gi
const REDACTED_TOKEN = 'invsys_[redacted]'
// A webhook signing secret (whsec_ and base64), however it got into a line.
const WEBHOOK_SECRET_LIKE = /whsec(?:_|%5f)[A-Za-z0-9+/=%_-]{4,}/gi
const REDACTED_WEBHOOK_SECRET = 'whsec_[redacted]'

// Calendar feeds are read at /feeds/<secret>.ics: the path segment is the credential.
const FEED_SECRET = /(\/feeds\/)[^/?#]+/gi

/** The line without anything shaped like a token or a webhook secret: pino's last step before a line is written. */
export function scrubSecrets (line: string): string {
  const tokensGone = /invsys/i.test(line) ? line.replace(TOKEN_LIKE, REDACTED_TOKEN) : line
  return /whsec/i.test(tokensGone) ? tokensGone.replace(WEBHOOK_SECRET_LIKE, REDACTED_WEBHOOK_SECRET) : tokensGone
}

/** %XX escapes decoded where they form valid UTF-8, left alone where they do not. */
function lenientDecode (text: string): string {
  return text.replace(/(?:%[0-9a-f]{2})+/gi, (run) => {
    try {
      return decodeURIComponent(run)
    } catch {
      return run
    }
  })
}

/**
 * A request URL fit for the logs: the secret of a feed URL, and anything shaped like a
 * token (read percent-decoded), replaced. URLs without either are logged as sent.
 */
function loggableUrl (url: string): string {
  const decoded = lenientDecode(url)
  const hasToken = /invsys_/i.test(decoded)
  const hasFeed = /\/feeds\//i.test(decoded)
  if (!hasToken && !hasFeed) return url
  return decoded.replace(TOKEN_LIKE, REDACTED_TOKEN).replace(FEED_SECRET, '$1[redacted]')
}

/**
 * Fastify's request serializer with the URL and Host made loggable, and without the
 * Accept-Version header it would copy (the API has no versioned routes).
 */
export function serializeRequest (request: FastifyRequest) {
  return {
    method: request.method,
    // A feed address as /feeds/[redacted].ics (query string and all), then tokens.
    url: loggableUrl(redactFeedUrl(request.url)),
    host: loggableUrl(request.host),
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort
  }
}

/**
 * Warnings of background jobs that retry on their own (the feed's numbering, sweep and
 * retention, webhook delivery), each job's logged at most once a minute: a database down
 * for an hour makes a line a minute, not one per retry.
 */
export class QuietWarnings {
  private readonly lastLogged = new Map<string, number>()

  constructor (private readonly log: FastifyBaseLogger, private readonly everyMs = 60_000) {}

  warn (job: string, error: Error, message: string): void {
    const last = this.lastLogged.get(job)
    if (last !== undefined && Date.now() - last < this.everyMs) return
    this.lastLogged.set(job, Date.now())
    this.log.warn({ code: (error as { code?: string }).code, message: error.message }, message)
  }
}
