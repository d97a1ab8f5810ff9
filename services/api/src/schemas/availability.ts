import { Type, type Static } from '@sinclair/typebox'
import { DateTime, PageQuery, SiteId, Uuid } from './common.js'
import { TypeName } from './resources.js'

/** The longest window a slot search may cover; it bounds the work of one request. */
export const MAX_SLOT_WINDOW_DAYS = 366

/**
 * ISO 8601 durations with designators (PnYnMnWnDTnHnMnS, any part optional, decimals
 * allowed), which PostgreSQL also reads as an interval. Signs are not: a slot is never
 * negative. Zero passes the pattern and is refused separately.
 */
export const ISO_DURATION = '^P(?!$)(\\d{1,9}(\\.\\d{1,6})?Y)?(\\d{1,9}(\\.\\d{1,6})?M)?(\\d{1,9}(\\.\\d{1,6})?W)?(\\d{1,9}(\\.\\d{1,6})?D)?' +
  '(T(?=\\d)(\\d{1,9}(\\.\\d{1,6})?H)?(\\d{1,9}(\\.\\d{1,6})?M)?(\\d{1,9}(\\.\\d{1,6})?S)?)?$'

const Duration = Type.String({
  pattern: ISO_DURATION,
  description: 'ISO 8601 duration, longer than zero: PT2H, PT90M, P1D, P1DT2H30M, P1W',
  examples: ['PT2H']
})

export const FreeTime = Type.Object({
  starts_at: DateTime,
  ends_at: DateTime
}, { title: 'FreeTime', examples: [{ starts_at: '2030-06-01T11:00:00Z', ends_at: '2030-06-01T14:00:00Z' }] })
export type FreeTime = Static<typeof FreeTime>

export const FreeTimeQuery = Type.Object({
  from: Type.String({ format: 'date-time', description: 'Start of the window (inclusive); RFC 3339 with an offset', examples: ['2030-06-01T00:00:00Z'] }),
  to: Type.String({ format: 'date-time', description: 'End of the window (exclusive); must be after from', examples: ['2030-06-02T00:00:00Z'] }),
  ...PageQuery
}, { additionalProperties: false })

export const Slot = Type.Object({
  resource_id: Uuid,
  resource_name: Type.String(),
  starts_at: DateTime,
  ends_at: DateTime
}, {
  title: 'Slot',
  description: 'A free gap at least as long as the duration asked for; it may be longer (ends_at is where the gap ends, within the window)',
  examples: [{ resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90', resource_name: 'AV-01 Aurora', starts_at: '2030-06-01T11:00:00Z', ends_at: '2030-06-01T14:00:00Z' }]
})
export type Slot = Static<typeof Slot>

export const SlotQuery = (types: string[]) => Type.Object({
  type: TypeName(types),
  site_id: Type.Optional(SiteId),
  from: FreeTimeQuery.properties.from,
  to: Type.String({ format: 'date-time', description: `End of the window (exclusive); after from, at most ${MAX_SLOT_WINDOW_DAYS} days later`, examples: ['2030-06-08T00:00:00Z'] }),
  duration: Duration,
  ...PageQuery
}, { additionalProperties: false })
