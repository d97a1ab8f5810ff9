import { Type, type Static } from '@sinclair/typebox'
import { DateTime, Name, Nullable, PageQuery, SiteId, Text } from './common.js'

export const Site = Type.Object({
  id: SiteId,
  name: Type.String(),
  contact: Nullable(Type.String()),
  address: Nullable(Type.String()),
  state_or_region: Nullable(Type.String()),
  country: Nullable(Type.String()),
  postcode_or_zip: Nullable(Type.String()),
  created_at: DateTime,
  updated_at: DateTime
}, {
  title: 'Site',
  examples: [{
    id: 1,
    name: 'Site 1',
    contact: 'John Smith',
    address: '123 Muffin Lane',
    state_or_region: 'MI',
    country: 'USA',
    postcode_or_zip: '48103',
    created_at: '2026-01-05T10:00:00Z',
    updated_at: '2026-01-05T10:00:00Z'
  }]
})
export type Site = Static<typeof Site>

const siteFields = {
  name: Name,
  contact: Type.Optional(Nullable(Text(200))),
  address: Type.Optional(Nullable(Text(500))),
  state_or_region: Type.Optional(Nullable(Text(200))),
  country: Type.Optional(Nullable(Text(200))),
  postcode_or_zip: Type.Optional(Nullable(Text(50)))
}

const siteExample = {
  name: 'Cambridge Lab',
  contact: 'Priya Raman',
  address: '21 Station Road',
  state_or_region: 'Cambridgeshire',
  country: 'United Kingdom',
  postcode_or_zip: 'CB1 2JD'
}

/** POST and PUT take the whole site; omitted optional fields are null. */
export const SiteInput = Type.Object(siteFields, { title: 'SiteInput', additionalProperties: false, examples: [siteExample] })
export type SiteInput = Static<typeof SiteInput>

export const SitePatch = Type.Partial(Type.Object(siteFields), {
  title: 'SitePatch',
  additionalProperties: false,
  examples: [{ contact: 'Dr. Priya Raman' }]
})
export type SitePatch = Static<typeof SitePatch>

export const SiteParams = Type.Object({ id: SiteId })

export const SiteListQuery = Type.Object({
  q: Type.Optional(Type.String({ maxLength: 200, description: 'Case-insensitive substring of the name' })),
  ...PageQuery
}, { additionalProperties: false })
export type SiteListQuery = Static<typeof SiteListQuery>
