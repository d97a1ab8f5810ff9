import { createHash } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { createFeed, findFeedBySecretHash, listFeedEntries, listFeeds, revokeFeed, type Feed as StoredFeed, type FeedEntry, type FeedScope } from '../database/feeds.js'
import { actorOf } from '../plugins/auth.js'
import { BadRequestError, NotFoundError } from '../plugins/errors.js'
import { writeICalendar } from '../ics.js'
import { CalendarBody, DEFAULT_DAYS_AHEAD, DEFAULT_DAYS_BACK, MAX_CALENDAR_WINDOW_DAYS } from '../schemas/calendar.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { Feed, FEED_REFRESH, FeedAddressParams, FeedInput, FeedListQuery, FeedParams, NewFeed, NotModified, SCOPES } from '../schemas/feeds.js'
import { feedPath, FEED_SECRET_FORMAT, generateFeedSecret, hashToken, tokenMatches } from '../tokens.js'
import { sendPage } from './paging.js'
import { calendarWindow, DAY_MS, parseTime } from './window.js'

const tags = ['calendar feeds']

// The same words for a secret that is malformed, unknown or revoked: the answer says
// nothing about whether an address ever worked, and never repeats it.
const NO_FEED = 'no calendar feed at this address (it may have been revoked)'

/**
 * The default window, from 30 days back to 365 ahead, counted from the start of the
 * current UTC day: a feed fetched twice in a day is then the same text (open ends are cut
 * at the window), so its ETag holds and the second fetch is a 304.
 */
function defaultWindow (now: number): { from: string, to: string } {
  const today = Math.floor(now / DAY_MS) * DAY_MS
  return {
    from: new Date(today - DEFAULT_DAYS_BACK * DAY_MS).toISOString(),
    to: new Date(today + (DEFAULT_DAYS_AHEAD + 1) * DAY_MS).toISOString()
  }
}

/** The strong ETag of a body: its SHA-256, so it changes exactly when the text does. */
function entityTag (body: string): string {
  return `"${createHash('sha256').update(body, 'utf8').digest('base64url')}"`
}

/**
 * If-None-Match (RFC 9110 13.1.2): `*`, or a list of tags compared weakly, so that a
 * W/ prefix a proxy added (after compressing, say) still matches.
 */
function noneMatch (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)
}

/** The newest change among the rows shown, or when the feed was made if it shows none, as an HTTP-date. */
function lastModified (entries: FeedEntry[], feed: StoredFeed): string {
  const times = entries.map((entry) => parseTime(entry.updated_at)).filter((ms) => Number.isFinite(ms))
  const newest = times.length > 0 ? Math.max(...times) : parseTime(feed.created_at)
  return new Date(newest).toUTCString()
}

/**
 * Calendar subscriptions. /api/feeds creates, lists and revokes them with a token; the
 * public /feeds/<secret>.ics serves each one to calendar applications, which cannot send
 * a token: the address is the credential.
 */
export const feedRoutes: FastifyPluginAsyncTypebox<{ typeNames: string[] }> = async (app, { typeNames }) => {
  const db = app.pg.pool

  // Not `idempotent`: a replayed reply would have to be stored, and this one holds the secret.
  app.post('/api/feeds', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Create a calendar feed: a secret address calendar applications subscribe to',
      description: 'A label and exactly one scope: resource_id (one resource), site_id (the resources at a site), type (every resource of a type) or "mine": true (the allocations the caller owns). The reply\'s url is the only time the secret is shown: the server keeps only its SHA-256. No scope or two: 400; an unknown type: 400; a resource_id or site_id that names nothing: 409 REFERENCE_NOT_FOUND.',
      body: FeedInput(typeNames),
      response: { 201: NewFeed(typeNames), ...errorResponses(...WRITE_ERRORS, { 409: ['REFERENCE_NOT_FOUND'] }) }
    }
  }, async (request, reply) => {
    const { label, ...given } = request.body
    const named = SCOPES.filter((name) => given[name] !== undefined && given[name] !== false)
    if (named.length !== 1) {
      throw new BadRequestError(named.length === 0
        ? 'body must name exactly one scope: resource_id, site_id, type or "mine": true'
        : `body names ${named.length} scopes (${named.join(', ')}); a feed has exactly one`)
    }
    const scope: FeedScope = { [named[0]!]: given[named[0]!] }
    const secret = generateFeedSecret()
    const feed = await createFeed(db, actorOf(request).id, label, hashToken(secret), scope)
    // no-store: the address is a credential, and must not stay in a proxy's or browser's cache.
    return reply.code(201).header('Cache-Control', 'no-store').send({ ...feed, url: feedPath(secret) })
  })

  app.get('/api/feeds', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'List calendar feeds: the caller\'s own (an admin: everyone\'s), oldest first',
      description: 'Never an address: it is shown once, when the feed is created. Revoked feeds only with include_revoked=true.',
      querystring: FeedListQuery,
      response: { 200: Type.Array(Feed(typeNames)), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    const { limit, offset, include_revoked: includeRevoked } = request.query
    return sendPage(request, reply, await listFeeds(db, actorOf(request), includeRevoked, { limit, offset }), { limit, offset })
  })

  app.delete('/api/feeds/:id', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Revoke a calendar feed (its owner, or an admin)',
      description: 'Final: from the next fetch on, its address answers 404. Revoking twice is still 204; another member\'s feed is 403.',
      params: FeedParams,
      response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 403, 404) }
    }
  }, async (request, reply) => {
    if (!await revokeFeed(db, request.params.id, actorOf(request))) throw new NotFoundError(`no calendar feed with id ${request.params.id}`)
    return reply.code(204).send(null)
  })

  // Public, outside /api: the auth hook asks nothing of it. HEAD comes with it.
  app.get('/feeds/:secret.ics', {
    schema: {
      tags,
      summary: 'A calendar feed, for calendar applications: no token, the address is the secret',
      description: `RFC 5545 text/calendar. Every live allocation of the feed's scope (confirmed, and holds as STATUS:TENTATIVE) and every cancelled one (STATUS:CANCELLED) overlapping [from, to), by default ${DEFAULT_DAYS_BACK} days back to ${DEFAULT_DAYS_AHEAD} days ahead (whole UTC days; at most ${MAX_CALENDAR_WINDOW_DAYS} days). UID is the allocation id. Asks to be fetched again every 15 minutes (REFRESH-INTERVAL, X-PUBLISHED-TTL). A strong ETag: If-None-Match with it is 304 without a body. A malformed, unknown or revoked address is 404. Other query parameters are ignored.`,
      security: [],
      params: FeedAddressParams,
      querystring: Type.Object({
        from: Type.Optional(Type.String({ format: 'date-time', description: `Start of the window (default: ${DEFAULT_DAYS_BACK} days before the start of today, UTC)` })),
        to: Type.Optional(Type.String({ format: 'date-time', description: `End of the window (default: ${DEFAULT_DAYS_AHEAD} days after the end of today, UTC); after from, at most ${MAX_CALENDAR_WINDOW_DAYS} days later` }))
      }),
      response: {
        200: { description: 'The calendar', content: { 'text/calendar': { schema: CalendarBody } } },
        304: NotModified,
        ...errorResponses(...READ_ERRORS, 404)
      }
    }
  }, async (request, reply) => {
    const { secret } = request.params
    const found = FEED_SECRET_FORMAT.test(secret) ? await findFeedBySecretHash(db, hashToken(secret)) : undefined
    if (!found || found.feed.revoked_at !== null || !tokenMatches(secret, found.secretHash)) throw new NotFoundError(NO_FEED)
    const { feed } = found

    const window = calendarWindow(request.query, defaultWindow(Date.now()))
    // The feed itself is found on the primary, so a revoked one stops at once; its entries may lag.
    const entries = await listFeedEntries(app.readDb(), feed, window.from, window.to)
    const body = writeICalendar({
      name: feed.label,
      ...window,
      events: entries.map((entry) => ({ ...entry, resource: { name: entry.resource_name, type: entry.resource_type }, site: entry.site_name })),
      refresh: FEED_REFRESH,
      resourceInSummary: feed.resource_id === undefined
    })

    const etag = entityTag(body)
    // no-cache: caches may keep it but must ask again each time (a 304 is cheap), so a
    // revoked feed stops on the very next fetch. noindex: it is nobody's public page.
    reply.header('ETag', etag).header('Last-Modified', lastModified(entries, feed))
      .header('Cache-Control', 'private, no-cache').header('X-Robots-Tag', 'noindex, nofollow')
    // Only If-None-Match: Last-Modified cannot see an event leave the feed (a hold running
    // out, a resource moving to another site), so If-Modified-Since is not trusted with a 304.
    if (noneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send(null)
    return reply
      .header('Content-Type', 'text/calendar; charset=utf-8')
      .header('Content-Disposition', `inline; filename="${feed.id}.ics"`)
      .send(body)
  })
}
