import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { listResourceTypes } from '../database/resource-types.js'
import { createResource, getResource, listInstruments, listResources, patchResource, removeResource, upsertResource } from '../database/resources.js'
import { NotFoundError } from '../plugins/errors.js'
import { actorOf } from '../plugins/auth.js'
import { bookingRulesBind } from '../policy.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import {
  DeleteResourceQuery, Instrument, InstrumentListQuery, Resource, ResourceInput, ResourceListQuery, ResourceParams,
  ResourcePatch, ResourceType, ResourceTypeListQuery, TypedResourceInput, TypedResourceListQuery, TypedResourcePatch
} from '../schemas/resources.js'
import type { Family } from './families.js'
import { sendPage } from './paging.js'
import { assertWindow } from './window.js'

/** A name or MAC that is taken, or a site_id that names no site. */
const NAME_CONFLICTS = { 409: ['DUPLICATE', 'REFERENCE_NOT_FOUND'] }

/**
 * The resources of one family. The generic family takes `type` in bodies and filters;
 * a per-type family fixes it, and treats a resource of another type as absent.
 */
export const resourceRoutes: FastifyPluginAsyncTypebox<Family> = async (api, family) => {
  const db = api.pg.pool
  const { base, type, tags, typeNames } = family
  const noun = type ?? 'resource'
  const notFound = (id: string) => new NotFoundError(`no ${noun} with id ${id}`)
  // Per-type bodies have no type property: the path says it.
  const input = type ? TypedResourceInput : ResourceInput(typeNames)
  const patch = type ? TypedResourcePatch : ResourcePatch(typeNames)
  const listQuery = type ? TypedResourceListQuery : ResourceListQuery(typeNames)
  const withType = <T extends object>(body: T) => ({ type: type as string, ...body })

  api.get(base, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: `List ${type ? family.base.slice(5) : 'resources'}`,
      description: 'available_from/available_to keep only resources where that window could be booked: no live allocation in the way, buffers included (either side may be left open). For a member, the booking rules must allow it too: a given end must be on the slot grid and open (the instant after available_from, the one before available_to); a given available_from is judged by min_notice and max_advance; a window with both ends also by min_duration, max_duration, the opening hours and the member\'s quotas.',
      querystring: listQuery,
      response: { 200: Type.Array(Resource), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    const { limit, offset, ...filter } = request.query as { limit: number, offset: number, type?: string, site_id?: number, available_from?: string, available_to?: string }
    assertWindow(filter, 'available_from', 'available_to')
    // A search for free resources reads a replica; a plain list reads the primary, so that it shows what the caller just created.
    const searching = filter.available_from !== undefined || filter.available_to !== undefined
    const actor = actorOf(request)
    const rows = await listResources(searching ? api.readDb() : db, { ...filter, type: type ?? filter.type }, { limit, offset },
      { rules: bookingRulesBind(actor), actor: actor.id })
    return sendPage(request, reply, rows, { limit, offset })
  })

  api.post(base, {
    config: { access: 'admin', idempotent: true },
    schema: { tags, summary: `Create a ${noun}`, body: input, response: { 201: Resource, ...errorResponses(...WRITE_ERRORS, NAME_CONFLICTS) } }
  }, async (request, reply) => {
    const resource = await createResource(request.db, withType(request.body as ResourceInput), actorOf(request).id)
    return reply.code(201).header('Location', `${base}/${resource.id}`).send(resource)
  })

  api.get(`${base}/:id`, {
    config: { access: 'member' },
    schema: { tags, summary: `Get a ${noun}`, params: ResourceParams, response: { 200: Resource, ...errorResponses(...READ_ERRORS, 404) } }
  }, async (request) => {
    return await getResource(db, request.params.id, type) ?? Promise.reject(notFound(request.params.id))
  })

  api.put(`${base}/:id`, {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: `Create or replace the ${noun} with this id`,
      description: `201 when it created the ${noun} with the client-chosen uuid, 200 when it replaced it.` +
        (type ? ' 404 when the id belongs to a resource of another type.' : ''),
      params: ResourceParams,
      body: input,
      response: { 200: Resource, 201: Resource, ...errorResponses(...WRITE_ERRORS, NAME_CONFLICTS, ...(type ? [404] : [])) }
    }
  }, async (request, reply) => {
    const result = await upsertResource(db, request.params.id, withType(request.body as ResourceInput), type !== undefined, actorOf(request).id)
    if (!result) throw notFound(request.params.id)
    if (result.created) reply.code(201).header('Location', `${base}/${result.resource.id}`)
    return result.resource
  })

  api.patch(`${base}/:id`, {
    config: { access: 'admin' },
    schema: { tags, summary: `Change some fields of a ${noun}`, params: ResourceParams, body: patch, response: { 200: Resource, ...errorResponses(...WRITE_ERRORS, 404, NAME_CONFLICTS) } }
  }, async (request) => {
    return await patchResource(db, request.params.id, type, request.body, actorOf(request).id) ?? Promise.reject(notFound(request.params.id))
  })

  api.delete(`${base}/:id`, {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: `Delete a ${noun}`,
      description: '409 while it has allocations that have not ended (or, for a freezer, containers), unless ?force=true, which deletes those with it. Past allocations always go with it.',
      params: ResourceParams,
      querystring: DeleteResourceQuery,
      response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 404, { 409: ['IN_USE'] }) }
    }
  }, async (request, reply) => {
    if (!await removeResource(db, request.params.id, type, request.query.force ?? false, actorOf(request).id)) throw notFound(request.params.id)
    return reply.code(204).send(null)
  })
}

/** The resource types (changed only through SQL). */
export const resourceTypeRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.pg.pool

  app.get('/api/resource-types', {
    config: { access: 'member' },
    schema: {
      tags: ['resource types'],
      summary: 'List resource types (changed only through SQL)',
      querystring: ResourceTypeListQuery,
      response: { 200: Type.Array(ResourceType), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    const { limit, offset } = request.query
    return sendPage(request, reply, await listResourceTypes(db, { limit, offset }), { limit, offset })
  })
}

/** Instrument-category resources with their site's name (the instrument view). */
export const instrumentRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.pg.pool

  app.get('/api/instruments', {
    config: { access: 'member' },
    schema: {
      tags: ['instruments'],
      summary: 'List instruments with their site name (the instrument view)',
      querystring: InstrumentListQuery,
      response: { 200: Type.Array(Instrument), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    const { limit, offset, site_id: siteId } = request.query
    return sendPage(request, reply, await listInstruments(db, siteId, { limit, offset }), { limit, offset })
  })
}
