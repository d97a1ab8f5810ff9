import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { getResourceRules, getTypeRules, putResourceRules, putTypeRules } from '../database/rules.js'
import { BadRequestError, HttpError, NotFoundError } from '../plugins/errors.js'
import { errorResponses, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { ResourceParams } from '../schemas/resources.js'
import {
  MAX_RULE_YEARS, RULE_DURATION_FIELDS, ResourceRules, ResourceRulesInput, TypeParams, TypeRules, TypeRulesInput,
  WEEKDAYS, type OpeningHoursInput
} from '../schemas/rules.js'
import type { Family } from './families.js'

const ISO_PARTS = /^P(?:([\d.]+)Y)?(?:([\d.]+)M)?(?:([\d.]+)W)?(?:([\d.]+)D)?(?:T(?:([\d.]+)H)?(?:([\d.]+)M)?(?:([\d.]+)S)?)?$/
// Seconds per designator, months and years averaged: only for the upper bound below.
const SECONDS = [365.25 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1]
const MAX_SECONDS = MAX_RULE_YEARS * SECONDS[0]!

/** Seconds in an ISO 8601 duration the schema has checked, months and years averaged. */
function secondsOf (duration: string): number {
  const parts = ISO_PARTS.exec(duration)?.slice(1) ?? []
  return parts.reduce((sum, part, i) => sum + Number(part ?? 0) * SECONDS[i]!, 0)
}

/**
 * The schema has checked the spelling; this bounds the length, so that no rule can
 * overflow PostgreSQL's interval (or a time it is added to) and be reported without the
 * field's name.
 */
function assertRuleDurations (body: TypeRulesInput): void {
  const durations: Array<[string, unknown]> = [
    ...RULE_DURATION_FIELDS.map((field) => [field, body[field]] as [string, unknown]),
    ...(body.quotas ?? []).map((quota, i) => [`quotas/${i}/max_duration`, quota.max_duration] as [string, unknown])
  ]
  for (const [field, value] of durations) {
    if (typeof value === 'string' && !(secondsOf(value) <= MAX_SECONDS)) throw new BadRequestError(`body/${field} must be at most P${MAX_RULE_YEARS}Y`)
  }
}

const invalid = (message: string) => new HttpError('VALIDATION_ERROR', message)

const DAY_MICROSECONDS = 86_400_000_000

/**
 * A grid is a step that divides a day evenly, counted from each local midnight, or one
 * day (P1D: local days, 23 or 25 hours when the clocks change). A longer grid would need
 * a day to count from, which the rules do not give. (The database checks the same:
 * slot_grid_valid; this names the field and says why.)
 */
function assertSlotGrid (grid: string | null | undefined): void {
  if (typeof grid !== 'string') return
  const tooLong = invalid(`body/slot_grid must be at most a day: a step that divides a day evenly (PT15M, PT1H, PT90M) or P1D, not ${grid}`)
  const [years, months, weeks] = ISO_PARTS.exec(grid)?.slice(1) ?? []
  if ([years, months, weeks].some((part) => Number(part ?? 0) > 0)) throw tooLong
  const microseconds = Math.round(secondsOf(grid) * 1_000_000)
  if (microseconds <= 0) throw invalid('body/slot_grid must be longer than zero')
  if (microseconds > DAY_MICROSECONDS) throw tooLong
  if (DAY_MICROSECONDS % microseconds !== 0) throw invalid(`body/slot_grid must divide a day evenly (PT15M, PT20M, PT1H, PT90M, …): ${grid} does not`)
}

/** "8:00", "08:00:00" → "08:00"; minutes since midnight alongside. */
function timeOfDay (text: string): { text: string, minutes: number } {
  const [hours, minutes] = text.split(':').map(Number) as [number, number]
  return { text: `${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}`, minutes: hours * 60 + minutes }
}

/**
 * Opening hours with times written HH:MM, each day's intervals by start; 400 naming the
 * interval that ends before it starts or overlaps another of its day (touching is fine).
 */
function normaliseOpeningHours (hours: OpeningHoursInput | null | undefined): OpeningHoursInput | null | undefined {
  if (!hours) return hours
  const normalised: OpeningHoursInput = {}
  for (const day of WEEKDAYS) {
    const intervals = hours[day]
    if (intervals === undefined) continue
    const read = intervals.map((interval, i) => {
      const [start, end] = interval.map(timeOfDay) as [ReturnType<typeof timeOfDay>, ReturnType<typeof timeOfDay>]
      if (end.minutes <= start.minutes) throw invalid(`body/opening_hours/${day}/${i} must end after it starts (${start.text} to ${end.text})`)
      return { i, start, end }
    }).sort((a, b) => a.start.minutes - b.start.minutes)
    for (const [k, interval] of read.entries()) {
      const before = read[k - 1]
      if (before && interval.start.minutes < before.end.minutes) {
        throw invalid(`body/opening_hours/${day}/${interval.i} overlaps body/opening_hours/${day}/${before.i} ` +
          `(${interval.start.text} to ${interval.end.text} and ${before.start.text} to ${before.end.text}); intervals may touch, not overlap`)
      }
    }
    normalised[day] = read.map(({ start, end }) => [start.text, end.text])
  }
  return normalised
}

/** Each quota limits something. */
function assertQuotas (quotas: TypeRulesInput['quotas']): void {
  for (const [i, quota] of (quotas ?? []).entries()) {
    if ((quota.max_duration ?? null) === null && (quota.max_bookings ?? null) === null) {
      throw invalid(`body/quotas/${i} must set max_duration, max_bookings or both`)
    }
  }
}

/**
 * The body as stored: durations bounded, the calendar rules checked and written one way.
 * The time zone is checked by PostgreSQL itself (the zones it knows are the zones it can
 * read): an unknown one is 400 naming time_zone.
 */
function checkedRules<T extends TypeRulesInput> (body: T): T {
  assertRuleDurations(body)
  assertSlotGrid(body.slot_grid)
  assertQuotas(body.quotas)
  return { ...body, opening_hours: normaliseOpeningHours(body.opening_hours) }
}

const CHANGES = 'Changing a rule never touches existing allocations: each keeps its times and the buffers it was booked with, whatever the new opening hours, grid or quotas.'

/** GET and PUT /api/resource-types/:type/rules. */
export const resourceTypeRuleRoutes: FastifyPluginAsyncTypebox = async (api) => {
  const db = api.pg.pool
  const tags = ['resource types']
  const notFound = (type: string) => new NotFoundError(`no resource type ${type}`)

  api.get('/api/resource-types/:type/rules', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'The booking rules of a resource type',
      description: 'What every resource of the type follows unless it overrides a field (GET /api/resources/:id/rules shows the result). null: no rule. A type nobody has set rules for has none.',
      params: TypeParams,
      response: { 200: TypeRules, ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request) => {
    return await getTypeRules(db, request.params.type) ?? Promise.reject(notFound(request.params.type))
  })

  api.put('/api/resource-types/:type/rules', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'Set the booking rules of a resource type',
      description: `Replaces them whole: a field left out or null is no rule. Buffers bind everyone (the database refuses allocations closer than them); the other rules bind members (422 RULE_*). ${CHANGES}`,
      params: TypeParams,
      body: TypeRulesInput,
      response: { 200: TypeRules, ...errorResponses(...WRITE_ERRORS, 404) }
    }
  }, async (request) => {
    return await putTypeRules(db, request.params.type, checkedRules(request.body)) ?? Promise.reject(notFound(request.params.type))
  })
}

/** GET and PUT <base>/:id/rules: `base` is /api/resources or a per-type path such as /api/lorries. */
export const resourceRuleRoutes: FastifyPluginAsyncTypebox<Family> = async (api, { base, type, tags }) => {
  const db = api.pg.pool
  const noun = type ?? 'resource'
  const notFound = (id: string) => new NotFoundError(`no ${noun} with id ${id}`)

  api.get(`${base}/:id/rules`, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: `The booking rules in force for a ${noun}, and where each comes from`,
      description: 'Each field is the resource\'s own where it sets one, else its type\'s (null: no rule); sources says which, per field (resource, type or none).',
      params: ResourceParams,
      response: { 200: ResourceRules, ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request) => {
    return await getResourceRules(db, request.params.id, type) ?? Promise.reject(notFound(request.params.id))
  })

  api.put(`${base}/:id/rules`, {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: `Set the booking rules of one ${noun}, overriding its type's`,
      description: `Replaces the ${noun}'s overrides whole: a field left out or null inherits the type's. Answers with the rules now in force, as GET does. ${CHANGES}`,
      params: ResourceParams,
      body: ResourceRulesInput,
      response: { 200: ResourceRules, ...errorResponses(...WRITE_ERRORS, 404) }
    }
  }, async (request) => {
    return await putResourceRules(db, request.params.id, type, checkedRules(request.body)) ?? Promise.reject(notFound(request.params.id))
  })
}
