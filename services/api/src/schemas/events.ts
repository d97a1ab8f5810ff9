import { Type, type Static } from '@sinclair/typebox'
import { accountId } from './accounts.js'
import { Allocation } from './allocations.js'
import { DateTime, Nullable, PageQuery, Uuid } from './common.js'
import { Resource, TypeName } from './resources.js'

/** Every kind of change the feed tells, in the order the docs list them. */
export const EVENT_TYPES = [
  'allocation.created', 'allocation.updated', 'allocation.confirmed', 'allocation.cancelled', 'allocation.expired', 'allocation.deleted',
  'resource.created', 'resource.updated', 'resource.deleted'
] as const

export const EventType = Type.Union(EVENT_TYPES.map((type) => Type.Literal(type)), {
  description: 'allocation.created, .updated (moved or edited), .confirmed (a hold confirmed), .cancelled (also each occurrence a series cancel ends), .expired (a hold that ran out), .deleted (with its resource, or by hand); resource.created, .updated, .deleted'
})

/** The thing after or before the change: an allocation or a resource as GET returns it, or null. */
const Thing = (description: string) => Type.Union([Allocation, Resource, Type.Null()], { description })

const allocationExample = Allocation.examples[0] as Allocation

export const FeedEvent = Type.Object({
  position: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'The feed\'s cursor: page with after=<the last position you read>. Given once the change has committed, and never below one given before' }),
  id: Type.String({ format: 'uuid', description: 'The event\'s stable id (webhook-id in webhooks, the same on every retry)', examples: ['8f14e45f-ceea-4e7a-9b5e-2b1f7c3d9a10'] }),
  type: EventType,
  occurred_at: DateTime,
  actor_id: Nullable(accountId('The account that made the change through the API; null for a change made in psql or by invsys itself (a hold expiring)')),
  resource_id: Uuid,
  resource_type: Type.String({ description: 'The resource\'s type when the change was made', examples: ['car'] }),
  allocation_id: Type.Union([Uuid, Type.Null()], { description: 'The allocation changed; null for resource events' }),
  data: Thing('The allocation (as GET /api/allocations/{id} returns it) or resource (as GET /api/resources/{id}) after the change; null after a delete. An allocation\'s status is as written: a hold past its expires_at is held until allocation.expired says otherwise'),
  previous: Thing('The same before the change; null when it was created')
}, {
  title: 'Event',
  examples: [{
    position: 1042,
    id: '8f14e45f-ceea-4e7a-9b5e-2b1f7c3d9a10',
    type: 'allocation.updated',
    occurred_at: '2030-05-21T10:15:00.123456Z',
    actor_id: 2,
    resource_id: allocationExample.resource_id,
    resource_type: 'car',
    allocation_id: allocationExample.id,
    data: { ...allocationExample, starts_at: '2030-06-01T10:00:00Z', ends_at: '2030-06-01T18:00:00Z', updated_at: '2030-05-21T10:15:00.123456Z' },
    previous: allocationExample
  }]
})
export type FeedEvent = Static<typeof FeedEvent>

/** The most GET /api/events may wait for a change, in seconds. */
export const MAX_WAIT_SECONDS = 30

export const EventListQuery = (types: string[]) => Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Events after this position (the last one you read); default: from the oldest kept', examples: [1041] })),
  limit: PageQuery.limit,
  type: Type.Optional(Type.String({ maxLength: 1000, description: 'Only these types, comma-separated, e.g. allocation.created,allocation.cancelled', examples: ['allocation.created,allocation.cancelled'] })),
  resource_id: Type.Optional(Uuid),
  resource_type: Type.Optional(TypeName(types)),
  wait: Type.Number({ minimum: 0, maximum: MAX_WAIT_SECONDS, default: 0, description: `With nothing to return: seconds (0 to ${MAX_WAIT_SECONDS}) to wait for an event before answering [] (long-polling); it answers as soon as one arrives` })
}, { additionalProperties: false })
