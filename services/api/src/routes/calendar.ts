import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { listCalendarEntries } from '../database/calendar.js'
import { getResource } from '../database/resources.js'
import { NotFoundError } from '../plugins/errors.js'
import { toICalendar } from '../ics.js'
import { CalendarBody, CalendarQuery, DEFAULT_DAYS_AHEAD, DEFAULT_DAYS_BACK, MAX_CALENDAR_WINDOW_DAYS } from '../schemas/calendar.js'
import { errorResponses, READ_ERRORS } from '../schemas/common.js'
import { ResourceParams } from '../schemas/resources.js'
import type { Family } from './families.js'
import { calendarWindow, DAY_MS } from './window.js'

/** GET <base>/:id/calendar.ics: `base` is /api/resources or a per-type path such as /api/cars. */
export const calendarRoutes: FastifyPluginAsyncTypebox<Family> = async (api, { base, type, tags }) => {
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
    const window = calendarWindow(request.query, {
      from: new Date(now - DEFAULT_DAYS_BACK * DAY_MS).toISOString(),
      to: new Date(now + DEFAULT_DAYS_AHEAD * DAY_MS).toISOString()
    })
    const db = api.readDb()
    const resource = await getResource(db, request.params.id, type)
    if (!resource) throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    const entries = await listCalendarEntries(db, resource.id, window.from, window.to)
    return reply
      .header('Content-Type', 'text/calendar; charset=utf-8')
      .header('Content-Disposition', `inline; filename="${resource.id}.ics"`)
      .send(toICalendar({ resource, ...window, entries }))
  })
}
