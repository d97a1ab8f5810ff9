import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { createSite, deleteSite, getSite, listSites, patchSite, upsertSite } from '../database/sites.js'
import { NotFoundError } from '../plugins/errors.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import { Site, SiteInput, SiteListQuery, SiteParams, SitePatch } from '../schemas/sites.js'
import { sendPage } from './paging.js'

const tags = ['sites']
const notFound = (id: number) => new NotFoundError(`no site with id ${id}`)

export const siteRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.pg.pool

  app.get('/api/sites', {
    config: { access: 'member' },
    schema: { tags, summary: 'List sites, by id', querystring: SiteListQuery, response: { 200: Type.Array(Site), ...errorResponses(...READ_ERRORS) } }
  }, async (request, reply) => {
    const { limit, offset } = request.query
    return sendPage(request, reply, await listSites(db, request.query, { limit, offset }), { limit, offset })
  })

  app.post('/api/sites', {
    config: { access: 'admin', idempotent: true },
    schema: { tags, summary: 'Create a site', body: SiteInput, response: { 201: Site, ...errorResponses(...WRITE_ERRORS) } }
  }, async (request, reply) => {
    const site = await createSite(request.db, request.body)
    return reply.code(201).header('Location', `/api/sites/${site.id}`).send(site)
  })

  app.get('/api/sites/:id', {
    config: { access: 'member' },
    schema: { tags, summary: 'Get a site', params: SiteParams, response: { 200: Site, ...errorResponses(...READ_ERRORS, 404) } }
  }, async (request) => {
    return await getSite(db, request.params.id) ?? Promise.reject(notFound(request.params.id))
  })

  app.put('/api/sites/:id', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'Create or replace the site with this id',
      description: '201 when it created the site, 200 when it replaced it. Later POSTs never reuse the id.',
      params: SiteParams,
      body: SiteInput,
      response: { 200: Site, 201: Site, ...errorResponses(...WRITE_ERRORS) }
    }
  }, async (request, reply) => {
    const { site, created } = await upsertSite(db, request.params.id, request.body)
    if (created) reply.code(201).header('Location', `/api/sites/${site.id}`)
    return site
  })

  app.patch('/api/sites/:id', {
    config: { access: 'admin' },
    schema: { tags, summary: 'Change some fields of a site', params: SiteParams, body: SitePatch, response: { 200: Site, ...errorResponses(...WRITE_ERRORS, 404) } }
  }, async (request) => {
    return await patchSite(db, request.params.id, request.body) ?? Promise.reject(notFound(request.params.id))
  })

  app.delete('/api/sites/:id', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'Delete a site',
      description: '409 while resources are kept at the site.',
      params: SiteParams,
      response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 404, { 409: ['IN_USE'] }) }
    }
  }, async (request, reply) => {
    if (!await deleteSite(db, request.params.id)) throw notFound(request.params.id)
    return reply.code(204).send(null)
  })
}
