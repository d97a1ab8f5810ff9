import type { FastifyInstance } from 'fastify'
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from '@sinclair/typebox'
import {
  bookAnyFree, cancelAllocation, confirmAllocation, createAllocation, getAllocation, isEmptySpan, listAllocations, patchAllocation,
  type NewAllocation, type Scope
} from '../database/allocations.js'
import { listAllocationEvents } from '../database/history.js'
import { DomainError } from '../database/outcomes.js'
import { getResource } from '../database/resources.js'
import { RULE_CODES } from '../database/rules.js'
import { getSite } from '../database/sites.js'
import { actorOf } from '../plugins/auth.js'
import { BadRequestError, NotFoundError } from '../plugins/errors.js'
import { bookingRulesBind, mayChangeAllocation, refuseKind } from '../policy.js'
import {
  Allocation, AllocationConflictBody, AllocationInput, AllocationListQuery, AllocationParams, AllocationPatch,
  AllocationEvent, BookAnyInput, ConfirmInput, HistoryQuery, ResourceAllocationListQuery, ResourceAllocationParams
} from '../schemas/allocations.js'
import { errorResponses, NoContent, READ_ERRORS, withErrorCodes, WRITE_ERRORS } from '../schemas/common.js'
import { ResourceParams } from '../schemas/resources.js'
import { RuleViolationBody } from '../schemas/rules.js'
import type { Family } from './families.js'
import { sendPage } from './paging.js'
import { assertWindow } from './window.js'

/**
/**
 * 409 on a write that collides: the allocation conflict body also lists what overlaps;
 * a move also meets cancelled allocations and run-out holds.
 * 403: a member's write of maintenance, or to someone else's allocation. 422: a member's
 * booking breaks a booking rule (the body names it in `rule`).
 */
const ruleErrors = { 422: withErrorCodes(RuleViolationBody, Object.values(RULE_CODES)) }
const createErrors = {
  ...errorResponses(...WRITE_ERRORS, 403, 404),
  409: withErrorCodes(AllocationConflictBody, ['ALLOCATION_CONFLICT']),
  ...ruleErrors
}
const moveErrors = {
  ...errorResponses(...WRITE_ERRORS, 403, 404),
  409: withErrorCodes(AllocationConflictBody, ['ALLOCATION_CONFLICT', 'ALLOCATION_CANCELLED', 'HOLD_EXPIRED']),
  ...ruleErrors
}

/** status and hold_seconds go together: a hold must say how long it lasts, and only a hold may. */
function newAllocation (body: AllocationInput): NewAllocation {
  const { starts_at: startsAt, ends_at: endsAt, kind = 'booking', description = null, data = {}, status = 'confirmed', hold_seconds: holdSeconds } = body
  if (status === 'held' && holdSeconds === undefined) throw new BadRequestError('body/hold_seconds is required when status is held')
  if (status !== 'held' && holdSeconds !== undefined) throw new BadRequestError('body/hold_seconds is allowed only with status held')
  return { starts_at: startsAt, ends_at: endsAt, kind, description, data, status, hold_seconds: holdSeconds ?? null }
}

/**
 * The allocations of one resource of a family: under `/api/resources/:id` or a per-type
 * path such as `/api/cars/:id`, whose type any resource in the path must have.
 */
export const resourceAllocationRoutes: FastifyPluginAsyncTypebox<Family> = async (api, { base, type, tags }) => {
  const db = api.pg.pool
  const noun = type ?? 'resource'
  const itemPath = (resourceId: string, allocationId: string) => `${base}/${resourceId}/allocations/${allocationId}`

  api.get(`${base}/:id/allocations`, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: `List the allocations of a ${noun}, by start`,
      description: 'from/to keep only allocations overlapping that window; status defaults to confirmed.',
      params: ResourceParams,
      querystring: ResourceAllocationListQuery,
      response: { 200: Type.Array(Allocation), ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request, reply) => {
    const { limit, offset, ...filter } = request.query
    assertWindow(filter, 'from', 'to')
    const rows = await listAllocations(db, { ...filter, resource_id: request.params.id, type }, { limit, offset })
    if (rows.length === 0 && offset === 0 && !await getResource(db, request.params.id, type)) {
      throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    }
    return sendPage(request, reply, rows, { limit, offset })
  })

  api.post(`${base}/:id/allocations`, {
    config: { access: 'member', idempotent: true },
    schema: {
      tags,
      summary: `Book a ${noun} (or, for admins, block it for maintenance)`,
      description: 'The caller owns the new allocation. A member asking for kind maintenance gets 403. 409 with code ALLOCATION_CONFLICT and the allocations in the way when the slot is taken, buffers included (GET …/rules). 422 RULE_* when a member breaks a booking rule (length, notice, advance, open end); admins are exempt. Times are half-open [starts_at, ends_at). With status held and hold_seconds it is a hold: it blocks the slot until expires_at unless confirmed.',
      params: ResourceParams,
      body: AllocationInput,
      response: { 201: Allocation, ...createErrors }
    }
  }, async (request, reply) => {
    const actor = actorOf(request)
    refuseKind(actor, request.body.kind)
    const allocation = await createAllocation(request.db, request.params.id, type, newAllocation(request.body), actor, { rules: bookingRulesBind(actor) })
    if (!allocation) throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    const location = type ? itemPath(request.params.id, allocation.id) : `/api/allocations/${allocation.id}`
    return reply.code(201).header('Location', location).send(allocation)
  })

  registerAllocationItemRoutes(api, `${base}/:id/allocations/:allocation_id`, ResourceAllocationParams,
    (params) => ({ id: params.allocation_id!, scope: { resourceId: params.id!, type } }), tags)
}

/** GET, PATCH and DELETE of one allocation, at `path`, found through `locate`. */
function registerAllocationItemRoutes<P extends TSchema> (
  app: FastifyInstance, path: string, params: P,
  locate: (params: Record<string, string>) => { id: string, scope: Scope }, tags: string[]
): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>()
  const db = app.pg.pool
  const notFound = (id: string) => new NotFoundError(`no allocation with id ${id}`)

  api.get(path, {
    config: { access: 'member' },
    schema: { tags, summary: 'Get an allocation', params, response: { 200: Allocation, ...errorResponses(...READ_ERRORS, 404) } }
  }, async (request) => {
    const { id, scope } = locate(request.params as Record<string, string>)
    return await getAllocation(db, id, scope) ?? Promise.reject(notFound(id))
  })

  api.patch(path, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Change or move an allocation (members: their own)',
      description: 'New times are checked by the same exclusion constraint as a new booking, with the buffers in force now: 409 ALLOCATION_CONFLICT lists what is in the way. A member\'s new times are judged by the booking rules too (422 RULE_*; notice and advance only when the start moves). A cancelled allocation cannot be changed (409). A member changing someone else\'s allocation, or setting kind maintenance, gets 403.',
      params,
      body: AllocationPatch,
      response: { 200: Allocation, ...moveErrors }
    }
  }, async (request) => {
    const { id, scope } = locate(request.params as Record<string, string>)
    const actor = actorOf(request)
    refuseKind(actor, request.body.kind)
    return await patchAllocation(db, id, scope, request.body, actor, mayChangeAllocation(actor), { rules: bookingRulesBind(actor) }) ?? Promise.reject(notFound(id))
  })

  api.delete(path, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Cancel an allocation (members: their own)',
      description: 'The row stays as history with status cancelled and its slot is free again. Cancelling twice is still 204. A member cancelling someone else\'s allocation gets 403.',
      params,
      response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 403, 404) }
    }
  }, async (request, reply) => {
    const { id, scope } = locate(request.params as Record<string, string>)
    const actor = actorOf(request)
    if (!await cancelAllocation(db, id, scope, actor, mayChangeAllocation(actor))) throw notFound(id)
    return reply.code(204).send(null)
  })

  api.post(`${path}/confirm`, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'Confirm a hold (members: their own)',
      description: 'Turns a held allocation into a confirmed one (expires_at becomes null). 409 HOLD_EXPIRED once the hold has run out, ALREADY_CONFIRMED when it is confirmed, ALLOCATION_CANCELLED when it is cancelled. A member confirming someone else\'s hold gets 403. No body is needed.',
      params,
      body: ConfirmInput,
      response: { 200: Allocation, ...errorResponses(...WRITE_ERRORS, 403, 404, { 409: ['HOLD_EXPIRED', 'ALREADY_CONFIRMED', 'ALLOCATION_CANCELLED'] }) }
    },
    // Fastify validates an absent body as undefined, which no object schema accepts.
    preValidation: async (request) => { request.body ??= {} }
  }, async (request) => {
    const { id, scope } = locate(request.params as Record<string, string>)
    const actor = actorOf(request)
    return await confirmAllocation(db, id, scope, actor, mayChangeAllocation(actor)) ?? Promise.reject(notFound(id))
  })

  api.get(`${path}/history`, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'The history of an allocation, oldest first',
      description: 'Every insert, change, confirm, cancel and expiry, written by a database trigger, so changes made by hand in psql are here too. old and new are the row before and after (status as stored).',
      params,
      querystring: HistoryQuery,
      response: { 200: Type.Array(AllocationEvent), ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request, reply) => {
    const { id, scope } = locate(request.params as Record<string, string>)
    if (!await getAllocation(db, id, scope)) throw notFound(id)
    const { limit, offset } = request.query
    return sendPage(request, reply, await listAllocationEvents(db, id, { limit, offset }), { limit, offset })
  })
}

/** Allocations across resources: /api/allocations, book-any-free, and /api/allocations/:id. */
export const allocationRoutes: FastifyPluginAsyncTypebox<{ typeNames: string[] }> = async (api, { typeNames }) => {
  const tags = ['allocations']

  api.get('/api/allocations', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'List allocations across resources, by start',
      description: 'Filters combine; from/to keep only allocations overlapping that window; status defaults to confirmed (all for every status).',
      querystring: AllocationListQuery(typeNames),
      response: { 200: Type.Array(Allocation), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    const { limit, offset, ...filter } = request.query
    assertWindow(filter, 'from', 'to')
    return sendPage(request, reply, await listAllocations(api.readDb(), filter, { limit, offset }), { limit, offset })
  })

  api.post('/api/allocations', {
    config: { access: 'member', idempotent: true },
    schema: {
      tags,
      summary: 'Book any free resource of a type',
      description: 'Picks the first resource of the type (at site_id, when given), by name, with nothing blocking [starts_at, ends_at) (buffers included) and, for members, whose booking rules allow it, and books it in one step for the caller, who owns it. Under concurrent requests it moves on to the next candidate instead of failing. 409 NO_AVAILABILITY when none is free; 422 RULE_* when every resource\'s rules forbid a member\'s booking. A member asking for kind maintenance gets 403.',
      body: BookAnyInput(typeNames),
      response: { 201: Allocation, ...errorResponses(...WRITE_ERRORS, 403, { 409: ['NO_AVAILABILITY', 'REFERENCE_NOT_FOUND'] }), ...ruleErrors }
    }
  }, async (request, reply) => {
    const { type, site_id: siteId, ...fields } = request.body
    const actor = actorOf(request)
    refuseKind(actor, fields.kind)
    const allocation = await bookAnyFree(request.db, { type, site_id: siteId }, newAllocation(fields), actor, { rules: bookingRulesBind(actor) })
    if (!allocation) {
      // Only on refusal, explain bad input that found no candidate to be refused by: an
      // empty span, or a site that does not exist.
      if (await isEmptySpan(request.db, fields.starts_at, fields.ends_at)) throw new BadRequestError('body/starts_at must be before ends_at')
      if (siteId !== undefined && !await getSite(request.db, siteId)) {
        throw new DomainError('REFERENCE_NOT_FOUND', 'site_id does not name an existing site')
      }
      throw new DomainError('NO_AVAILABILITY', `no ${type}${siteId === undefined ? '' : ` at site ${siteId}`} is free for that whole time`)
    }
    return reply.code(201).header('Location', `/api/allocations/${allocation.id}`).send(allocation)
  })

  registerAllocationItemRoutes(api, '/api/allocations/:id', AllocationParams, (params) => ({ id: params.id!, scope: {} }), tags)
}
