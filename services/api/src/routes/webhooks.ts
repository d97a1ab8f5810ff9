import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { urlNotAllowed } from '../database/outcomes.js'
import { createEndpoint, deleteEndpoint, getEndpoint, listAttempts, listEndpoints, rotateSecret, updateEndpoint } from '../database/webhooks.js'
import { actorOf } from '../plugins/auth.js'
import { NotFoundError } from '../plugins/errors.js'
import { errorResponses, NoContent, READ_ERRORS, WRITE_ERRORS } from '../schemas/common.js'
import {
  AttemptListQuery, NewWebhookEndpoint, WebhookAttempt, WebhookEndpoint, WebhookInput, WebhookListQuery, WebhookParams, WebhookPatch
} from '../schemas/webhooks.js'
import { generateWebhookSecret } from '../tokens.js'
import { sendPage } from './paging.js'

const tags = ['webhooks']

/** A URL refused whatever the address check says: credentials in it would be shown by GET and logged by receivers' proxies. */
function refuseCredentials (url: string): void {
  const parsed = new URL(url)
  if (parsed.username !== '' || parsed.password !== '') throw urlNotAllowed('it carries a user name or password; authenticate with the signature instead')
}

/** Admins register endpoints; every replica delivers the change feed to them (plugins/webhooks.ts). */
export const webhookRoutes: FastifyPluginAsyncTypebox<{ typeNames: string[] }> = async (app, { typeNames }) => {
  const db = app.pg.pool
  const endpoint = WebhookEndpoint(typeNames)
  const notFound = (id: string) => new NotFoundError(`no webhook with id ${id}`)
  const URL_REFUSED = { 400: ['URL_NOT_ALLOWED'] }
  const checkUrl = async (url: string) => {
    refuseCredentials(url)
    const refusal = await app.webhooks.refusal(url)
    if (refusal) throw urlNotAllowed(refusal)
  }

  // Not `idempotent`: a replayed reply would have to be stored, and this one holds the secret.
  app.post('/api/webhooks', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'Register a webhook endpoint: the change feed, POSTed to it as it happens',
      description: 'Events from now on (optionally only some types, or one resource type) are POSTed to url as JSON, exactly as GET /api/events gives each, signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature). At least once, in order per resource: an event counts as delivered on a 2xx; otherwise it is retried on the schedule (WEBHOOK_RETRY_SCHEDULE), and an endpoint that answers 410, or fails every attempt, is disabled. The reply holds the signing secret, shown this once. A url whose host is, or resolves to, a loopback, private, link-local, multicast or unspecified address is 400 URL_NOT_ALLOWED (unless WEBHOOK_ALLOWED_CIDRS allows it).',
      body: WebhookInput(typeNames),
      response: { 201: NewWebhookEndpoint(typeNames), ...errorResponses(...WRITE_ERRORS, URL_REFUSED, { 409: ['REFERENCE_NOT_FOUND'] }) }
    }
  }, async (request, reply) => {
    const { url, types, resource_type: resourceType, description } = request.body
    await checkUrl(url)
    const secret = generateWebhookSecret()
    const created = await createEndpoint(db, { url, types: types ?? null, resource_type: resourceType ?? null, description: description ?? null }, secret)
    app.webhooks.endpointsChanged()
    // no-store: the secret must not stay in a proxy's or browser's cache.
    return reply.code(201).header('Cache-Control', 'no-store').header('Location', `/api/webhooks/${created.id}`).send({ ...created, secret })
  })

  app.get('/api/webhooks', {
    config: { access: 'admin' },
    schema: { tags, summary: 'List webhook endpoints, oldest first (never their secrets)', querystring: WebhookListQuery, response: { 200: Type.Array(endpoint), ...errorResponses(...READ_ERRORS) } }
  }, async (request, reply) => {
    const { limit, offset } = request.query
    return sendPage(request, reply, await listEndpoints(db, { limit, offset }), { limit, offset })
  })

  app.get('/api/webhooks/:id', {
    config: { access: 'admin' },
    schema: { tags, summary: 'Get a webhook endpoint: its filters, and whether it is enabled (if not, why)', params: WebhookParams, response: { 200: endpoint, ...errorResponses(...READ_ERRORS, 404) } }
  }, async (request) => {
    return await getEndpoint(db, request.params.id) ?? Promise.reject(notFound(request.params.id))
  })

  app.patch('/api/webhooks/:id', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'Change a webhook endpoint: its url, types, description, or enabled',
      description: 'enabled: false stops deliveries; enabled: true resumes them where they stopped: what it still owes is tried again at once, with the whole retry schedule ahead. A new url is checked as at creation.',
      params: WebhookParams,
      body: WebhookPatch,
      response: { 200: endpoint, ...errorResponses(...WRITE_ERRORS, URL_REFUSED, 404) }
    }
  }, async (request) => {
    if (request.body.url !== undefined) await checkUrl(request.body.url)
    const disabledBy = `disabled by account ${actorOf(request).id} through the API`
    const updated = await updateEndpoint(db, request.params.id, request.body, disabledBy)
    if (!updated) throw notFound(request.params.id)
    app.webhooks.endpointsChanged()
    return updated
  })

  app.delete('/api/webhooks/:id', {
    config: { access: 'admin' },
    schema: { tags, summary: 'Delete a webhook endpoint and what it was still owed', params: WebhookParams, response: { 204: NoContent, ...errorResponses(...READ_ERRORS, 404) } }
  }, async (request, reply) => {
    if (!await deleteEndpoint(db, request.params.id)) throw notFound(request.params.id)
    app.webhooks.endpointsChanged()
    return reply.code(204).send(null)
  })

  app.post('/api/webhooks/:id/rotate-secret', {
    config: { access: 'admin', operationId: 'rotateWebhookSecret' },
    schema: {
      tags,
      summary: 'Give a webhook endpoint a new signing secret; the old one keeps signing for 24 hours',
      description: 'The reply holds the new secret, shown this once. Until previous_secret_expires_at, every delivery carries two signatures in webhook-signature (space-separated), one with each secret, so that the receiver can switch secrets at its own pace.',
      params: WebhookParams,
      response: { 200: NewWebhookEndpoint(typeNames), ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request, reply) => {
    const secret = generateWebhookSecret()
    const rotated = await rotateSecret(db, request.params.id, secret)
    if (!rotated) throw notFound(request.params.id)
    return reply.header('Cache-Control', 'no-store').send({ ...rotated, secret })
  })

  app.get('/api/webhooks/:id/deliveries', {
    config: { access: 'admin' },
    schema: {
      tags,
      summary: 'The delivery attempts to a webhook endpoint, newest first',
      description: 'Each attempt: the event, when, the status answered or what went wrong, how long it took, and when it is tried again.',
      params: WebhookParams,
      querystring: AttemptListQuery,
      response: { 200: Type.Array(WebhookAttempt), ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request, reply) => {
    const { limit, offset } = request.query
    if (!await getEndpoint(db, request.params.id)) throw notFound(request.params.id)
    return sendPage(request, reply, await listAttempts(db, request.params.id, { limit, offset }), { limit, offset })
  })
}
