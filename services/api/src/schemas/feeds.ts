import { Type, type Static } from '@sinclair/typebox'
import { accountId } from './accounts.js'
import { DateTime, Nullable, PageQuery, Uuid } from './common.js'

/** How often calendar applications are asked to fetch a feed again (RFC 7986 REFRESH-INTERVAL). */
export const FEED_REFRESH = 'PT15M'

const scopeFields = (types: string[]) => ({
  resource_id: Type.Optional(Type.String({ format: 'uuid', description: 'Scope: the allocations of this resource', examples: ['5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90'] })),
  site_id: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'Scope: the allocations of the resources at this site (where they are now)', examples: [1] })),
  type: Type.Optional(Type.Union(types.map((name) => Type.Literal(name)), { description: 'Scope: the allocations of every resource of this type', examples: ['car'] })),
  mine: Type.Optional(Type.Boolean({ description: 'Scope, when true: the allocations the calling account owns (false is the same as leaving it out)' }))
})

/** The scope names, in the order messages list them. */
export const SCOPES = ['resource_id', 'site_id', 'type', 'mine'] as const

/** Body of POST /api/feeds: a label and exactly one scope (checked by the route, which names what is wrong). */
export const FeedInput = (types: string[]) => Type.Object({
  label: Type.String({ minLength: 1, maxLength: 200, pattern: '\\S', description: 'The calendar\'s name in calendar applications', examples: ['Cars at Harbour Depot'] }),
  ...scopeFields(types)
}, {
  additionalProperties: false,
  description: 'label, and exactly one scope: resource_id, site_id, type or "mine": true',
  examples: [{ label: 'Cars', type: 'car' }, { label: 'AV-01 Aurora', resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90' }, { label: 'My bookings', mine: true }]
})
export type FeedInput = Static<ReturnType<typeof FeedInput>>

const feedFields = (types: string[]) => ({
  id: Uuid,
  label: Type.String(),
  ...scopeFields(types),
  created_at: DateTime
})

/** A feed as listed: its scope field only (the others are absent), never its address. */
export const Feed = (types: string[]) => Type.Object({
  ...feedFields(types),
  account_id: accountId('The account that owns the feed'),
  revoked_at: Nullable(DateTime)
}, {
  examples: [{ id: '6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f', label: 'Cars', type: 'car', created_at: '2026-01-05T10:00:00Z', account_id: 2, revoked_at: null }]
})

/** The reply to creating a feed: the only time its address is ever shown. */
export const NewFeed = (types: string[]) => Type.Object({
  ...feedFields(types),
  url: Type.String({
    description: 'The feed\'s secret address, relative to this server: give it to a calendar application (https:// or webcal://). Shown this once: the server keeps only a hash of the secret',
    examples: ['/feeds/yS0x6hQ3bJp2nRrV9b0mUuCk4vEw8tA1dFqLz7XoY5c.ics']
  })
}, {
  examples: [{ id: '6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f', label: 'Cars', type: 'car', url: '/feeds/yS0x6hQ3bJp2nRrV9b0mUuCk4vEw8tA1dFqLz7XoY5c.ics', created_at: '2026-01-05T10:00:00Z' }]
})

export const FeedParams = Type.Object({ id: Uuid })

export const FeedListQuery = Type.Object({
  ...PageQuery,
  include_revoked: Type.Boolean({ default: false, description: 'Also list revoked feeds (with revoked_at)' })
}, { additionalProperties: false })

/** The path of the public address. Any string: a malformed secret is a 404 like an unknown one. */
export const FeedAddressParams = Type.Object({
  secret: Type.String({ description: 'The secret from the url given when the feed was created', examples: ['yS0x6hQ3bJp2nRrV9b0mUuCk4vEw8tA1dFqLz7XoY5c'] })
})

export const NotModified = Type.Null({ description: 'Not modified: the If-None-Match header names the current ETag' })
