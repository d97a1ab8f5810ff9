import { Type, type Static, type TNull, type TString, type TUnion } from '@sinclair/typebox'
import { ISO_DURATION } from './availability.js'
import { ErrorBody, Uuid } from './common.js'

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
const RULE_FIELDS = [...RULE_DURATION_FIELDS, 'members_may_book_open_ended'] as const
export type RuleField = typeof RULE_FIELDS[number]
/** The rules that bind members only (buffers bind everyone, through the exclusion constraint). */
const MEMBER_RULES = ['members_may_book_open_ended', 'min_duration', 'max_duration', 'min_notice', 'max_advance'] as const
export type MemberRule = typeof MEMBER_RULES[number]

const descriptions: Record<RuleField, string> = {
  min_duration: 'Shortest booking a member may make (exactly this long is allowed)',
  max_duration: 'Longest booking a member may make (exactly this long is allowed)',
  min_notice: 'How long before its start a member\'s booking must be made',
  max_advance: 'How far ahead of now a member\'s booking may start',
  buffer_before: 'Time kept free before every allocation, for everyone, enforced by the database',
  buffer_after: 'Time kept free after every allocation (turnaround), for everyone, enforced by the database',
  members_may_book_open_ended: 'Whether members may book with starts_at or ends_at null (admins always may)'
}

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
  members_may_book_open_ended: false
}

/** The rules of a type: what every resource of it follows unless it overrides a field. */
export const TypeRules = Type.Object({
  type: Type.String({ examples: ['lorry'] }),
  ...durations('no rule', StoredDuration),
  members_may_book_open_ended: Type.Boolean({ description: `${descriptions.members_may_book_open_ended}; false unless set` })
}, { examples: [{ type: 'lorry', ...EXAMPLE }] })
export type TypeRules = Static<typeof TypeRules>

/** PUT replaces the type's rules whole: a field left out or null is no rule. */
export const TypeRulesInput = Type.Partial(Type.Object({
  ...durations('no rule'),
  members_may_book_open_ended: Type.Union([Type.Boolean(), Type.Null()], { description: `${descriptions.members_may_book_open_ended}; null: false` })
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
    sources: { min_duration: 'type', max_duration: 'resource', min_notice: 'type', max_advance: 'type', buffer_before: 'none', buffer_after: 'resource', members_may_book_open_ended: 'type' }
  }]
})
export type ResourceRules = Static<typeof ResourceRules>

/** PUT replaces the resource's overrides whole: a field left out or null inherits the type's. */
export const ResourceRulesInput = Type.Partial(Type.Object({
  ...durations('inherits the type\'s'),
  members_may_book_open_ended: Type.Union([Type.Boolean(), Type.Null()], { description: `${descriptions.members_may_book_open_ended}; null: inherits the type's` })
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
  name: Type.Union(MEMBER_RULES.map((field) => Type.Literal(field)), { description: 'The rule, named as in the rules representation' }),
  limit: Type.Union([StoredDuration, Type.Boolean()], { description: 'Its value: a duration, or false for members_may_book_open_ended' }),
  source: Type.Union([Type.Literal('resource'), Type.Literal('type'), Type.Literal('none')], { description: 'Whether the resource or its type sets it (none: the default false of members_may_book_open_ended)' }),
  resource_id: Uuid
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
  description: 'A booking rule refused a member\'s booking (code RULE_MIN_DURATION, RULE_MAX_DURATION, RULE_MIN_NOTICE, RULE_MAX_ADVANCE or RULE_OPEN_ENDED, with rule), or the Idempotency-Key was already used with a different body (IDEMPOTENCY_KEY_REUSED)',
  examples: [{
    statusCode: 422,
    code: 'RULE_MAX_DURATION',
    error: 'Unprocessable Entity',
    message: 'max_duration is P3D: a booking of this resource may last at most P3D',
    rule: { name: 'max_duration', limit: 'P3D', source: 'type', resource_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90' }
  }]
})
