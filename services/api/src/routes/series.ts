import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { cancelSeries, createSeries, getSeries } from '../database/series.js'
import { actorOf } from '../plugins/auth.js'
import { HttpError, NotFoundError } from '../plugins/errors.js'
import { bookingRulesBind, mayChangeAllocation, mayChangeSeries, refuseKind } from '../policy.js'
import { MAX_OCCURRENCES, MAX_YEARS, planSeries, RecurrenceError, type SeriesPlan } from '../recurrence.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { ResourceParams } from '../schemas/resources.js'
import { RuleViolationBody } from '../schemas/rules.js'
import { Series, SeriesCancelQuery, SeriesConflictBody, SeriesInput, SeriesParams } from '../schemas/series.js'
import type { Family } from './families.js'

/** The occurrences of a request, or 400 naming the field and the limit it breaks. */
function plan (body: SeriesInput): SeriesPlan {
  try {
    return planSeries(body)
  } catch (error) {
    if (error instanceof RecurrenceError) throw new HttpError('VALIDATION_ERROR', error.message)
    throw error
  }
}

/** POST <base>/:id/series: `base` is /api/resources or a per-type path such as /api/cars. */
export const resourceSeriesRoutes: FastifyPluginAsyncTypebox<Family> = async (api, { base, type, tags }) => {
  const noun = type ?? 'resource'

  api.post(`${base}/:id/series`, {
    config: { access: 'member', idempotent: true },
    schema: {
      tags,
      summary: `Book a ${noun} on a recurring rule (a weekly slot for a term, in one request)`,
      description: `The first occurrence is starts_at/ends_at; the rule (RFC 5545: FREQ DAILY, WEEKLY or MONTHLY, INTERVAL, BYDAY, BYMONTHDAY, and COUNT or UNTIL) gives the later ones, which keep the same local wall-clock time in time_zone across daylight-saving changes and last exactly as long. At most ${MAX_OCCURRENCES} occurrences within ${MAX_YEARS} years (400 otherwise, naming the limit). mode all_or_nothing (default) books every occurrence in one transaction or none: 409 SERIES_CONFLICT lists each colliding occurrence with the allocations in its way. mode skip_conflicts books the free ones and lists the others in skipped. Buffers and the booking rules apply to each occurrence as to a single booking: for a member, an occurrence a rule forbids is 422 RULE_* in all_or_nothing and skipped (reason rule) in skip_conflicts. Each occurrence is an allocation carrying series_id, owned by the caller. Members book kind booking only (403 for maintenance).`,
      params: ResourceParams,
      body: SeriesInput,
      response: { 201: Series, ...errorResponses(...WRITE_ERRORS, 403, 404), 409: SeriesConflictBody, 422: RuleViolationBody }
    }
  }, async (request, reply) => {
    const actor = actorOf(request)
    const { mode = 'all_or_nothing', kind = 'booking', description = null, data = {}, rrule } = request.body
    refuseKind(actor, kind)
    const { timeZone, occurrences } = plan(request.body)
    const series = await createSeries(request.db, request.params.id, type, {
      rrule: rrule.trim().replace(/^rrule:/i, ''), time_zone: timeZone, mode, kind, description, data, occurrences
    }, actor, { rules: bookingRulesBind(actor) })
    if (!series) throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    return reply.code(201).header('Location', `/api/series/${series.id}`).send(series)
  })
}

/** GET and DELETE /api/series/:id. */
export const seriesRoutes: FastifyPluginAsyncTypebox = async (api) => {
  const db = api.pg.pool
  const tags = ['series']
  const notFound = (id: string) => new NotFoundError(`no series with id ${id}`)

  api.get('/api/series/:id', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Get a recurring series with its occurrences',
      description: 'Every occurrence booked (cancelled ones included, by start, status as of now) and what skip_conflicts skipped at creation.',
      params: SeriesParams,
      response: { 200: Series, ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request) => {
    return await getSeries(db, request.params.id) ?? Promise.reject(notFound(request.params.id))
  })

  api.delete('/api/series/:id', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Cancel a recurring series from now, or from a time (members: their own)',
      description: 'Cancels the occurrences that have not started (past ones stay as they are); with from, those starting at or after that time. Cancelled occurrences stay as history with status cancelled and free their slots. Cancelling again is still 204. A member cancelling someone else\'s series gets 403.',
      params: SeriesParams,
      querystring: SeriesCancelQuery,
      response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 403, 404) }
    }
  }, async (request, reply) => {
    const actor = actorOf(request)
    if (!await cancelSeries(db, request.params.id, request.query.from, actor, mayChangeSeries(actor), mayChangeAllocation(actor))) {
      throw notFound(request.params.id)
    }
    return reply.code(204).send(null)
  })
}
