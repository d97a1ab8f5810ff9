import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { createContainer, deleteContainer, getContainer, listContainers, patchContainer } from '../database/containers.js'
import { getResource } from '../database/resources.js'
import { NotFoundError } from '../plugins/errors.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { Container, ContainerInput, ContainerListQuery, ContainerParams, ContainerPatch } from '../schemas/containers.js'
import { ResourceParams } from '../schemas/resources.js'
import { sendPage } from './paging.js'

const tags = ['containers']
const noFreezer = (id: string) => new NotFoundError(`no freezer with id ${id}`)
const noContainer = (id: string) => new NotFoundError(`no container with id ${id}`)

export const containerRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.pg.pool

  app.get('/api/freezers/:id/containers', {
    config: { access: 'member' },
    schema: {
      tags,
      summary: 'List the containers in a freezer',
      params: ResourceParams,
      querystring: ContainerListQuery,
      response: { 200: Type.Array(Container), ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request, reply) => {
    if (!await getResource(request.db, request.params.id, 'freezer')) throw noFreezer(request.params.id)
    const { limit, offset } = request.query
    return sendPage(request, reply, await listContainers(db, request.params.id, { limit, offset }), { limit, offset })
  })

  app.post('/api/freezers/:id/containers', {
    config: { access: 'admin', idempotent: true },
    schema: {
      tags,
      summary: 'Put a container in a freezer',
      params: ResourceParams,
      body: ContainerInput,
      response: { 201: Container, ...errorResponses(...WRITE_ERRORS, 404) }
    }
  }, async (request, reply) => {
    // The database refuses a non-freezer too; asking first turns that into the 404 the path deserves.
    if (!await getResource(request.db, request.params.id, 'freezer')) throw noFreezer(request.params.id)
    const container = await createContainer(request.db, request.params.id, request.body.description ?? null)
    return reply.code(201).header('Location', `/api/containers/${container.id}`).send(container)
  })

  app.get('/api/containers/:id', {
    config: { access: 'member' },
    schema: { tags, summary: 'Get a container', params: ContainerParams, response: { 200: Container, ...errorResponses(...READ_ERRORS, 404) } }
  }, async (request) => {
    return await getContainer(db, request.params.id) ?? Promise.reject(noContainer(request.params.id))
  })

  app.patch('/api/containers/:id', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'Describe a container or move it to another freezer',
      params: ContainerParams,
      body: ContainerPatch,
      response: { 200: Container, ...errorResponses(...WRITE_ERRORS, 404, { 409: ['REFERENCE_NOT_FOUND'] }) }
    }
  }, async (request) => {
    return await patchContainer(db, request.params.id, request.body) ?? Promise.reject(noContainer(request.params.id))
  })

  app.delete('/api/containers/:id', {
    config: { access: 'admin' },
    schema: { tags, summary: 'Delete a container', params: ContainerParams, response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 404) } }
  }, async (request, reply) => {
    if (!await deleteContainer(db, request.params.id)) throw noContainer(request.params.id)
    return reply.code(204).send(null)
  })
}
