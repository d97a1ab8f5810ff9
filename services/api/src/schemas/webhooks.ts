import { Type, type Static } from '@sinclair/typebox'
import { DateTime, Nullable, PageQuery, Uuid } from './common.js'
import { EventType } from './events.js'
import { TypeName } from './resources.js'

const Url = Type.String({
  format: 'uri',
  maxLength: 2000,
  pattern: '^https?://',
  description: 'http(s) URL events are POSTed to. Its host must not be, or resolve to, a loopback, private, link-local, multicast or unspecified address (unless WEBHOOK_ALLOWED_CIDRS allows it): checked now and at every delivery',
  examples: ['https://dispatch.example.com/hooks/invsys']
})
const Types = Type.Array(EventType, { minItems: 1, maxItems: 20, uniqueItems: true, description: 'Only these event types; leave out (or null) for all' })
const Description = Type.String({ maxLength: 1000, description: 'Free text: whose endpoint it is, what for', examples: ['Dispatch board'] })

const exampleEndpoint = {
  id: '3c1b9d2e-7f4a-4e8b-9c0d-1a2b3c4d5e6f',
  url: 'https://dispatch.example.com/hooks/invsys',
  types: ['allocation.created', 'allocation.cancelled'],
  resource_type: 'car',
  description: 'Dispatch board',
  enabled: true,
  disabled_reason: null,
  disabled_at: null,
  previous_secret_expires_at: null,
  created_at: '2030-05-20T08:00:00Z',
  updated_at: '2030-05-20T08:00:00Z'
}

const endpointFields = (types: string[]) => ({
  id: Uuid,
  url: Type.String({ description: 'Where events are POSTed', examples: ['https://dispatch.example.com/hooks/invsys'] }),
  types: Type.Union([Type.Array(EventType), Type.Null()], { description: 'The event types it receives; null: all' }),
  resource_type: Type.Union([TypeName(types), Type.Null()], { description: 'Only events of resources of this type; null: all' }),
  description: Nullable(Type.String()),
  enabled: Type.Boolean({ description: 'Whether events are sent. Turned off by a 410 Gone, by an event that failed every attempt of the retry schedule (WEBHOOK_RETRY_SCHEDULE), or by an admin; turned on again, delivery resumes where it stopped' }),
  disabled_reason: Type.Union([Type.String(), Type.Null()], { description: 'Why it was disabled; null while enabled', examples: ['the endpoint answered 410 Gone to event 1042'] }),
  disabled_at: Nullable(DateTime),
  previous_secret_expires_at: Type.Union([DateTime, Type.Null()], { description: 'Until then (24 hours after a rotation), each delivery carries a second signature, made with the secret before the rotation' }),
  created_at: DateTime,
  updated_at: DateTime
})

/** An endpoint as GET shows it: never its secret. */
export const WebhookEndpoint = (types: string[]) => Type.Object(endpointFields(types), { title: 'WebhookEndpoint', examples: [exampleEndpoint] })
export type WebhookEndpoint = Static<ReturnType<typeof WebhookEndpoint>>

const SECRET_EXAMPLE = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/A0t2dR2Ma0='

/** The reply that creates an endpoint or rotates its secret: the only time the secret is shown. */
export const NewWebhookEndpoint = (types: string[]) => Type.Object({
  ...endpointFields(types),
  secret: Type.String({
    description: 'The signing secret (Standard Webhooks: whsec_ and base64 of 32 random bytes): shown in this reply only. Verify each delivery\'s webhook-signature with it, e.g. with the standardwebhooks package',
    examples: [SECRET_EXAMPLE]
  })
}, { title: 'NewWebhookEndpoint', examples: [{ ...exampleEndpoint, secret: SECRET_EXAMPLE }] })

export const WebhookInput = (types: string[]) => Type.Object({
  url: Url,
  types: Type.Optional(Nullable(Types)),
  resource_type: Type.Optional(Nullable(TypeName(types))),
  description: Type.Optional(Nullable(Description))
}, {
  title: 'WebhookInput',
  additionalProperties: false,
  examples: [{ url: 'https://dispatch.example.com/hooks/invsys', types: ['allocation.created', 'allocation.cancelled'], resource_type: 'car', description: 'Dispatch board' }]
})
export type WebhookInput = Static<ReturnType<typeof WebhookInput>>

export const WebhookPatch = Type.Object({
  url: Type.Optional(Url),
  types: Type.Optional(Nullable(Types)),
  description: Type.Optional(Nullable(Description)),
  enabled: Type.Optional(Type.Boolean({ description: 'false stops deliveries; true resumes them where they stopped (what failed is tried again at once)' }))
}, { title: 'WebhookPatch', additionalProperties: false, examples: [{ enabled: true }] })
export type WebhookPatch = Static<typeof WebhookPatch>

export const WebhookParams = Type.Object({ id: Uuid })

export const WebhookListQuery = Type.Object({ ...PageQuery }, { additionalProperties: false })

export const WebhookAttempt = Type.Object({
  event_id: Type.String({ format: 'uuid', description: 'The event (its id, the webhook-id header)' }),
  position: Type.Integer({ description: 'The event\'s position in the feed' }),
  type: EventType,
  attempted_at: DateTime,
  response_status: Type.Union([Type.Integer(), Type.Null()], { description: 'The HTTP status the endpoint answered; null when there was no answer' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'What went wrong (a refused address, a connection error, a timeout, a redirect not followed); null for a 2xx' }),
  duration_ms: Type.Integer({ description: 'How long the attempt took' }),
  next_attempt_at: Type.Union([DateTime, Type.Null()], { description: 'When it is tried again; null when delivered, or when the endpoint was disabled' })
}, {
  title: 'WebhookAttempt',
  examples: [{
    event_id: '8f14e45f-ceea-4e7a-9b5e-2b1f7c3d9a10',
    position: 1042,
    type: 'allocation.created',
    attempted_at: '2030-05-21T10:15:01.5Z',
    response_status: 503,
    error: 'answered 503',
    duration_ms: 87,
    next_attempt_at: '2030-05-21T10:15:06.6Z'
  }]
})
export type WebhookAttempt = Static<typeof WebhookAttempt>

export const AttemptListQuery = Type.Object({ ...PageQuery }, { additionalProperties: false })
