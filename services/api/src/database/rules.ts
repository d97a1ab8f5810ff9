import { prepared, withTransaction, type Db } from './db.js'
import { ruleViolation, type DomainCode, type DomainError } from './outcomes.js'
import type { MemberRule, ResourceRules, RuleBreach, TypeRules, TypeRulesInput } from '../schemas/rules.js'

/**
 * Booking rules: per type (resource_type_rule), overridden per resource (resource_rule),
 * read through the effective_rule view. Durations go in as ISO 8601 text, which
 * PostgreSQL reads as an interval whatever the session, and come out through
 * iso_duration(), so the pool's IntervalStyle does not matter. Opening hours and quotas
 * are jsonb; they come out through opening_hours_in_order() and quotas_in_order(), as
 * json, so that replies list weekdays and quota fields in a fixed order.
 */

const TYPE_COLUMNS = `
  iso_duration(tr.min_duration) AS min_duration, iso_duration(tr.max_duration) AS max_duration,
  iso_duration(tr.min_notice) AS min_notice, iso_duration(tr.max_advance) AS max_advance,
  iso_duration(tr.buffer_before) AS buffer_before, iso_duration(tr.buffer_after) AS buffer_after`

/** The calendar-shaped rules of `rules`, a row of resource_type_rule or effective_rule. */
const calendarColumns = (rules: string) => `
  ${rules}.time_zone, opening_hours_in_order(${rules}.opening_hours) AS opening_hours,
  iso_duration(${rules}.slot_grid) AS slot_grid, quotas_in_order(${rules}.quotas) AS quotas`

const GET_TYPE_RULES = `
  SELECT t.name AS type, ${TYPE_COLUMNS},
         coalesce(tr.members_may_book_open_ended, false) AS members_may_book_open_ended,
         ${calendarColumns('tr')}
  FROM resource_type t
  LEFT JOIN resource_type_rule tr ON tr.type = t.name
  WHERE t.name = $1`

// Selecting from resource_type makes an unknown type insert nothing (no row: 404)
// instead of failing on the foreign key.
const PUT_TYPE_RULES = `
  WITH saved AS (
    INSERT INTO resource_type_rule (type, min_duration, max_duration, min_notice, max_advance, buffer_before, buffer_after, members_may_book_open_ended,
                                    time_zone, opening_hours, slot_grid, quotas)
    SELECT name, $2::interval, $3::interval, $4::interval, $5::interval, $6::interval, $7::interval, coalesce($8::boolean, false),
           $9::text, $10::jsonb, $11::interval, $12::jsonb
    FROM resource_type WHERE name = $1
    ON CONFLICT (type) DO UPDATE SET
      min_duration = EXCLUDED.min_duration, max_duration = EXCLUDED.max_duration,
      min_notice = EXCLUDED.min_notice, max_advance = EXCLUDED.max_advance,
      buffer_before = EXCLUDED.buffer_before, buffer_after = EXCLUDED.buffer_after,
      members_may_book_open_ended = EXCLUDED.members_may_book_open_ended,
      time_zone = EXCLUDED.time_zone, opening_hours = EXCLUDED.opening_hours,
      slot_grid = EXCLUDED.slot_grid, quotas = EXCLUDED.quotas
    RETURNING *
  )
  SELECT tr.type, ${TYPE_COLUMNS}, tr.members_may_book_open_ended, ${calendarColumns('tr')}
  FROM saved tr`

// $2 scopes the lookup to one type for the per-type routes; null means any type.
const GET_RESOURCE_RULES = `
  SELECT e.resource_id, e.type,
         iso_duration(e.min_duration) AS min_duration, iso_duration(e.max_duration) AS max_duration,
         iso_duration(e.min_notice) AS min_notice, iso_duration(e.max_advance) AS max_advance,
         iso_duration(e.buffer_before) AS buffer_before, iso_duration(e.buffer_after) AS buffer_after,
         e.members_may_book_open_ended,
         ${calendarColumns('e')},
         jsonb_build_object(
           'min_duration', e.min_duration_source, 'max_duration', e.max_duration_source,
           'min_notice', e.min_notice_source, 'max_advance', e.max_advance_source,
           'buffer_before', e.buffer_before_source, 'buffer_after', e.buffer_after_source,
           'members_may_book_open_ended', e.members_may_book_open_ended_source,
           'time_zone', e.time_zone_source, 'opening_hours', e.opening_hours_source,
           'slot_grid', e.slot_grid_source, 'quotas', e.quotas_source) AS sources
  FROM effective_rule e
  WHERE e.resource_id = $1 AND ($2::text IS NULL OR e.type = $2)`

const PUT_RESOURCE_RULES = `
  INSERT INTO resource_rule (resource_id, min_duration, max_duration, min_notice, max_advance, buffer_before, buffer_after, members_may_book_open_ended,
                             time_zone, opening_hours, slot_grid, quotas)
  SELECT id, $3::interval, $4::interval, $5::interval, $6::interval, $7::interval, $8::interval, $9::boolean,
         $10::text, $11::jsonb, $12::interval, $13::jsonb
  FROM resource WHERE id = $1 AND ($2::text IS NULL OR type = $2)
  ON CONFLICT (resource_id) DO UPDATE SET
    min_duration = EXCLUDED.min_duration, max_duration = EXCLUDED.max_duration,
    min_notice = EXCLUDED.min_notice, max_advance = EXCLUDED.max_advance,
    buffer_before = EXCLUDED.buffer_before, buffer_after = EXCLUDED.buffer_after,
    members_may_book_open_ended = EXCLUDED.members_may_book_open_ended,
    time_zone = EXCLUDED.time_zone, opening_hours = EXCLUDED.opening_hours,
    slot_grid = EXCLUDED.slot_grid, quotas = EXCLUDED.quotas
  RETURNING resource_id`

// A refusal by a rule of booking_rule_violations() (`v`), with the rules in force (`e`):
// the columns every breach query gives, a quota's own left null.
const RULE_BREACH = `
  v.ordinal, v.rule AS name,
  CASE v.rule WHEN 'members_may_book_open_ended' THEN 'false'::json
              WHEN 'opening_hours' THEN opening_hours_in_order(e.opening_hours)
              ELSE to_json(iso_duration(v.rule_limit)) END AS rule_limit,
  v.source, e.resource_id,
  CASE WHEN v.rule IN ('opening_hours', 'slot_grid') THEN coalesce(e.time_zone, 'UTC') END AS time_zone,
  NULL::timestamptz AS period_starts_at, NULL::timestamptz AS period_ends_at,
  NULL::text AS used_duration, NULL::bigint AS used_bookings, NULL::text AS added_duration`

// A refusal by a quota (`q`, a row of booking_quota_breach()) of a booking of resource `r`:
// the same columns. Durations used are elapsed time, so written in hours (PT26H, not P1DT2H).
const QUOTA_BREACH = `
  8 AS ordinal, 'quota' AS name, quotas_in_order(jsonb_build_array(q.quota)) -> 0 AS rule_limit,
  q.source, r.id AS resource_id, q.time_zone,
  lower(q.period) AS period_starts_at, upper(q.period) AS period_ends_at,
  iso_duration(make_interval(secs => extract(epoch FROM q.used_duration))) AS used_duration, q.used_bookings,
  iso_duration(make_interval(secs => extract(epoch FROM q.added_duration))) AS added_duration`

// The first member rule a booking of $1 over [$3, $4) breaks, as of the database's now().
// $5: judge notice and advance (a move that keeps its start is not judged by them).
// $6: the member whose quotas count (null: none), $7 an allocation of theirs not to count
// (the one being moved). The quotas are judged under their locks, which a caller's
// transaction keeps until it ends.
const FIRST_BREACH = `
  SELECT * FROM (
    SELECT ${RULE_BREACH}
    FROM resource r
    JOIN effective_rule e ON e.resource_id = r.id
    CROSS JOIN LATERAL booking_rule_violations(r.id, allocation_range($3, $4), now()) v
    WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
      AND ($5::boolean OR v.rule NOT IN ('min_notice', 'max_advance'))
    UNION ALL
    SELECT ${QUOTA_BREACH}
    FROM resource r
    CROSS JOIN LATERAL booking_quota_breach(r.id, allocation_range($3, $4), $6::bigint, $7::uuid) q
    WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
  ) AS breach
  ORDER BY ordinal
  LIMIT 1`

// The first refusal of a member's booking of resource `r` over [$3, $4): its first broken
// rule, else the first quota of member $5 it breaks (read without the lock: an explanation).
const firstBreachOf = (r: string) => `
    SELECT * FROM (
      SELECT ${RULE_BREACH}
      FROM effective_rule e
      CROSS JOIN LATERAL booking_rule_violations(e.resource_id, allocation_range($3, $4), now()) v
      WHERE e.resource_id = ${r}.id
      UNION ALL
      SELECT ${QUOTA_BREACH}
      FROM booking_quota_breaches(${r}.id, allocation_range($3, $4), $5::bigint) q
    ) AS breach
    ORDER BY ordinal
    LIMIT 1`

// For book-any-free's refusal: whether a resource of the type (and site) has rules, and
// member $5 quotas, that allow the booking. The search stops at the first one allowed
// (usually the first: rules are mostly the type's), so that a refusal for want of a free
// resource does not judge the whole fleet; booking_rules_allow() and
// booking_quotas_allow() keep the rules' statements out of this one's plan.
const ANY_ALLOWED = `
  SELECT EXISTS (
    SELECT 1 FROM resource r
    WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
      AND booking_rules_allow(r.id, allocation_range($3, $4), now())
      AND booking_quotas_allow(r.id, allocation_range($3, $4), $5::bigint)) AS allowed`

// When none is: the breach of the first resource by name is the answer. Asked only then,
// since planning it (the rule and quota functions inlined) costs more than running it.
const FIRST_BREACH_OF_FIRST = `
  SELECT b.*
  FROM (SELECT r.id FROM resource r
        WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
        ORDER BY r.name, r.id
        LIMIT 1) AS r
  CROSS JOIN LATERAL (${firstBreachOf('r')}) b`

// For a recurring series: the first member rule each occurrence breaks, by its 1-based
// place n in the arrays, as of the database's now(); occurrences that break none are left
// out. Quotas are judged as the occurrences are inserted (series.ts).
const FIRST_BREACH_OF_EACH = `
  SELECT o.n, o.starts_at, o.ends_at, b.*
  FROM resource r
  JOIN effective_rule e ON e.resource_id = r.id
  CROSS JOIN unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS o(starts_at, ends_at, n)
  CROSS JOIN LATERAL (
    SELECT ${RULE_BREACH}
    FROM booking_rule_violations(r.id, allocation_range(o.starts_at, o.ends_at), now()) v
    ORDER BY v.ordinal LIMIT 1
  ) b
  WHERE r.id = $1
  ORDER BY o.n`

// For a recurring series after its insert: the quota each occurrence of $4 (not inserted)
// broke, judged as the insert judged it: the series' own occurrences counted up to, not
// from, the one judged.
const QUOTA_BREACH_OF_EACH = `
  SELECT o.n, o.starts_at, o.ends_at, b.*
  FROM resource r
  CROSS JOIN unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS o(starts_at, ends_at, n)
  CROSS JOIN LATERAL (
    SELECT ${QUOTA_BREACH}
    FROM booking_quota_breach(r.id, allocation_range(o.starts_at, o.ends_at), $5::bigint, NULL, $4::uuid) q
  ) b
  WHERE r.id = $1
  ORDER BY o.n`

/** The JSON text a jsonb parameter takes: node-postgres would send a JS array as a PostgreSQL array. */
const json = (value: unknown) => value === undefined || value === null ? null : JSON.stringify(value)

const RULE_VALUES = (rules: TypeRulesInput) => [
  rules.min_duration ?? null, rules.max_duration ?? null, rules.min_notice ?? null,
  rules.max_advance ?? null, rules.buffer_before ?? null, rules.buffer_after ?? null,
  rules.members_may_book_open_ended ?? null,
  rules.time_zone ?? null, json(rules.opening_hours), rules.slot_grid ?? null, json(rules.quotas)
]

export async function getTypeRules (db: Db, type: string): Promise<TypeRules | undefined> {
  return (await db.query<TypeRules>(GET_TYPE_RULES, [type])).rows[0]
}

/** Replaces a type's rules (absent fields are no rule). Undefined when there is no such type. */
export async function putTypeRules (db: Db, type: string, rules: TypeRulesInput): Promise<TypeRules | undefined> {
  return (await db.query<TypeRules>(PUT_TYPE_RULES, [type, ...RULE_VALUES(rules)])).rows[0]
}

export async function getResourceRules (db: Db, resourceId: string, type?: string): Promise<ResourceRules | undefined> {
  return (await db.query<ResourceRules>(GET_RESOURCE_RULES, [resourceId, type ?? null])).rows[0]
}

/** Replaces a resource's overrides (absent fields inherit), then reads its effective rules. Undefined when not found (in `type`). */
export async function putResourceRules (db: Db, resourceId: string, type: string | undefined, rules: TypeRulesInput): Promise<ResourceRules | undefined> {
  return withTransaction(db, async (client) => {
    const saved = await client.query(PUT_RESOURCE_RULES, [resourceId, type ?? null, ...RULE_VALUES(rules)])
    return saved.rowCount === 0 ? undefined : getResourceRules(client, resourceId, type)
  })
}

/** The code of each member rule's refusal (the 422s a member's booking may get). */
export const RULE_CODES: Record<MemberRule, DomainCode> = {
  min_duration: 'RULE_MIN_DURATION',
  max_duration: 'RULE_MAX_DURATION',
  min_notice: 'RULE_MIN_NOTICE',
  max_advance: 'RULE_MAX_ADVANCE',
  members_may_book_open_ended: 'RULE_OPEN_ENDED',
  opening_hours: 'RULE_OPENING_HOURS',
  slot_grid: 'RULE_SLOT_GRID',
  quota: 'RULE_QUOTA'
}

interface BreachRow {
  name: MemberRule
  rule_limit: RuleBreach['limit'] | null
  source: RuleBreach['source']
  resource_id: string
  time_zone: string | null
  period_starts_at: string | null
  period_ends_at: string | null
  used_duration: string | null
  used_bookings: number | null
  added_duration: string | null
}

type Quota = Extract<RuleBreach['limit'], { period: string }>

function quotaMessage (row: BreachRow): string {
  const quota = row.rule_limit as Quota
  const limits = [quota.max_duration, quota.max_bookings === null ? null : `${quota.max_bookings} booking${quota.max_bookings === 1 ? '' : 's'}`]
    .filter((limit) => limit !== null).join(' in at most ')
  const whose = row.source === 'type' ? 'its type\'s quota (counting every resource of the type)' : 'its quota'
  const used = `${row.used_duration} in ${row.used_bookings} booking${row.used_bookings === 1 ? '' : 's'}`
  const adding = row.added_duration === null ? 'an open-ended booking fits no quota' : `this booking would add ${row.added_duration}`
  return `quota: ${whose} allows a member at most ${limits} per ${quota.period} (in ${row.time_zone}); ` +
    `the ${quota.period} from ${row.period_starts_at} to ${row.period_ends_at} already has ${used}, and ${adding}`
}

/** A duration rule's limit as text (the others' limits are not written into their messages). */
const durationOf = (row: BreachRow) => typeof row.rule_limit === 'string' ? row.rule_limit : ''

const RULE_MESSAGES: Record<MemberRule, (row: BreachRow) => string> = {
  members_may_book_open_ended: () => 'members_may_book_open_ended is false: members may not book this resource with an open start or end; give both starts_at and ends_at',
  min_duration: (row) => `min_duration is ${durationOf(row)}: a booking of this resource must last at least ${durationOf(row)}`,
  max_duration: (row) => `max_duration is ${durationOf(row)}: a booking of this resource may last at most ${durationOf(row)}`,
  min_notice: (row) => `min_notice is ${durationOf(row)}: a booking of this resource must be made at least ${durationOf(row)} before it starts`,
  max_advance: (row) => `max_advance is ${durationOf(row)}: a booking of this resource may start at most ${durationOf(row)} from now`,
  opening_hours: (row) => `opening_hours: a booking of this resource must lie entirely within its opening hours, read in ${row.time_zone} ` +
    `(GET /api/resources/${row.resource_id}/rules); an open-ended booking never does`,
  slot_grid: (row) => durationOf(row) === 'P1D'
    ? `slot_grid is P1D: a booking of this resource must start and end at a local midnight in ${row.time_zone}`
    : `slot_grid is ${durationOf(row)}: a booking of this resource must start and end a whole number of ${durationOf(row)} steps after a local midnight in ${row.time_zone}`,
  quota: quotaMessage
}

function breach (row: BreachRow): DomainError {
  const rule: RuleBreach = { name: row.name, limit: row.rule_limit ?? false, source: row.source, resource_id: row.resource_id }
  if (row.time_zone !== null) rule.time_zone = row.time_zone
  if (row.period_starts_at !== null && row.period_ends_at !== null) rule.period = { starts_at: row.period_starts_at, ends_at: row.period_ends_at }
  if (row.used_duration !== null && row.used_bookings !== null) rule.used = { duration: row.used_duration, bookings: Number(row.used_bookings) }
  return ruleViolation(RULE_CODES[row.name], RULE_MESSAGES[row.name](row), rule)
}

export interface Span { starts_at: string | null, ends_at: string | null }

/** Whose quotas a booking is judged by: the member booking (null: no quotas are judged), and an allocation of theirs not to count. */
export interface QuotaOwner { owner: number | null, except?: string }

/**
 * Refuses (RULE_*) a booking of the resource over `span` that breaks a rule binding
 * members, or a quota of `quota.owner`. `judgeStart` false leaves out notice and advance
 * (a move that keeps its start). Nothing when the resource does not exist (in `type`):
 * the write then finds nothing either.
 */
export async function refuseBrokenRules (db: Db, resourceId: string, type: string | undefined, span: Span, quota: QuotaOwner, judgeStart = true): Promise<void> {
  const row = (await db.query<BreachRow>(FIRST_BREACH, [resourceId, type ?? null, span.starts_at, span.ends_at, judgeStart,
    quota.owner, quota.except ?? null])).rows[0]
  if (row) throw breach(row)
}

/**
 * For book-any-free that found nothing: refuses with the first resource's broken rule (or
 * quota of `owner`) when every resource of the type (at the site) has its rules broken by
 * `span`, so the member hears why rather than "nothing free". Nothing when at least one allows it.
 */
export async function refuseWhenEveryResourceBreaksRules (db: Db, type: string, siteId: number | undefined, span: Span, owner: number): Promise<void> {
  const values = [type, siteId ?? null, span.starts_at, span.ends_at, owner]
  if ((await db.query<{ allowed: boolean }>(prepared('rules-any-allowed', ANY_ALLOWED, values))).rows[0]!.allowed) return
  const row = (await db.query<BreachRow>(FIRST_BREACH_OF_FIRST, values)).rows[0]
  if (row) throw breach(row)
}

/** A span a member rule forbids: its place among those judged, its times as stored, and the refusal (RULE_*). */
export interface SpanBreach { index: number, starts_at: string, ends_at: string, refusal: DomainError }

type SpanBreachRow = BreachRow & { n: string, starts_at: string, ends_at: string }

const spanBreach = (row: SpanBreachRow): SpanBreach =>
  ({ index: Number(row.n) - 1, starts_at: row.starts_at, ends_at: row.ends_at, refusal: breach(row) })

/** For a recurring series: each of `spans` that a rule binding members forbids, in order, with its refusal. Quotas: quotaBreachesOfEach. */
export async function brokenRulesOfEach (db: Db, resourceId: string, spans: Span[]): Promise<SpanBreach[]> {
  const { rows } = await db.query<SpanBreachRow>(FIRST_BREACH_OF_EACH,
    [resourceId, spans.map((span) => span.starts_at), spans.map((span) => span.ends_at)])
  return rows.map(spanBreach)
}

/**
 * For a recurring series whose insert left out `spans`: each that a quota of `owner`
 * refused, in order, judged as the insert judged it (counting the series' occurrences
 * before it, not those after).
 */
export async function quotaBreachesOfEach (db: Db, resourceId: string, seriesId: string, owner: number, spans: Span[]): Promise<SpanBreach[]> {
  const { rows } = await db.query<SpanBreachRow>(QUOTA_BREACH_OF_EACH,
    [resourceId, spans.map((span) => span.starts_at), spans.map((span) => span.ends_at), seriesId, owner])
  return rows.map(spanBreach)
}
