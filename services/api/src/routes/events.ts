import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { feedState, listEvents, type EventFilter } from '../database/events.js'
import { cursorExpired } from '../database/outcomes.js'
import { BadRequestError } from '../plugins/errors.js'
import { errorResponses, READ_ERRORS } from '../schemas/common.js'
import { EVENT_TYPES, EventListQuery, FeedEvent, MAX_WAIT_SECONDS } from '../schemas/events.js'

/** A long-poll reads again at least this often, even if no notification says so (the listener may be down). */
const RECHECK_MS = 3000

const KNOWN_TYPES = new Set<string>(EVENT_TYPES)

function parseTypes (text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined
  const types = text.split(',').map((type) => type.trim())
  const unknown = types.find((type) => !KNOWN_TYPES.has(type))
  if (unknown !== undefined) {
    throw new BadRequestError(`querystring/type: "${unknown}" is not an event type; give one or more of ${EVENT_TYPES.join(', ')}, separated by commas`)
  }
  return types
}

/** GET /api/events: the change feed, paged by position, with long-polling. */
export const eventRoutes: FastifyPluginAsyncTypebox<{ typeNames: string[] }> = async (app, { typeNames }) => {
  const db = app.pg.pool

  app.get('/api/events', {
    config: { access: 'member' },
    schema: {
      tags: ['events'],
      summary: 'The change feed: every change to an allocation or a resource, in order, after a position',
      description: 'A JSON array ordered by position; page with after=<the last position you read>. Every committed change appears exactly once, and none that did not commit: a position is given once its change has committed, never below one given before, so paging by after never skips anything, whatever commits concurrently. A psql UPDATE appears like an API call. ' +
        `With nothing to return, wait=<seconds> (at most ${MAX_WAIT_SECONDS}) holds the request until an event arrives (long-polling), else answers []. ` +
        'A full page carries Link: <…after=<its last position>…>; rel="next". after older than what the feed keeps (EVENT_RETENTION_DAYS) is 410 CURSOR_EXPIRED: read the current state again, then continue from the position the message names. Any token may read it: members already read every allocation.',
      querystring: EventListQuery(typeNames),
      response: { 200: Type.Array(FeedEvent), ...errorResponses(...READ_ERRORS, { 410: ['CURSOR_EXPIRED'] }) }
    }
  }, async (request, reply) => {
    const { after, limit, type, resource_id: resourceId, resource_type: resourceType, wait } = request.query
    const filter: EventFilter = { types: parseTypes(type), resource_id: resourceId, resource_type: resourceType }
    const state = await feedState(db)
    if (after !== undefined && after < state.kept_from - 1) throw cursorExpired(after, state.kept_from)
    const from = after ?? state.kept_from - 1
    const deadline = Date.now() + wait * 1000
    let seen = state.last_position
    for (;;) {
      const events = await listEvents(db, from, filter, limit + 1)
      const left = deadline - Date.now()
      if (events.length > 0 || left <= 0 || app.feed.closing) {
        const page = events.slice(0, limit)
        if (events.length > limit) {
          const url = new URL(request.url, 'http://invsys.invalid')
          url.searchParams.set('after', String(page.at(-1)!.position))
          url.searchParams.set('limit', String(limit))
          reply.header('Link', `<${url.pathname}${url.search}>; rel="next"`)
        }
        // Serialised here, as webhooks serialise it: a webhook's body is byte for byte an item
        // of this array. A string is sent as it is (the schema documents it, and a test checks it).
        const body: unknown = `[${page.map((event) => JSON.stringify(event)).join(',')}]`
        return reply.type('application/json; charset=utf-8').send(body as FeedEvent[])
      }
      await app.feed.changedSince(seen, Math.min(left, RECHECK_MS))
      seen = Math.max(seen, app.feed.head)
    }
  })
}
