import { withTransaction, type Db } from './db.js'
import { DomainError, type DomainCode } from './outcomes.js'
import type { MemberRule, ResourceRules, RuleBreach, TypeRules, TypeRulesInput } from '../schemas/rules.js'

/**
 * Booking rules: per type (resource_type_rule), overridden per resource (resource_rule),
 * read through the effective_rule view. Durations go in as ISO 8601 text, which
 * PostgreSQL reads as an interval whatever the session, and come out through
 * iso_duration(), so the pool's IntervalStyle does not matter.
 */

const TYPE_COLUMNS = `
  iso_duration(tr.min_duration) AS min_duration, iso_duration(tr.max_duration) AS max_duration,
  iso_duration(tr.min_notice) AS min_notice, iso_duration(tr.max_advance) AS max_advance,
  iso_duration(tr.buffer_before) AS buffer_before, iso_duration(tr.buffer_after) AS buffer_after`

const GET_TYPE_RULES = `
  SELECT t.name AS type, ${TYPE_COLUMNS},
         coalesce(tr.members_may_book_open_ended, false) AS members_may_book_open_ended
  FROM resource_type t
  LEFT JOIN resource_type_rule tr ON tr.type = t.name
  WHERE t.name = $1`

// Selecting from resource_type makes an unknown type insert nothing (no row: 404)
// instead of failing on the foreign key.
const PUT_TYPE_RULES = `
  WITH saved AS (
    INSERT INTO resource_type_rule (type, min_duration, max_duration, min_notice, max_advance, buffer_before, buffer_after, members_may_book_open_ended)
    SELECT name, $2::interval, $3::interval, $4::interval, $5::interval, $6::interval, $7::interval, coalesce($8::boolean, false)
    FROM resource_type WHERE name = $1
    ON CONFLICT (type) DO UPDATE SET
      min_duration = EXCLUDED.min_duration, max_duration = EXCLUDED.max_duration,
      min_notice = EXCLUDED.min_notice, max_advance = EXCLUDED.max_advance,
      buffer_before = EXCLUDED.buffer_before, buffer_after = EXCLUDED.buffer_after,
      members_may_book_open_ended = EXCLUDED.members_may_book_open_ended
    RETURNING *
  )
  SELECT tr.type, ${TYPE_COLUMNS}, tr.members_may_book_open_ended
  FROM saved tr`

// $2 scopes the lookup to one type for the per-type routes; null means any type.
const GET_RESOURCE_RULES = `
  SELECT e.resource_id, e.type,
         iso_duration(e.min_duration) AS min_duration, iso_duration(e.max_duration) AS max_duration,
         iso_duration(e.min_notice) AS min_notice, iso_duration(e.max_advance) AS max_advance,
         iso_duration(e.buffer_before) AS buffer_before, iso_duration(e.buffer_after) AS buffer_after,
         e.members_may_book_open_ended,
         jsonb_build_object(
           'min_duration', e.min_duration_source, 'max_duration', e.max_duration_source,
           'min_notice', e.min_notice_source, 'max_advance', e.max_advance_source,
           'buffer_before', e.buffer_before_source, 'buffer_after', e.buffer_after_source,
           'members_may_book_open_ended', e.members_may_book_open_ended_source) AS sources
  FROM effective_rule e
  WHERE e.resource_id = $1 AND ($2::text IS NULL OR e.type = $2)`

const PUT_RESOURCE_RULES = `
  INSERT INTO resource_rule (resource_id, min_duration, max_duration, min_notice, max_advance, buffer_before, buffer_after, members_may_book_open_ended)
  SELECT id, $3::interval, $4::interval, $5::interval, $6::interval, $7::interval, $8::interval, $9::boolean
  FROM resource WHERE id = $1 AND ($2::text IS NULL OR type = $2)
  ON CONFLICT (resource_id) DO UPDATE SET
    min_duration = EXCLUDED.min_duration, max_duration = EXCLUDED.max_duration,
    min_notice = EXCLUDED.min_notice, max_advance = EXCLUDED.max_advance,
    buffer_before = EXCLUDED.buffer_before, buffer_after = EXCLUDED.buffer_after,
    members_may_book_open_ended = EXCLUDED.members_may_book_open_ended
  RETURNING resource_id`

// The first member rule a booking of $1 over [$3, $4) breaks, as of the database's now().
// $5: judge notice and advance (a move that keeps its start is not judged by them).
const FIRST_BREACH = `
  SELECT v.rule AS name, iso_duration(v.rule_limit) AS rule_limit, v.source, r.id AS resource_id
  FROM resource r
  CROSS JOIN LATERAL booking_rule_violations(r.id, allocation_range($3, $4), now()) v
  WHERE r.id = $1 AND ($2::text IS NULL OR r.type = $2)
    AND ($5::boolean OR v.rule NOT IN ('min_notice', 'max_advance'))
  ORDER BY v.ordinal
  LIMIT 1`

// For book-any-free's refusal: when a resource of the type (and site) has rules that allow
// the booking, no row; only when none does is the first by name's breach the answer. The
// resources are judged in name order and the search stops at the first one allowed
// (usually the first: rules are mostly the type's), so that a refusal for want of a free
// resource does not judge the whole fleet.
const FIRST_BREACH_OF_ALL = `
  SELECT r.id AS resource_id, v.rule AS name, iso_duration(v.rule_limit) AS rule_limit, v.source
  FROM resource r
  CROSS JOIN LATERAL (
    SELECT * FROM booking_rule_violations(r.id, allocation_range($3, $4), now()) ORDER BY ordinal LIMIT 1
  ) v
  WHERE r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)
    AND NOT EXISTS (
      SELECT 1 FROM resource allowed
      WHERE allowed.type = $1 AND ($2::bigint IS NULL OR allowed.site_id = $2)
        AND NOT EXISTS (SELECT 1 FROM booking_rule_violations(allowed.id, allocation_range($3, $4), now())))
  ORDER BY r.name, r.id
  LIMIT 1`

// For a recurring series: the first member rule each occurrence breaks, by its 1-based
// place n in the arrays, as of the database's now(); occurrences that break none are left out.
const FIRST_BREACH_OF_EACH = `
  SELECT o.n, o.starts_at, o.ends_at, v.rule AS name, iso_duration(v.rule_limit) AS rule_limit, v.source, r.id AS resource_id
  FROM resource r
  CROSS JOIN unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS o(starts_at, ends_at, n)
  CROSS JOIN LATERAL (
    SELECT * FROM booking_rule_violations(r.id, allocation_range(o.starts_at, o.ends_at), now()) ORDER BY ordinal LIMIT 1
  ) v
  WHERE r.id = $1
  ORDER BY o.n`

const DURATION_VALUES = (rules: TypeRulesInput) => [
  rules.min_duration ?? null, rules.max_duration ?? null, rules.min_notice ?? null,
  rules.max_advance ?? null, rules.buffer_before ?? null, rules.buffer_after ?? null
]

export async function getTypeRules (db: Db, type: string): Promise<TypeRules | undefined> {
  return (await db.query<TypeRules>(GET_TYPE_RULES, [type])).rows[0]
}

/** Replaces a type's rules (absent fields are no rule). Undefined when there is no such type. */
export async function putTypeRules (db: Db, type: string, rules: TypeRulesInput): Promise<TypeRules | undefined> {
  return (await db.query<TypeRules>(PUT_TYPE_RULES, [type, ...DURATION_VALUES(rules), rules.members_may_book_open_ended ?? null])).rows[0]
}

export async function getResourceRules (db: Db, resourceId: string, type?: string): Promise<ResourceRules | undefined> {
  return (await db.query<ResourceRules>(GET_RESOURCE_RULES, [resourceId, type ?? null])).rows[0]
}

/** Replaces a resource's overrides (absent fields inherit), then reads its effective rules. Undefined when not found (in `type`). */
export async function putResourceRules (db: Db, resourceId: string, type: string | undefined, rules: TypeRulesInput): Promise<ResourceRules | undefined> {
  return withTransaction(db, async (client) => {
    const saved = await client.query(PUT_RESOURCE_RULES, [resourceId, type ?? null, ...DURATION_VALUES(rules), rules.members_may_book_open_ended ?? null])
    return saved.rowCount === 0 ? undefined : getResourceRules(client, resourceId, type)
  })
}

/** The code of each member rule's refusal (the 422s a member's booking may get). */
export const RULE_CODES: Record<MemberRule, DomainCode> = {
  min_duration: 'RULE_MIN_DURATION',
  max_duration: 'RULE_MAX_DURATION',
  min_notice: 'RULE_MIN_NOTICE',
  max_advance: 'RULE_MAX_ADVANCE',
  members_may_book_open_ended: 'RULE_OPEN_ENDED'
}

const RULE_MESSAGES: Record<MemberRule, (limit: string) => string> = {
  members_may_book_open_ended: () => 'members_may_book_open_ended is false: members may not book this resource with an open start or end; give both starts_at and ends_at',
  min_duration: (limit) => `min_duration is ${limit}: a booking of this resource must last at least ${limit}`,
  max_duration: (limit) => `max_duration is ${limit}: a booking of this resource may last at most ${limit}`,
  min_notice: (limit) => `min_notice is ${limit}: a booking of this resource must be made at least ${limit} before it starts`,
  max_advance: (limit) => `max_advance is ${limit}: a booking of this resource may start at most ${limit} from now`
}

interface BreachRow { name: MemberRule, rule_limit: string | null, source: RuleBreach['source'], resource_id: string }

function breach (row: BreachRow): DomainError {
  const rule: RuleBreach = { name: row.name, limit: row.rule_limit ?? false, source: row.source, resource_id: row.resource_id }
  return new DomainError(RULE_CODES[row.name], RULE_MESSAGES[row.name](row.rule_limit ?? 'false'), { rule })
}

export interface Span { starts_at: string | null, ends_at: string | null }

/**
 * Refuses (RULE_*) a booking of the resource over `span` that breaks a rule binding
 * members. `judgeStart` false leaves out notice and advance (a move that keeps its
 * start). Nothing when the resource does not exist (in `type`): the write then finds
 * nothing either.
 */
export async function refuseBrokenRules (db: Db, resourceId: string, type: string | undefined, span: Span, judgeStart = true): Promise<void> {
  const row = (await db.query<BreachRow>(FIRST_BREACH, [resourceId, type ?? null, span.starts_at, span.ends_at, judgeStart])).rows[0]
  if (row) throw breach(row)
}

/**
 * For book-any-free that found nothing: refuses with the first resource's broken rule
 * when every resource of the type (at the site) has its rules broken by `span`, so the
 * member hears why rather than "nothing free". Nothing when at least one allows it.
 */
export async function refuseWhenEveryResourceBreaksRules (db: Db, type: string, siteId: number | undefined, span: Span): Promise<void> {
  const row = (await db.query<BreachRow | { name: null }>(FIRST_BREACH_OF_ALL, [type, siteId ?? null, span.starts_at, span.ends_at])).rows[0]
  if (row && row.name !== null) throw breach(row)
}

/** A span a member rule forbids: its place among those judged, its times as stored, and the refusal (RULE_*). */
export interface SpanBreach { index: number, starts_at: string, ends_at: string, refusal: DomainError }

/** For a recurring series: each of `spans` that a rule binding members forbids, in order, with its refusal. */
export async function brokenRulesOfEach (db: Db, resourceId: string, spans: Span[]): Promise<SpanBreach[]> {
  const { rows } = await db.query<BreachRow & { n: string, starts_at: string, ends_at: string }>(FIRST_BREACH_OF_EACH,
    [resourceId, spans.map((span) => span.starts_at), spans.map((span) => span.ends_at)])
  return rows.map((row) => ({ index: Number(row.n) - 1, starts_at: row.starts_at, ends_at: row.ends_at, refusal: breach(row) }))
}
