import { Type, type Static, type TArray, type TNull, type TOptional, type TString, type TUnion } from '@sinclair/typebox'
import { ISO_DURATION } from './availability.js'
import { DateTime, ErrorBody, Uuid } from './common.js'

/** The longest duration a rule may hold; anything longer is no rule anyone means. */
export const MAX_RULE_YEARS = 100

/** A rule's length: an ISO 8601 duration, zero allowed (a zero buffer is no buffer). */
const RuleDuration = Type.String({
  pattern: ISO_DURATION,
  description: `ISO 8601 duration (PT30M, PT2H, P3D, P1W, P1DT12H), at most P${MAX_RULE_YEARS}Y. Replies give it normalised by PostgreSQL (PT90M reads PT1H30M, P1W reads P7D)`,
  examples: ['PT30M']
})

/** A rule's length as replies give it: PostgreSQL's ISO 8601 spelling, not checked again on the way out. */
const StoredDuration = Type.String({ description: 'ISO 8601 duration', examples: ['PT30M'] })

export const RULE_DURATION_FIELDS = ['min_duration', 'max_duration', 'min_notice', 'max_advance', 'buffer_before', 'buffer_after'] as const
export type RuleDurationField = typeof RULE_DURATION_FIELDS[number]
/** The calendar-shaped rules: when members may book, read on the wall clock of time_zone. */
const CALENDAR_FIELDS = ['time_zone', 'opening_hours', 'slot_grid', 'quotas'] as const
type CalendarField = typeof CALENDAR_FIELDS[number]
const RULE_FIELDS = [...RULE_DURATION_FIELDS, 'members_may_book_open_ended', ...CALENDAR_FIELDS] as const
type RuleField = typeof RULE_FIELDS[number]
/** The rules that bind members only (buffers bind everyone, through the exclusion constraint), in the order a refusal is judged. */
const MEMBER_RULES = ['members_may_book_open_ended', 'min_duration', 'max_duration', 'min_notice', 'max_advance', 'opening_hours', 'slot_grid', 'quota'] as const
export type MemberRule = typeof MEMBER_RULES[number]

const descriptions: Record<RuleField, string> = {
  min_duration: 'Shortest booking a member may make (exactly this long is allowed)',
  max_duration: 'Longest booking a member may make (exactly this long is allowed)',
  min_notice: 'How long before its start a member\'s booking must be made',
  max_advance: 'How far ahead of now a member\'s booking may start',
  buffer_before: 'Time kept free before every allocation, for everyone, enforced by the database',
  buffer_after: 'Time kept free after every allocation (turnaround), for everyone, enforced by the database',
  members_may_book_open_ended: 'Whether members may book with starts_at or ends_at null (admins always may)',
  time_zone: 'IANA time zone (as PostgreSQL knows it, e.g. Europe/Lisbon) in which opening_hours, slot_grid and quotas are read',
  opening_hours: 'When members may book, as wall-clock intervals per weekday in time_zone; a day left out or [] is closed, "24:00" ends a day, and intervals that touch (Friday to 24:00, Saturday from 00:00) join',
  slot_grid: 'Members\' bookings start and end on steps of this length from each local midnight in time_zone: a step that divides a day evenly (PT15M, PT1H, PT90M), or P1D (local days)',
  quotas: 'How much one member may have booked per calendar period in time_zone (weeks run Monday to Sunday), counting their held and confirmed bookings by the part within the period. A type\'s quotas count the member\'s bookings of every resource of the type; a resource\'s count that resource; both bind'
}

/** A time of day on the wall clock: HH:MM (H:MM and HH:MM:00 are read too), 00:00 to 24:00. */
const TimeOfDay = Type.String({
  pattern: '^(([01]?[0-9]|2[0-3]):[0-5][0-9]|24:00)(:00)?$',
  description: 'HH:MM, 00:00 to 24:00 (24:00 ends the day); replies give HH:MM',
  examples: ['08:00']
})

const OpenInterval = Type.Array(TimeOfDay, {
  minItems: 2,
  maxItems: 2,
  description: '[start, end): open from start until end, on the wall clock; end after start, not overlapping another interval of the day',
  examples: [['08:00', '12:00']]
})

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const
type Weekday = typeof WEEKDAYS[number]

/** At most this many intervals a day: enough for a half-hourly timetable. */
const MAX_INTERVALS_A_DAY = 48

const OPENING_HOURS_EXAMPLE = { mon: [['08:00', '12:00'], ['13:00', '18:00']], tue: [['08:00', '18:00']], wed: [['08:00', '18:00']], thu: [['08:00', '18:00']], fri: [['08:00', '18:00']], sat: [], sun: [] }

const OpeningHoursInput = Type.Object(Object.fromEntries(WEEKDAYS.map((day) =>
  [day, Type.Optional(Type.Array(OpenInterval, { maxItems: MAX_INTERVALS_A_DAY }))])) as Record<Weekday, TOptional<TArray<typeof OpenInterval>>>, {
  additionalProperties: false,
  description: 'Weekdays mon to sun, each a list of [start, end) intervals; a day left out or [] is closed',
  examples: [OPENING_HOURS_EXAMPLE]
})
export type OpeningHoursInput = Static<typeof OpeningHoursInput>

const OpeningHours = Type.Object(Object.fromEntries(WEEKDAYS.map((day) =>
  [day, Type.Array(Type.Array(Type.String(), { minItems: 2, maxItems: 2 }))])) as Record<Weekday, TArray<TArray<TString>>>, {
  description: 'Every weekday, mon to sun, each a list of [start, end) intervals by start, times HH:MM; [] is closed',
  examples: [OPENING_HOURS_EXAMPLE]
})

const QuotaPeriod = Type.Union([Type.Literal('day'), Type.Literal('week'), Type.Literal('month')], {
  description: 'A calendar period in time_zone: a local day, a week from Monday 00:00, a month'
})

/** The most bookings a quota may count: a bound no real quota comes near. */
const MAX_QUOTA_BOOKINGS = 1_000_000

const QuotaInput = Type.Object({
  period: QuotaPeriod,
  max_duration: Type.Optional(Type.Union([RuleDuration, Type.Null()], { description: 'The most a member may have booked within one period, in elapsed time (P1D is 24 hours); null: no limit' })),
  max_bookings: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_QUOTA_BOOKINGS }), Type.Null()], { description: 'How many bookings a member may have within one period (one that spans two periods counts in both); null: no limit' }))
}, { additionalProperties: false, description: 'At least one of max_duration and max_bookings', examples: [{ period: 'week', max_duration: 'PT10H', max_bookings: null }] })

const Quota = Type.Object({
  period: QuotaPeriod,
  max_duration: Type.Union([StoredDuration, Type.Null()]),
  max_bookings: Type.Union([Type.Integer(), Type.Null()])
}, { examples: [{ period: 'week', max_duration: 'PT10H', max_bookings: null }] })

/** At most this many quotas per type or resource. */
const MAX_QUOTAS = 20

/** The four calendar fields as a PUT takes them; `nullMeans` says what null is. */
const calendarInput = (nullMeans: string) => ({
  time_zone: Type.Union([Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$', examples: ['Europe/Lisbon'] }), Type.Null()], { description: `${descriptions.time_zone}; null: ${nullMeans === 'no rule' ? 'UTC' : nullMeans}` }),
  opening_hours: Type.Union([OpeningHoursInput, Type.Null()], { description: `${descriptions.opening_hours}; null: ${nullMeans === 'no rule' ? 'always open' : nullMeans}` }),
  slot_grid: Type.Union([RuleDuration, Type.Null()], { description: `${descriptions.slot_grid}; null: ${nullMeans === 'no rule' ? 'no grid' : nullMeans}` }),
  quotas: Type.Union([Type.Array(QuotaInput, { maxItems: MAX_QUOTAS }), Type.Null()], { description: `${descriptions.quotas}; null or []: ${nullMeans === 'no rule' ? 'none' : 'none of its own (the type\'s still bind)'}` })
})

/** The four calendar fields as replies give them: zones as given, times HH:MM, durations normalised. */
const calendar = (nullMeans: Record<CalendarField, string>) => ({
  time_zone: Type.Union([Type.String(), Type.Null()], { description: `${descriptions.time_zone}; null: ${nullMeans.time_zone}` }),
  opening_hours: Type.Union([OpeningHours, Type.Null()], { description: `${descriptions.opening_hours}; null: ${nullMeans.opening_hours}` }),
  slot_grid: Type.Union([StoredDuration, Type.Null()], { description: `${descriptions.slot_grid}; null: ${nullMeans.slot_grid}` }),
  quotas: Type.Union([Type.Array(Quota), Type.Null()], { description: `${descriptions.quotas}; null: ${nullMeans.quotas}` })
})

const TYPE_NULLS = { time_zone: 'UTC', opening_hours: 'always open', slot_grid: 'no grid', quotas: 'none' }

const durations = (nullMeans: string, duration: TString = RuleDuration) => Object.fromEntries(RULE_DURATION_FIELDS.map((field) =>
  [field, Type.Union([duration, Type.Null()], { description: `${descriptions[field]}; null: ${nullMeans}` })])) as
  Record<RuleDurationField, TUnion<[TString, TNull]>>

const EXAMPLE = {
  min_duration: 'PT30M',
  max_duration: 'P3D',
  min_notice: 'PT2H',
  max_advance: 'P90D',
  buffer_before: null,
  buffer_after: 'PT1H',
  members_may_book_open_ended: false,
  time_zone: 'Europe/Berlin',
  opening_hours: null,
  slot_grid: 'PT30M',
  quotas: [{ period: 'week', max_duration: 'P2D', max_bookings: null }]
}

/** The rules of a type: what every resource of it follows unless it overrides a field. */
export const TypeRules = Type.Object({
  type: Type.String({ examples: ['lorry'] }),
  ...durations('no rule', StoredDuration),
  members_may_book_open_ended: Type.Boolean({ description: `${descriptions.members_may_book_open_ended}; false unless set` }),
  ...calendar(TYPE_NULLS)
}, { examples: [{ type: 'lorry', ...EXAMPLE }] })
export type TypeRules = Static<typeof TypeRules>

/** PUT replaces the type's rules whole: a field left out or null is no rule. */
export const TypeRulesInput = Type.Partial(Type.Object({
  ...durations('no rule'),
  members_may_book_open_ended: Type.Union([Type.Boolean(), Type.Null()], { description: `${descriptions.members_may_book_open_ended}; null: false` }),
  ...calendarInput('no rule')
}), {
  additionalProperties: false,
  description: 'Replaces the type\'s rules: a field left out or null is no rule (members_may_book_open_ended: false).',
  examples: [EXAMPLE]
})
export type TypeRulesInput = Static<typeof TypeRulesInput>

export const RuleSource = Type.Union([Type.Literal('resource'), Type.Literal('type'), Type.Literal('none')], {
  description: 'resource: the resource overrides it; type: inherited from its type; none: set by neither (no rule, or false)'
})

/** The rules in force for one resource, and where each comes from. */
export const ResourceRules = Type.Object({
  resource_id: Uuid,
  type: Type.String({ examples: ['lorry'] }),
  ...durations('no rule', StoredDuration),
  members_may_book_open_ended: Type.Boolean({ description: descriptions.members_may_book_open_ended }),
  ...calendar({ ...TYPE_NULLS, quotas: 'none of its own nor its type\'s (the resource\'s own quotas are shown when it has some, else its type\'s; the type\'s bind in either case)' }),
  sources: Type.Object(Object.fromEntries(RULE_FIELDS.map((field) => [field, RuleSource])) as Record<RuleField, typeof RuleSource>, {
    description: 'Per field, where its value comes from'
  })
}, {
  description: 'The effective rules: the resource\'s own where it sets them, else its type\'s',
  examples: [{
    resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90',
    type: 'lorry',
    ...EXAMPLE,
    buffer_after: 'PT30M',
    max_duration: 'P7D',
    sources: {
      min_duration: 'type',
      max_duration: 'resource',
      min_notice: 'type',
      max_advance: 'type',
      buffer_before: 'none',
      buffer_after: 'resource',
      members_may_book_open_ended: 'type',
      time_zone: 'type',
      opening_hours: 'none',
      slot_grid: 'type',
      quotas: 'type'
    }
  }]
})
export type ResourceRules = Static<typeof ResourceRules>

/** PUT replaces the resource's overrides whole: a field left out or null inherits the type's. */
export const ResourceRulesInput = Type.Partial(Type.Object({
  ...durations('inherits the type\'s'),
  members_may_book_open_ended: Type.Union([Type.Boolean(), Type.Null()], { description: `${descriptions.members_may_book_open_ended}; null: inherits the type's` }),
  ...calendarInput('inherits the type\'s')
}), {
  additionalProperties: false,
  description: 'Replaces the resource\'s overrides: a field left out or null inherits the type\'s.',
  examples: [{ max_duration: 'P7D', buffer_after: 'PT30M' }]
})
export type ResourceRulesInput = Static<typeof ResourceRulesInput>

export const TypeParams = Type.Object({
  type: Type.String({ maxLength: 100, pattern: '^[a-z][a-z0-9_]*$', description: 'A resource type name, e.g. lorry', examples: ['lorry'] })
})

/** Which rule refused a member's booking: sent as `rule` in a 422 RULE_* body. */
export const RuleBreach = Type.Object({
  name: Type.Union(MEMBER_RULES.map((field) => Type.Literal(field)), { description: 'The rule, named as in the rules representation (quota: one of quotas)' }),
  limit: Type.Union([StoredDuration, Type.Boolean(), OpeningHours, Quota], {
    description: 'Its value: a duration; false for members_may_book_open_ended; the opening hours; the quota broken'
  }),
  source: Type.Union([Type.Literal('resource'), Type.Literal('type'), Type.Literal('none')], { description: 'Whether the resource or its type sets it (none: the default false of members_may_book_open_ended); for a quota, whose quotas it is' }),
  resource_id: Uuid,
  time_zone: Type.Optional(Type.String({ description: 'opening_hours, slot_grid and quota: the time zone the rule is read in (UTC when none is set)', examples: ['Europe/Lisbon'] })),
  period: Type.Optional(Type.Object({ starts_at: DateTime, ends_at: DateTime }, { description: 'quota: the calendar period whose quota the booking would exceed' })),
  used: Type.Optional(Type.Object({
    duration: StoredDuration,
    bookings: Type.Integer()
  }, { description: 'quota: what the member has already booked within the period (the part of each booking within it), not counting this booking' }))
})
export type RuleBreach = Static<typeof RuleBreach>

/**
 * 422 on a booking route: a member's booking broke a rule (code RULE_*, with `rule`), or
 * an Idempotency-Key was reused with another body (IDEMPOTENCY_KEY_REUSED, no `rule`).
 */
export const RuleViolationBody = Type.Object({
  ...ErrorBody.properties,
  rule: Type.Optional(RuleBreach)
}, {
  description: 'A booking rule refused a member\'s booking (code RULE_MIN_DURATION, RULE_MAX_DURATION, RULE_MIN_NOTICE, RULE_MAX_ADVANCE, RULE_OPEN_ENDED, RULE_OPENING_HOURS, RULE_SLOT_GRID or RULE_QUOTA, with rule), or the Idempotency-Key was already used with a different body (IDEMPOTENCY_KEY_REUSED)',
  examples: [{
    statusCode: 422,
    code: 'RULE_MAX_DURATION',
    error: 'Unprocessable Entity',
    message: 'max_duration is P3D: a booking of this resource may last at most P3D',
    rule: { name: 'max_duration', limit: 'P3D', source: 'type', resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90' }
  }]
})
