import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import { errorHandling, sendClientError, sendFrameworkError } from './plugins/errors.js'
import { changeFeed } from './plugins/events.js'
import { auth, BEARER_SCHEME } from './plugins/auth.js'
import { database } from './plugins/database.js'
import { idempotency } from './plugins/idempotency.js'
import { jsonBodies, loadShedding } from './plugins/limits.js'
import { metrics } from './plugins/metrics.js'
import { notifications } from './plugins/notifications.js'
import { openapiDocumenter } from './plugins/openapi.js'
import { webhooks } from './plugins/webhooks.js'
import type { Resolver } from './outbound.js'
import { scrubSecrets, serializeRequest } from './logging.js'
import { accountRoutes } from './routes/accounts.js'
import { allocationRoutes, resourceAllocationRoutes } from './routes/allocations.js'
import { freeTimeRoutes, slotRoutes } from './routes/availability.js'
import { calendarRoutes } from './routes/calendar.js'
import { containerRoutes } from './routes/containers.js'
import { eventRoutes } from './routes/events.js'
import { feedRoutes } from './routes/feeds.js'
import { resourceFamilies } from './routes/families.js'
import { healthRoutes } from './routes/health.js'
import { instrumentRoutes, resourceRoutes, resourceTypeRoutes } from './routes/resources.js'
import { resourceRuleRoutes, resourceTypeRuleRoutes } from './routes/rules.js'
import { resourceSeriesRoutes, seriesRoutes } from './routes/series.js'
import { siteRoutes } from './routes/sites.js'
import { webhookRoutes } from './routes/webhooks.js'
import { redactFeedUrlsInText } from './tokens.js'
import { createValidatorCompiler, formatValidationError } from './validation.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

// A client's (or nginx's) request id is kept when it is short and plain, so it can be
// followed across logs; anything else is replaced rather than written into the logs.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

function requestId (request: IncomingMessage): string {
  const given = request.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/**
 * What holds for every route, said once: the OpenAPI document's description, which Swagger
 * UI shows at /docs and the generated reference (docs/api.md) opens with.
 */
const API_CONVENTIONS = `Bookable resources at sites, and their allocations in time. PostgreSQL refuses overlapping allocations itself \
(an exclusion constraint on tstzrange), so nothing is ever double-booked, whatever the concurrency.

- **JSON in and out**, under \`/api\`. Bodies are \`Content-Type: application/json\` (anything else: 415). Unknown properties in a \
body and unknown query parameters are refused with 400, never ignored.
- **Tokens.** Every \`/api\` route needs \`Authorization: Bearer <token>\` (the Authorize button). Members read everything, book, \
and change only their own bookings; admins do everything. \`/health\`, \`/ready\`, \`/docs\` and the calendar feeds' secret \
addresses (\`/feeds/<secret>.ics\`) are public.
- **Times** are RFC 3339 date-times with an offset (\`Z\` or \`±hh:mm\`); one without an offset is refused (it is ambiguous). \
Replies give UTC with \`Z\`.
- **Allocations are half-open**, \`[starts_at, ends_at)\`: back-to-back bookings do not overlap. \`starts_at: null\` is from the \
beginning of time, \`ends_at: null\` until further notice; both are given when creating one, so an open end is said out loud.
- **Statuses.** 200 read or changed (the reply is the thing as stored now); 201 created, with a \`Location\` header (also a \
\`PUT\` that created); 204 deleted, cancelled or revoked; 400 invalid input, the message names the field; 401 no usable token; \
403 the role, or the owner of the thing, does not allow it; 404 no such thing (under \`/api/<plural>\`, also a resource of another \
type); 409 a conflict (an overlapping allocation, with \`conflicts\`; a duplicate; a thing still in use); 413 body too large; 415 \
not JSON; 422 a booking rule refused a member, or an \`Idempotency-Key\` reused with another body; 503 the database cannot be \
reached, with \`Retry-After\`. No input ever produces a 500.
- **Errors** are JSON \`{statusCode, code, error, message, hint}\`, never an HTML page or a stack trace: branch on \`code\`. A \
failed request changes nothing stored.
- **Collections** are JSON arrays in a stable order; \`limit\` (1 to 1000, default 100) and \`offset\` page them, and when \
another page may exist the reply carries \`Link: <…offset=N>; rel="next"\`.
- **Retries**: send an \`Idempotency-Key\` with any creating POST, and a retry gets the first response instead of a second booking.`

const configPlugin = fp(async function config (app: FastifyInstance, options: { config: Config }) {
  app.decorate('config', options.config)
}, { name: 'invsys-config' })

const openapi = fp(async function openapi (app: FastifyInstance) {
  // OpenAPI 3.0 rather than 3.1: every code generator and validator reads it (docs/openapi.md).
  const documenter = openapiDocumenter()
  app.addHook('onRoute', documenter.onRoute)
  app.addHook('onReady', documenter.onReady)
  await app.register(swagger, {
    transform: documenter.transform,
    transformObject: documenter.transformObject,
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'invsys',
        version: '0.1.0',
        license: { name: 'MIT', url: 'https://spdx.org/licenses/MIT.html' },
        description: API_CONVENTIONS
      },
      // Relative: the server that serves the document (http://localhost:3000 after npm start, nginx in production).
      servers: [{ url: '/', description: 'The server that serves this document' }],
      components: {
        securitySchemes: {
          [BEARER_SCHEME]: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'invsys_…',
            description: 'An API token, e.g. invsys_dev_admin_token_change_me on a development machine. Admins get more with POST /api/accounts/{id}/tokens or npm run token.'
          }
        }
      },
      tags: [
        { name: 'sites', description: 'Places where resources are kept' },
        { name: 'resource types', description: 'Kinds of resource; each has a route family /api/<plural>, and booking rules its resources follow' },
        { name: 'resources', description: 'Every resource, any type' },
        { name: 'allocations', description: 'Bookings and maintenance blocks' },
        { name: 'series', description: 'Recurring bookings: many occurrences in one request' },
        { name: 'availability', description: 'Free slots across resources' },
        { name: 'containers', description: 'Boxes and racks inside freezers' },
        { name: 'instruments', description: 'Instrument-category resources with their site' },
        { name: 'accounts', description: 'Who may call the API, with which role; and their tokens' },
        { name: 'calendar feeds', description: 'Secret addresses that calendar applications subscribe to' },
        { name: 'events', description: 'The change feed: every change to an allocation or a resource, in order, gap-free, with long-polling' },
        { name: 'webhooks', description: 'Endpoints that receive the change feed as signed POSTs (Standard Webhooks), at least once, in order per resource' },
        { name: 'operations', description: 'Liveness and readiness' }
      ]
    }
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
}, { name: 'invsys-openapi' })

/** The whole API as a plugin: external plugins, then the database, then routes. */
export const invsys = fp(async function invsys (app: FastifyInstance, options: { config: Config, resolve?: Resolver }) {
  await app.register(configPlugin, { config: options.config })
  // First of the onRequest hooks: an overloaded server refuses before any work (even auth).
  await app.register(loadShedding)
  await app.register(jsonBodies)
  await app.register(errorHandling)
  await app.register(openapi)
  await app.register(database)
  // This replica's one listening connection, before its subscribers (auth's token cache, the feed).
  await app.register(notifications)
  await app.register(changeFeed)
  await app.register(webhooks, { resolve: options.resolve })
  await app.register(metrics)
  // Before every route: its onRoute hook checks and documents each route's access.
  await app.register(auth)
  // Before the routes, after auth: it marks up the schema of every creating POST as it
  // is added, and scopes each key to the account that authenticated.
  await app.register(idempotency)
  await app.register(healthRoutes)
  await app.register(accountRoutes)
  await app.register(siteRoutes)
  await app.register(resourceTypeRoutes)
  await app.register(resourceTypeRuleRoutes)
  // Every per-resource area once per family: /api/resources/… and /api/<plural>/… for each type.
  const families = await resourceFamilies(app.pg.pool)
  for (const family of families) {
    await app.register(resourceRoutes, family)
    await app.register(resourceAllocationRoutes, family)
    await app.register(freeTimeRoutes, family)
    await app.register(calendarRoutes, family)
    await app.register(resourceRuleRoutes, family)
    await app.register(resourceSeriesRoutes, family)
  }
  const { typeNames } = families[0]!
  await app.register(allocationRoutes, { typeNames })
  await app.register(slotRoutes, { typeNames })
  await app.register(seriesRoutes)
  await app.register(instrumentRoutes)
  await app.register(containerRoutes)
  await app.register(feedRoutes, { typeNames })
  await app.register(eventRoutes, { typeNames })
  await app.register(webhookRoutes, { typeNames })
}, { name: 'invsys' })

/**
 * Log paths that may carry credentials. Nothing logs request headers today (Fastify's
 * request serializer keeps method, url and addresses only); this keeps a future line
 * that logs headers, at the top or one level down (`{ request: { headers } }`, an
 * error carrying them), from writing a token down.
 */
const REDACT = ['headers.authorization', 'headers.cookie', '*.headers.authorization', '*.headers.cookie']

export interface BuildOptions {
  /** Where log lines go instead of stdout (tests read them). */
  logStream?: { write: (line: string) => void }
  /** How webhook hosts are resolved instead of DNS (tests point names wherever they need). */
  resolve?: Resolver
}

/** Builds the app that server.ts listens with and tests inject into. No side effects at import. */
export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: REDACT, censor: '[redacted]' },
      serializers: { req: serializeRequest },
      // The last word on every line, whatever wrote it: a token or a feed address quoted
      // in a message (an error naming a URL) is redacted too.
      hooks: { streamWrite: (line: string) => scrubSecrets(redactFeedUrlsInText(line)) },
      ...(options.logStream ? { stream: options.logStream } : {})
    },
    // One line per request, written when it is answered (the hook below), instead of
    // Fastify's two ("incoming request", "request completed"): at LOG_LEVEL=info, what
    // production ships, that halves what the logger costs each request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    genReqId: requestId,
    schemaErrorFormatter: formatValidationError,
    // `/api/sites/` is the collection, as curl users type it, not an item with an empty id.
    routerOptions: { ignoreTrailingSlash: true },
    frameworkErrors: sendFrameworkError,
    clientErrorHandler: sendClientError,
    // Replies are shaped by their schemas; a time psql stored outside RFC 3339's years
    // (see database/db.ts) must still be written, not fail the reply.
    serializerOpts: { ajv: { validateFormats: false } }
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.setValidatorCompiler(createValidatorCompiler())
  // JSON only: a text/plain body is answered 415 instead of reaching validation as a string.
  app.removeContentTypeParser('text/plain')
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-Request-Id', request.id)
  })
  // The request's line: method, URL (made loggable), status and time, on the request's
  // logger, which carries its id and, once authenticated, the account.
  app.addHook('onResponse', async (request, reply) => {
    request.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
  })
  await app.register(invsys, { config, resolve: options.resolve })
  await app.ready()
  return app
}
