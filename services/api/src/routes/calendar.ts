import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { listCalendarEntries } from '../database/calendar.js'
import { getResource } from '../database/resources.js'
import { BadRequestError, NotFoundError } from '../errors.js'
import { toICalendar } from '../ics.js'
import { CalendarBody, CalendarQuery, DEFAULT_DAYS_AHEAD, DEFAULT_DAYS_BACK, MAX_CALENDAR_WINDOW_DAYS } from '../schemas/calendar.js'
import { errorResponses, READ_ERRORS } from '../schemas/common.js'
import { ResourceParams } from '../schemas/resources.js'

const DAY_MS = 24 * 60 * 60 * 1000

/** GET <base>/:id/calendar.ics: `base` is /api/resources or a per-type path such as /api/cars. */
export function registerCalendarRoute (app: FastifyInstance, base: string, type: string | undefined, tags: string[]): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>()
  const db = app.pg.pool
  const noun = type ?? 'resource'

  api.get(`${base}/:id/calendar.ics`, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: `The allocations of a ${noun} as an iCalendar feed`,
      description: `RFC 5545 text/calendar with one event per confirmed allocation or live hold overlapping [from, to) (default: ${DEFAULT_DAYS_BACK} days ago to ${DEFAULT_DAYS_AHEAD} days ahead; at most ${MAX_CALENDAR_WINDOW_DAYS} days). An open start or end is shown cut off at the window, and the event's description says so.`,
      params: ResourceParams,
      querystring: CalendarQuery,
      response: {
        200: { description: 'The calendar', content: { 'text/calendar': { schema: CalendarBody } } },
        ...errorResponses(...READ_ERRORS, 404)
      }
    }
  }, async (request, reply) => {
    const now = Date.now()
    const from = Date.parse(request.query.from ?? new Date(now - DEFAULT_DAYS_BACK * DAY_MS).toISOString())
    const to = Date.parse(request.query.to ?? new Date(now + DEFAULT_DAYS_AHEAD * DAY_MS).toISOString())
    if (from >= to) throw new BadRequestError(`querystring/from must be before to (from defaults to ${DEFAULT_DAYS_BACK} days ago, to to ${DEFAULT_DAYS_AHEAD} days ahead)`)
    if (to - from > MAX_CALENDAR_WINDOW_DAYS * DAY_MS) throw new BadRequestError(`querystring/to must be at most ${MAX_CALENDAR_WINDOW_DAYS} days after from`)
    const resource = await getResource(db, request.params.id, type)
    if (!resource) throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    const window = { from: new Date(from).toISOString(), to: new Date(to).toISOString() }
    const entries = await listCalendarEntries(db, resource.id, window.from, window.to)
    return reply
      .header('Content-Type', 'text/calendar; charset=utf-8')
      .header('Content-Disposition', `inline; filename="${resource.id}.ics"`)
      .send(toICalendar({ resource, ...window, entries }))
  })
}
