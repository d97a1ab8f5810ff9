import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from '@sinclair/typebox'
import { cancelAllocation, createAllocation, getAllocation, listAllocations, patchAllocation, type Scope } from '../database/allocations.js'
import { getResource } from '../database/resources.js'
import { ForbiddenError, NotFoundError } from '../errors.js'
import { actorOf } from '../plugins/auth.js'
import type { Account } from '../schemas/accounts.js'
import {
  Allocation, AllocationConflictBody, AllocationInput, AllocationListQuery, AllocationParams, AllocationPatch,
  ResourceAllocationListQuery
} from '../schemas/allocations.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { assertWindow, sendPage } from './paging.js'

/**
 * 409 on a write that collides: the allocation conflict body also lists what overlaps.
 * 403: a member's write of maintenance, or to someone else's allocation.
 */
const writeErrors = { ...errorResponses(...WRITE_ERRORS, 403, 404), 409: AllocationConflictBody }

/** Maintenance blocks a resource for everyone: only admins create it or turn a booking into it. */
function assertMayUseKind (actor: Account, kind: string | undefined): void {
  if (kind === 'maintenance' && actor.role !== 'admin') {
    throw new ForbiddenError('only admins may create maintenance allocations; members book with kind booking')
  }
}

/**
 * The allocations of one resource: `base` is `/api/resources` or a per-type path such
 * as `/api/cars`; `type` is that family's type, which any resource in the path must have.
 */
export function registerResourceAllocationRoutes (app: FastifyInstance, base: string, type: string | undefined, tags: string[]): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>()
  const db = app.pg.pool
  const noun = type ?? 'resource'
  const ResourceParams = Type.Object({ id: Type.String({ format: 'uuid' }) })
  const ItemParams = Type.Object({ id: Type.String({ format: 'uuid' }), allocation_id: Type.String({ format: 'uuid' }) })
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
    assertWindow(filter.from, filter.to, 'from', 'to')
    const rows = await listAllocations(db, { ...filter, resource_id: request.params.id, type }, { limit, offset })
    if (rows.length === 0 && offset === 0 && !await getResource(db, request.params.id, type)) {
      throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    }
    return sendPage(request, reply, rows, { limit, offset })
  })

  api.post(`${base}/:id/allocations`, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: `Book a ${noun} (or, for admins, block it for maintenance)`,
      description: 'The caller owns the new allocation. 409 with code ALLOCATION_CONFLICT and the overlapping allocations when the slot is taken. Times are half-open [starts_at, ends_at). A member asking for kind maintenance gets 403.',
      params: ResourceParams,
      body: AllocationInput,
      response: { 201: Allocation, ...writeErrors }
    }
  }, async (request, reply) => {
    const { starts_at: startsAt, ends_at: endsAt, kind = 'booking', description = null, data = {} } = request.body
    const actor = actorOf(request)
    assertMayUseKind(actor, kind)
    const allocation = await createAllocation(db, request.params.id, type, { starts_at: startsAt, ends_at: endsAt, kind, description, data }, actor)
    if (!allocation) throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    const location = type ? itemPath(request.params.id, allocation.id) : `/api/allocations/${allocation.id}`
    return reply.code(201).header('Location', location).send(allocation)
  })

  registerAllocationItemRoutes(app, `${base}/:id/allocations/:allocation_id`, ItemParams,
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
      description: 'New times are checked by the same exclusion constraint as a new booking: 409 ALLOCATION_CONFLICT lists what overlaps. A cancelled allocation cannot be changed (409). A member changing someone else\'s allocation, or setting kind maintenance, gets 403.',
      params,
      body: AllocationPatch,
      response: { 200: Allocation, ...writeErrors }
    }
  }, async (request) => {
    const { id, scope } = locate(request.params as Record<string, string>)
    const actor = actorOf(request)
    assertMayUseKind(actor, request.body.kind)
    return await patchAllocation(db, id, scope, request.body, actor) ?? Promise.reject(notFound(id))
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
    if (!await cancelAllocation(db, id, scope, actorOf(request))) throw notFound(id)
    return reply.code(204).send(null)
  })
}

/** GET /api/allocations and /api/allocations/:id. */
export function registerAllocationRoutes (app: FastifyInstance, typeNames: string[]): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>()
  const db = app.pg.pool
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
    assertWindow(filter.from, filter.to, 'from', 'to')
    return sendPage(request, reply, await listAllocations(db, filter, { limit, offset }), { limit, offset })
  })

  registerAllocationItemRoutes(app, '/api/allocations/:id', AllocationParams, (params) => ({ id: params.id!, scope: {} }), tags)
}
