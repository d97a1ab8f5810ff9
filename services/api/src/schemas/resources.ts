import { Type, type Static } from '@sinclair/typebox'
import { DateTime, Name, Nullable, PageQuery, SiteId, Uuid } from './common.js'

const Mac = Type.String({
  // The forms PostgreSQL's macaddr reads; it stores and returns lowercase colon-separated.
  pattern: '^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{6}[:-]?[0-9A-Fa-f]{6}$|^([0-9A-Fa-f]{4}\\.){2}[0-9A-Fa-f]{4}$',
  description: 'MAC address, e.g. 08:00:2b:01:02:03; only computers may have one',
  examples: ['08:00:2b:01:02:03']
})

export const Resource = Type.Object({
  id: Uuid,
  type: Type.String({ examples: ['car'] }),
  name: Type.String(),
  site_id: Nullable(SiteId),
  mac: Nullable(Type.String()),
  created_at: DateTime,
  updated_at: DateTime
}, {
  title: 'Resource',
  examples: [{
    id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90',
    type: 'car',
    name: 'AV-01 Aurora',
    site_id: 1,
    mac: null,
    created_at: '2026-01-05T10:00:00Z',
    updated_at: '2026-01-05T10:00:00Z'
  }]
})
export type Resource = Static<typeof Resource>

export const ResourceType = Type.Object({
  name: Type.String({ examples: ['car'] }),
  plural: Type.String({ examples: ['cars'] }),
  category: Type.Union([Type.Literal('vehicle'), Type.Literal('instrument')])
}, { title: 'ResourceType' })
export type ResourceType = Static<typeof ResourceType>

export const ResourceTypeListQuery = Type.Object({ ...PageQuery }, { additionalProperties: false })

export const TypeName = (types: string[]) => Type.Union(types.map((name) => Type.Literal(name)), { description: 'A resource type name' })

const commonFields = {
  name: Name,
  site_id: Type.Optional(Nullable(SiteId)),
  mac: Type.Optional(Nullable(Mac))
}

/** Body of POST /api/resources and PUT /api/resources/:id: type is part of the resource. */
export const ResourceInput = (types: string[]) => Type.Object({ type: TypeName(types), ...commonFields }, {
  title: 'ResourceInput',
  additionalProperties: false,
  examples: [{ type: 'computer', name: 'seq-ws-03', site_id: 2, mac: '08:00:2b:01:02:05' }]
})
export type ResourceInput = Static<ReturnType<typeof ResourceInput>>

/** Body of the per-type routes: the path fixes the type. */
export const TypedResourceInput = Type.Object(commonFields, {
  title: 'TypedResourceInput',
  additionalProperties: false,
  examples: [{ name: 'AV-04 Drizzle', site_id: 1 }]
})

export const ResourcePatch = (types: string[]) => Type.Partial(Type.Object({ type: TypeName(types), ...commonFields }), {
  title: 'ResourcePatch',
  additionalProperties: false,
  examples: [{ site_id: 3 }]
})
export type ResourcePatch = Static<ReturnType<typeof ResourcePatch>>

export const TypedResourcePatch = Type.Partial(Type.Object(commonFields), {
  title: 'TypedResourcePatch',
  additionalProperties: false,
  examples: [{ name: 'AV-04 Drizzle II' }]
})

export const ResourceParams = Type.Object({ id: Uuid })

const availability = {
  available_from: Type.Optional(DateTime),
  available_to: Type.Optional(DateTime)
}

export const ResourceListQuery = (types: string[]) => Type.Object({
  type: Type.Optional(TypeName(types)),
  site_id: Type.Optional(SiteId),
  ...availability,
  ...PageQuery
}, { additionalProperties: false })

export const TypedResourceListQuery = Type.Object({
  site_id: Type.Optional(SiteId),
  ...availability,
  ...PageQuery
}, { additionalProperties: false })

export interface ResourceFilter {
  type?: string
  site_id?: number
  available_from?: string
  available_to?: string
}

export const DeleteResourceQuery = Type.Object({
  force: Type.Optional(Type.Boolean({ default: false, description: 'Also delete its allocations (and, for a freezer, its containers)' }))
}, { additionalProperties: false })

export const Instrument = Type.Object({
  id: Uuid,
  type: Type.String(),
  name: Type.String(),
  site_id: Nullable(SiteId),
  site_name: Nullable(Type.String()),
  mac: Nullable(Type.String())
}, {
  title: 'Instrument',
  examples: [{ id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90', type: 'computer', name: 'seq-ws-01', site_id: 2, site_name: 'Cambridge Lab', mac: '08:00:2b:01:02:03' }]
})
export type Instrument = Static<typeof Instrument>

export const InstrumentListQuery = Type.Object({ site_id: Type.Optional(SiteId), ...PageQuery }, { additionalProperties: false })
