import { Type, type Static } from '@sinclair/typebox'
import { accountId } from './accounts.js'
import { DateTime, ErrorBody, Nullable, PageQuery, SiteId, Text, Uuid } from './common.js'

export const Kind = Type.Union([Type.Literal('booking'), Type.Literal('maintenance')])
export const Status = Type.Union([Type.Literal('confirmed'), Type.Literal('cancelled')])

const Data = Type.Object({}, { additionalProperties: true, description: 'Any JSON object; stored and returned as is', examples: [{ job: 'J-1042' }] })

export const Allocation = Type.Object({
  id: Uuid,
  resource_id: Uuid,
  resource_type: Type.String(),
  starts_at: Nullable(DateTime),
  ends_at: Nullable(DateTime),
  kind: Kind,
  status: Status,
  description: Nullable(Type.String()),
  data: Data,
  created_at: DateTime,
  updated_at: DateTime,
  cancelled_at: Nullable(DateTime),
  owner_id: Nullable(accountId('The account that created it (members may change only their own); null when made outside the API')),
  updated_by: Nullable(accountId('The account that created it or last changed it through the API'))
}, {
  examples: [{
    id: '0d6a3c55-2a8e-4f0e-8a53-6f0b2d9c1e77',
    resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90',
    resource_type: 'car',
    starts_at: '2030-06-01T09:00:00Z',
    ends_at: '2030-06-01T17:00:00Z',
    kind: 'booking',
    status: 'confirmed',
    description: 'Downtown mapping run',
    data: { job: 'J-1042' },
    created_at: '2030-05-20T08:00:00Z',
    updated_at: '2030-05-20T08:00:00Z',
    cancelled_at: null,
    owner_id: 2,
    updated_by: 2
  }]
})
export type Allocation = Static<typeof Allocation>

const timeFields = {
  starts_at: Nullable(DateTime),
  ends_at: Nullable(DateTime)
}
const otherFields = {
  kind: Type.Optional(Kind),
  description: Type.Optional(Nullable(Text(2000))),
  data: Type.Optional(Data)
}

/** starts_at and ends_at are required so that an open end is always said out loud (null), never implied. */
export const AllocationInput = Type.Object({ ...timeFields, ...otherFields }, {
  additionalProperties: false,
  description: 'starts_at: null means from the beginning of time, ends_at: null until further notice',
  examples: [{ starts_at: '2030-06-01T09:00:00+02:00', ends_at: '2030-06-01T17:00:00+02:00', description: 'Downtown mapping run', data: { job: 'J-1042' } }]
})
export type AllocationInput = Static<typeof AllocationInput>

export const AllocationPatch = Type.Partial(Type.Object({ ...timeFields, ...otherFields }), {
  additionalProperties: false,
  examples: [{ starts_at: '2030-06-01T10:00:00Z', ends_at: '2030-06-01T18:00:00Z' }]
})
export type AllocationPatch = Static<typeof AllocationPatch>

export const AllocationParams = Type.Object({ id: Uuid })
export const ResourceAllocationParams = Type.Object({ id: Uuid, allocation_id: Uuid })

const window = {
  from: Type.Optional(DateTime),
  to: Type.Optional(DateTime),
  kind: Type.Optional(Kind),
  status: Type.Optional(Type.Union([Status, Type.Literal('all')], { default: 'confirmed' }))
}

export const ResourceAllocationListQuery = Type.Object({ ...window, ...PageQuery }, { additionalProperties: false })

export const AllocationListQuery = (types: string[]) => Type.Object({
  resource_id: Type.Optional(Uuid),
  type: Type.Optional(Type.Union(types.map((name) => Type.Literal(name)))),
  site_id: Type.Optional(SiteId),
  ...window,
  ...PageQuery
}, { additionalProperties: false })

export interface AllocationFilter {
  resource_id?: string
  type?: string
  site_id?: number
  from?: string
  to?: string
  kind?: string
  status?: string
}

export const AllocationConflictBody = Type.Object({
  ...ErrorBody.properties,
  // Optional: a 409 on these routes may also be another conflict (a cancelled allocation, a concurrent change).
  conflicts: Type.Optional(Type.Array(Allocation))
}, { description: 'Conflict. When the slot is taken (code ALLOCATION_CONFLICT), conflicts lists the allocations that overlap', examples: [{ statusCode: 409, code: 'ALLOCATION_CONFLICT', error: 'Conflict', message: 'the resource is already allocated during that time (1 overlapping allocation)', conflicts: [] }] })
