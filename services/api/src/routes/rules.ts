import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { getResourceRules, getTypeRules, putResourceRules, putTypeRules } from '../database/rules.js'
import { BadRequestError, NotFoundError } from '../plugins/errors.js'
import { errorResponses, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { ResourceParams } from '../schemas/resources.js'
import {
  MAX_RULE_YEARS, RULE_DURATION_FIELDS, ResourceRules, ResourceRulesInput, TypeParams, TypeRules, TypeRulesInput
} from '../schemas/rules.js'
import type { Family } from './families.js'

const ISO_PARTS = /^P(?:([\d.]+)Y)?(?:([\d.]+)M)?(?:([\d.]+)W)?(?:([\d.]+)D)?(?:T(?:([\d.]+)H)?(?:([\d.]+)M)?(?:([\d.]+)S)?)?$/
// Seconds per designator, months and years averaged: only for the upper bound below.
const SECONDS = [365.25 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1]
const MAX_SECONDS = MAX_RULE_YEARS * SECONDS[0]!

/**
 * The schema has checked the spelling; this bounds the length, so that no rule can
 * overflow PostgreSQL's interval (or a time it is added to) and be reported without the
 * field's name.
 */
function assertRuleDurations (body: Record<string, unknown>): void {
  for (const field of RULE_DURATION_FIELDS) {
    const value = body[field]
    if (typeof value !== 'string') continue
    const parts = ISO_PARTS.exec(value)?.slice(1) ?? []
    const seconds = parts.reduce((sum, part, i) => sum + Number(part ?? 0) * SECONDS[i]!, 0)
    if (!(seconds <= MAX_SECONDS)) throw new BadRequestError(`body/${field} must be at most P${MAX_RULE_YEARS}Y`)
  }
}

const CHANGES = 'Changing a rule never rewrites existing allocations: each keeps the buffers it was booked with.'

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
    assertRuleDurations(request.body)
    return await putTypeRules(db, request.params.type, request.body) ?? Promise.reject(notFound(request.params.type))
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
    assertRuleDurations(request.body)
    return await putResourceRules(db, request.params.id, type, request.body) ?? Promise.reject(notFound(request.params.id))
  })
}
