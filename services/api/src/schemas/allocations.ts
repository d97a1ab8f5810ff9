import { Type, type Static } from '@sinclair/typebox'
import { accountId } from './accounts.js'
import { DateTime, ErrorBody, Nullable, PageQuery, SiteId, Text, Uuid } from './common.js'
import { TypeName } from './resources.js'

export const Kind = Type.Union([Type.Literal('booking'), Type.Literal('maintenance')])
const Status = Type.Union([Type.Literal('held'), Type.Literal('confirmed'), Type.Literal('cancelled'), Type.Literal('expired')], {
  description: 'held blocks the slot until expires_at, then reads expired; confirmed blocks it; cancelled and expired are history and block nothing'
})
const NewStatus = Type.Union([Type.Literal('confirmed'), Type.Literal('held')], {
  description: 'held: blocks the slot for hold_seconds unless confirmed (POST /api/allocations/:id/confirm)'
})
/** How long a new hold lasts; the database also refuses a hold longer than an hour. */
const HoldSeconds = Type.Integer({ minimum: 1, maximum: 3600, description: 'With status held: seconds until the hold expires (1 to 3600)', examples: [600] })

export const Data = Type.Object({}, { additionalProperties: true, description: 'Any JSON object; stored and returned as is', examples: [{ job: 'J-1042' }] })

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
  expires_at: Type.Union([DateTime, Type.Null()], { description: 'When a hold stops blocking; null unless status is held or expired' }),
  owner_id: Nullable(accountId('The account that created it (members may change only their own); null when made outside the API')),
  updated_by: Nullable(accountId('The account that created it or last changed it through the API')),
  buffer_before: Type.Union([Type.String(), Type.Null()], { description: 'Time kept free before it (ISO 8601 duration): the resource\'s buffer_before rule when it was booked or last moved; null: none. Later rule changes do not rewrite it' }),
  buffer_after: Type.Union([Type.String(), Type.Null()], { description: 'Time kept free after it (ISO 8601 duration): the resource\'s buffer_after rule when it was booked or last moved; null: none' }),
  series_id: Type.Union([Uuid, Type.Null()], { description: 'The recurring series it is an occurrence of (GET /api/series/{id}); null for a single booking' })
}, {
  title: 'Allocation',
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
    expires_at: null,
    owner_id: 2,
    updated_by: 2,
    buffer_before: null,
    buffer_after: 'PT30M',
    series_id: null
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
const holdFields = {
  status: Type.Optional(NewStatus),
  hold_seconds: Type.Optional(HoldSeconds)
}

/** starts_at and ends_at are required so that an open end is always said out loud (null), never implied. */
export const AllocationInput = Type.Object({ ...timeFields, ...otherFields, ...holdFields }, {
  title: 'AllocationInput',
  additionalProperties: false,
  description: 'starts_at: null means from the beginning of time, ends_at: null until further notice. status held with hold_seconds reserves the slot until confirmed or expired.',
  examples: [
    { starts_at: '2030-06-01T09:00:00+02:00', ends_at: '2030-06-01T17:00:00+02:00', description: 'Downtown mapping run', data: { job: 'J-1042' } },
    { starts_at: '2030-06-01T09:00:00Z', ends_at: '2030-06-01T11:00:00Z', status: 'held', hold_seconds: 600 }
  ]
})
export type AllocationInput = Static<typeof AllocationInput>

/** Body of POST /api/allocations: any free resource of the type (and site) is booked. */
export const BookAnyInput = (types: string[]) => Type.Object({
  type: TypeName(types),
  site_id: Type.Optional(SiteId),
  ...timeFields,
  ...otherFields,
  ...holdFields
}, {
  title: 'BookAnyInput',
  additionalProperties: false,
  description: 'Books the first free resource of the type (at site_id, when given), by name. starts_at/ends_at as for any allocation; status held with hold_seconds makes it a hold.',
  examples: [{ type: 'car', site_id: 1, starts_at: '2030-06-01T09:00:00Z', ends_at: '2030-06-01T17:00:00Z', description: 'Airport run' }]
})
export type BookAnyInput = Static<ReturnType<typeof BookAnyInput>>

export const AllocationPatch = Type.Partial(Type.Object({ ...timeFields, ...otherFields }), {
  title: 'AllocationPatch',
  additionalProperties: false,
  examples: [{ starts_at: '2030-06-01T10:00:00Z', ends_at: '2030-06-01T18:00:00Z' }]
})
export type AllocationPatch = Static<typeof AllocationPatch>

export const AllocationParams = Type.Object({ id: Uuid })

/** Confirming takes no fields: no body at all, or {} for clients that always send one. */
export const ConfirmInput = Type.Object({}, { title: 'ConfirmInput', additionalProperties: false, description: 'No body, or {}', examples: [{}] })
// Flat (not a union holding Status) so that a bad value is reported as the list of allowed ones.
const AllocationStatusFilter = Type.Union([...Status.anyOf, Type.Literal('all')], { default: 'confirmed', description: 'Status as of now (default confirmed; all for every status)' })
export const ResourceAllocationParams = Type.Object({ id: Uuid, allocation_id: Uuid })

const window = {
  from: Type.Optional(DateTime),
  to: Type.Optional(DateTime),
  kind: Type.Optional(Kind),
  status: Type.Optional(AllocationStatusFilter)
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

/** An allocation as the history trigger stored it: status as written, not as of now. */
const AllocationSnapshot = Type.Object({
  id: Uuid,
  resource_id: Uuid,
  starts_at: Nullable(DateTime),
  ends_at: Nullable(DateTime),
  kind: Type.String(),
  status: Type.String(),
  description: Nullable(Type.String()),
  data: Data,
  created_at: DateTime,
  updated_at: DateTime,
  cancelled_at: Nullable(DateTime),
  expires_at: Nullable(DateTime),
  series_id: Type.Optional(Nullable(Uuid))
}, { title: 'AllocationSnapshot', additionalProperties: true })

export const AllocationEvent = Type.Object({
  id: Type.Integer({ description: 'Increases with every change recorded' }),
  allocation_id: Uuid,
  operation: Type.Union(['insert', 'update', 'confirm', 'cancel', 'expire', 'delete'].map((op) => Type.Literal(op)), {
    description: 'update covers times, kind, description and data; expire is a run-out hold written as expired'
  }),
  at: DateTime,
  actor_id: Nullable(Type.Integer({ description: 'The account that made the change through the API; null for changes made by hand' })),
  db_user: Type.String({ description: 'The PostgreSQL role that made the change' }),
  application: Type.String({ description: 'The client application_name: invsys-api for the API, psql for psql' }),
  old: Nullable(AllocationSnapshot),
  new: Nullable(AllocationSnapshot)
}, {
  title: 'AllocationEvent',
  examples: [{
    id: 42,
    allocation_id: '0d6a3c55-2a8e-4f0e-8a53-6f0b2d9c1e77',
    operation: 'update',
    at: '2030-05-21T10:15:00.123456Z',
    actor_id: null,
    db_user: 'postgres',
    application: 'psql',
    old: { id: '0d6a3c55-2a8e-4f0e-8a53-6f0b2d9c1e77', resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90', starts_at: '2030-06-01T09:00:00Z', ends_at: '2030-06-01T17:00:00Z', kind: 'booking', status: 'confirmed', description: null, data: {}, created_at: '2030-05-20T08:00:00Z', updated_at: '2030-05-20T08:00:00Z', cancelled_at: null, expires_at: null },
    new: { id: '0d6a3c55-2a8e-4f0e-8a53-6f0b2d9c1e77', resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90', starts_at: '2030-06-01T10:00:00Z', ends_at: '2030-06-01T18:00:00Z', kind: 'booking', status: 'confirmed', description: null, data: {}, created_at: '2030-05-20T08:00:00Z', updated_at: '2030-05-21T10:15:00.123456Z', cancelled_at: null, expires_at: null }
  }]
})
export type AllocationEvent = Static<typeof AllocationEvent>

export const HistoryQuery = Type.Object({ ...PageQuery }, { additionalProperties: false })

export const AllocationConflictBody = Type.Object({
  ...ErrorBody.properties,
  // Optional: a 409 on these routes may also be another conflict (a cancelled allocation,
  // a concurrent change); a required property missing there would fail to serialise as a 500.
  conflicts: Type.Optional(Type.Array(Allocation))
}, { title: 'AllocationConflictError', description: 'Conflict. When the slot is taken (code ALLOCATION_CONFLICT), conflicts lists the allocations that overlap', examples: [{ statusCode: 409, code: 'ALLOCATION_CONFLICT', error: 'Conflict', message: 'the resource is already allocated during that time (1 overlapping allocation)', conflicts: [] }] })
