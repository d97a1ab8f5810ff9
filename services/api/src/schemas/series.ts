import { Type, type Static } from '@sinclair/typebox'
import { accountId } from './accounts.js'
import { Allocation, Data, Kind } from './allocations.js'
import { DateTime, ErrorBody, Nullable, Text, Uuid } from './common.js'
import { RuleBreach } from './rules.js'

const SeriesMode = Type.Union([Type.Literal('all_or_nothing'), Type.Literal('skip_conflicts')], {
  description: 'all_or_nothing (default): every occurrence is booked, or none is (409 SERIES_CONFLICT). skip_conflicts: the free occurrences are booked and the others are listed in skipped'
})

const EXAMPLE_RULE = 'FREQ=WEEKLY;BYDAY=MO,WE;COUNT=20'

export const SeriesInput = Type.Object({
  starts_at: Type.String({ format: 'date-time', description: 'Start of the first occurrence (RFC 3339 with an offset)', examples: ['2031-03-03T09:00:00+00:00'] }),
  ends_at: Type.String({ format: 'date-time', description: 'End of the first occurrence; every occurrence lasts exactly as long', examples: ['2031-03-03T11:00:00+00:00'] }),
  time_zone: Type.String({
    minLength: 1,
    maxLength: 64,
    description: 'IANA time zone whose wall-clock time the occurrences keep: 09:00 Lisbon stays 09:00 Lisbon after the March change',
    examples: ['Europe/Lisbon']
  }),
  rrule: Type.String({
    minLength: 1,
    maxLength: 1000,
    description: 'RFC 5545 recurrence rule without DTSTART (the first occurrence is starts_at): FREQ=DAILY, WEEKLY or MONTHLY; INTERVAL; BYDAY; BYMONTHDAY; and COUNT or UNTIL (a UTC date-time such as 20311231T235959Z, or a date). At most 500 occurrences within 2 years',
    examples: [EXAMPLE_RULE]
  }),
  mode: Type.Optional(SeriesMode),
  kind: Type.Optional(Kind),
  description: Type.Optional(Nullable(Text(2000))),
  data: Type.Optional(Data)
}, {
  additionalProperties: false,
  description: 'A recurring booking. Holds are not offered for series.',
  examples: [
    { starts_at: '2031-03-03T09:00:00+00:00', ends_at: '2031-03-03T11:00:00+00:00', time_zone: 'Europe/Lisbon', rrule: EXAMPLE_RULE, mode: 'all_or_nothing', description: 'Sequencer, spring term' },
    { starts_at: '2031-03-03T07:00:00+00:00', ends_at: '2031-03-03T12:00:00+00:00', time_zone: 'Europe/London', rrule: 'FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20310630T235959Z', mode: 'skip_conflicts' }
  ]
})
export type SeriesInput = Static<typeof SeriesInput>

/** One occurrence that was not booked, and the live allocations that were in its way. */
const OccurrenceConflict = Type.Object({
  starts_at: DateTime,
  ends_at: DateTime,
  conflicts: Type.Array(Allocation, { description: 'The allocations the occurrence overlaps' })
})

export const SkippedOccurrence = Type.Object({
  ...OccurrenceConflict.properties,
  reason: Type.Union([Type.Literal('conflict'), Type.Literal('rule')], {
    description: 'Why it was skipped: conflict, the slot was taken (conflicts lists what was in the way); rule, a booking rule binding members forbids it (see rule)'
  }),
  rule: Type.Optional(RuleBreach)
})

export const Series = Type.Object({
  id: Uuid,
  resource_id: Uuid,
  resource_type: Type.String(),
  rrule: Type.String({ description: 'The rule as sent (without an RRULE: prefix)' }),
  time_zone: Type.String({ description: 'The IANA zone, as Intl names it (aliases such as US/Eastern become America/New_York)' }),
  mode: SeriesMode,
  kind: Kind,
  starts_at: DateTime,
  ends_at: DateTime,
  description: Nullable(Type.String()),
  data: Data,
  owner_id: Nullable(accountId('The account that created it (members may cancel only their own)')),
  created_at: DateTime,
  allocations: Type.Array(Allocation, { description: 'Every occurrence booked, by start, with its status as of now (cancelled ones stay as history)' }),
  skipped: Type.Array(SkippedOccurrence, { description: 'The occurrences skip_conflicts left out at creation, each with what was in its way then' })
}, {
  examples: [{
    id: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
    resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90',
    resource_type: 'computer',
    rrule: EXAMPLE_RULE,
    time_zone: 'Europe/Lisbon',
    mode: 'all_or_nothing',
    kind: 'booking',
    starts_at: '2031-03-03T09:00:00Z',
    ends_at: '2031-03-03T11:00:00Z',
    description: 'Sequencer, spring term',
    data: {},
    owner_id: 2,
    created_at: '2031-02-20T10:00:00Z',
    allocations: [],
    skipped: []
  }]
})
export type Series = Static<typeof Series>
export type SkippedOccurrence = Static<typeof SkippedOccurrence>

export const SeriesParams = Type.Object({ id: Uuid })

export const SeriesCancelQuery = Type.Object({
  from: Type.Optional(Type.String({ format: 'date-time', description: 'Cancel the occurrences starting at or after this time (default: now, so past ones stay)', examples: ['2031-05-01T00:00:00Z'] }))
}, { additionalProperties: false })

export const SeriesConflictBody = Type.Object({
  ...ErrorBody.properties,
  // Optional: other 409s (an Idempotency-Key in use) carry no conflicts.
  conflicts: Type.Optional(Type.Array(OccurrenceConflict))
}, {
  description: 'Conflict. For SERIES_CONFLICT, conflicts lists each occurrence that collides, with the allocations in its way; nothing was booked',
  examples: [{ statusCode: 409, code: 'SERIES_CONFLICT', error: 'Conflict', message: '1 occurrence of the series collides with existing allocations; nothing was booked', conflicts: [{ starts_at: '2031-03-10T09:00:00Z', ends_at: '2031-03-10T11:00:00Z', conflicts: [] }] }]
})
