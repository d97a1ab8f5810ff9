import { prepared, walkedAll, walkedPage, walkFor, walkLimit, type Db, type Page, type Walked } from './db.js'
import type { FreeTime, Slot } from '../schemas/availability.js'

/**
 * The window searched for resource `e` (a row of effective_rule): for a member ($member
 * true) only the part they may book in, [now + min_notice, now + max_advance), so they
 * see nothing that breaks notice or advance. resource_free_time keeps every gap clear of
 * the buffers.
 */
const searchSpan = (from: string, to: string, member: string) =>
  `CASE WHEN ${member}::boolean THEN member_booking_window(tstzrange(${from}, ${to}, '[)'), e.min_notice, e.max_advance, now())
        ELSE tstzrange(${from}, ${to}, '[)') END`

/** For a member, whether a booking of `duration` from `start` is within min_duration and max_duration of `e`. */
const lengthAllowed = (start: string, duration: string, member: string) => `
  (NOT ${member}::boolean OR (
    (e.min_duration IS NULL OR ${start} + e.min_duration <= ${start} + ${duration}) AND
    (e.max_duration IS NULL OR ${start} + ${duration} <= ${start} + e.max_duration)))`

/**
 * The calendar-shaped rules, for a member ($member true): `gap` (a free range of resource
 * `e`, a row with its effective rules) cut to the part a booking may start and end in on
 * the slot grid. Slots and free time on a grid start and end on it.
 */
const onGrid = (gap: string, member: string) =>
  `CASE WHEN ${member}::boolean THEN slot_grid_fit(e.slot_grid, e.time_zone, ${gap}) ELSE ${gap} END`

/** For a member, whether a booking of `e` ending at `end` (a slot's start plus the duration) ends on the grid. */
const endsOnGrid = (end: string, member: string) =>
  `(NOT ${member}::boolean OR slot_grid_contains(e.slot_grid, e.time_zone, ${end}))`

// The member's calendar for one resource (`e`, a row of effective_rule) within `span`: its
// open time less the periods in which member $owner's quotas leave less than `need`
// (member_calendar_time()); all of span for an admin.
const calendar = (span: string, member: string, owner: string, need: string) =>
  `CASE WHEN ${member}::boolean THEN member_calendar_time(e.resource_id, ${span}, ${owner}::bigint, ${need}) ELSE tstzmultirange(${span}) END`

// Joining the resource makes an unknown id (or one of another type) give no rows, like a
// fully booked window; the caller tells the two apart only when the page is empty. A
// member is not shown gaps shorter than min_duration, nor closed time, nor time in periods
// whose quotas leave them less than min_duration; each gap is cut to the slot grid.
const FREE = `
  SELECT lower(f.gap) AS starts_at, upper(f.gap) AS ends_at
  FROM effective_rule e
  CROSS JOIN LATERAL unnest(resource_free_time(e.resource_id, ${searchSpan('$3', '$4', '$7')})
                            * ${calendar(searchSpan('$3', '$4', '$7'), '$7', '$8', "coalesce(e.min_duration, '0')")}) AS gap
  CROSS JOIN LATERAL (SELECT ${onGrid('gap', '$7')} AS gap) f
  WHERE e.resource_id = $1 AND ($2::text IS NULL OR e.type = $2)
    AND NOT isempty(f.gap)
    AND (NOT $7::boolean OR e.min_duration IS NULL OR lower(f.gap) + e.min_duration <= upper(f.gap))
  ORDER BY lower(f.gap)
  LIMIT $5 OFFSET $6`

// The resources a slot search looks at, as a condition on resource `r`: of type $1 (at site $2).
const OF_TYPE = 'r.type = $1 AND ($2::bigint IS NULL OR r.site_id = $2)'

// The resources of type $1 (at site $2) with their rules and search span: what SLOTS and
// SLOTS_AT_START look at, as `e`; own_quotas and own_zone are the resource's own quotas
// and the zone they are read in (the type's quotas are read once, in SLOTS).
const SEARCHED = `
    SELECT r.id, r.name, e.buffer_before, e.buffer_after, e.min_duration, e.max_duration,
           e.opening_hours, e.time_zone, e.slot_grid, rr.quotas AS own_quotas, coalesce(rr.time_zone, tr.time_zone, 'UTC') AS own_zone,
           ${searchSpan('$3', '$4', '$8')} AS span
    FROM resource r
    JOIN effective_rule e ON e.resource_id = r.id
    LEFT JOIN resource_rule rr ON rr.resource_id = r.id
    LEFT JOIN resource_type_rule tr ON tr.type = r.type
    WHERE ${OF_TYPE}`

// The allocations `a` that block `resource` (a row with the resource's id and its
// buffer_before and buffer_after rules) within `span`: each widened by its own buffers
// meets `span` widened by the resource's (what the exclusion constraint compares).
const blocking = (span: string, resource = 'e') => `
      a.resource_id = ${resource}.id
      AND allocation_blocks(a.status, a.expires_at)
      AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after)
          && allocation_blocked_range(${span}, ${resource}.buffer_before, ${resource}.buffer_after)`

// Nothing blocks `span` on `resource` (as in blocking()), looked up by one probe of the
// exclusion constraint's index; OFFSET 0 keeps that probe a subplan run per resource
// reached, which the planner may not turn into a join over every resource.
export const unblocked = (span: string, resource = 'e') => `NOT EXISTS (
      SELECT 1 FROM allocation a
      WHERE ${blocking(span, resource)}
      OFFSET 0)`

// Whether gap `g` (a row of resource_gap) contains `span`, written for resource_gap's
// indexes, one arm each, which PostgreSQL reads together (a BitmapOr): a GiST index holds
// the bounded gaps, and btree indexes the gaps open at the end (by where they start) and
// those open only at the start (by where they end). Open gaps are kept out of the GiST
// index because its keys never shrink: every resource starts with one gap open at both
// ends, and its last gap stays open at the end, so among them the keys would span all
// time and a search would read much of the index (measured in performance.md).
const gapContains = (span: string) => `(
           (NOT lower_inf(g.during) AND NOT upper_inf(g.during) AND g.during @> ${span})
        OR (upper_inf(g.during) AND coalesce(lower(g.during), '-infinity') <= coalesce(lower(${span}), '-infinity'))
        OR (lower_inf(g.during) AND NOT upper_inf(g.during) AND upper(g.during) >= coalesce(upper(${span}), 'infinity')))`

// The resources of `type` whose kept free time (resource_gap, migration 016) holds `span`
// widened by their buffers. Those without rules of their own (most) all follow the type's
// buffers, so one widened window is the search; the few with rules of their own are each
// checked against their own widening.
const unbookedOfType = (span: string, type: string) => `
      SELECT g.resource_id FROM resource_gap g
      WHERE g.type = ${type} AND ${gapContains(`type_blocked_range(${type}, ${span})`)}
        AND g.resource_id NOT IN (SELECT resource_id FROM resource_rule)
      UNION ALL
      SELECT g.resource_id FROM resource_rule rr
      JOIN resource_gap g ON g.resource_id = rr.resource_id
      WHERE g.type = ${type} AND g.during @> ${span} AND g.during @> resource_blocked_range(g.resource_id, ${span})`

// The resources (of `type`, when given; else of each type in turn) that nothing blocks over
// `span`, as resource_id: those whose kept free time holds it, less those a live hold
// blocks. The answer is read, not the fleet: none when the whole fleet is out. Holds are
// not kept in resource_gap (they run out unwritten); they last an hour at most, so there
// are few to look up.
const freeResources = (span: string, type?: string) => `
      ${type === undefined
        ? `SELECT f.resource_id FROM resource_type t CROSS JOIN LATERAL (${unbookedOfType(span, 't.name')}) AS f`
        : unbookedOfType(span, type)}
      EXCEPT ALL
      SELECT a.resource_id FROM allocation a
      WHERE a.status = 'held' AND a.expires_at > now()
        AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after) && resource_blocked_range(a.resource_id, ${span})`

// The rows of resource for freeResources(): read from the free ones, one lookup each
// (OFFSET 0 keeps it so), so that the search costs what is free, never a pass over the
// whole fleet to match them.
export const freeResourceRows = (span: string, type?: string) => `
    SELECT r.* FROM (${freeResources(span, type)}) AS f
    CROSS JOIN LATERAL (SELECT * FROM resource r WHERE r.id = f.resource_id OFFSET 0) AS r`

// What allocation `a` takes from resource `e`'s free time: widened by its own buffers and,
// on each side, by the resource's for a new booking (resource_free_time() does the same).
const TAKEN = `allocation_blocked_range(a.during,
             a.buffer_before + coalesce(e.buffer_after, '0'), a.buffer_after + coalesce(e.buffer_before, '0'))`

// Where the gap of resource `e` (with its id and buffers) that starts at `start` ends: where
// what the next live allocation takes from it (TAKEN) begins, or at `end`. A resource's
// live allocations never overlap once widened (allocation_no_overlap), so the next one is
// the first after `start` in allocation_resource_span_idx's order of ends: one row of a
// btree read, rather than every allocation in the span through the GiST index.
const gapEnd = (start: string, end: string) => `least(${end}, (
    SELECT lower(${TAKEN}) FROM allocation a
    WHERE a.resource_id = e.id AND allocation_ends(a.during) > ${start}
      AND allocation_blocks(a.status, a.expires_at) AND lower(${TAKEN}) >= ${start}
    ORDER BY allocation_ends(a.during)
    LIMIT 1))`

// Each resource's free time is resource_free_time()'s multirange difference, written out
// here so that it is planned into the statement (one index probe per resource) instead
// of a function call per resource: the search span minus every blocking allocation
// widened by its own buffers and the resource's. O(resources of the type) probes.
// The duration is added to each gap's start rather than compared with its length, so that
// months and days keep their calendar meaning (P1M from 31 January ends on 28 February).
// For a member, a resource whose min_duration or max_duration rules out a booking of
// that duration has no slots. When the calendar-shaped rules bind ($10: a member, and
// the type or one of its resources has some), they apply as member_calendar_time() applies
// them, in parts so that each is worked out once, not once per resource: the open time of
// each distinct opening hours (most resources share their type's) over the window, the
// periods in which the type's quotas leave member $9 less than the duration, and, only for
// the resources with quotas of their own, theirs. Each gap is then cut to the slot grid,
// and a slot whose booking of the duration would end off the grid is left out.
export const SLOTS = `
  WITH searched AS (${SEARCHED}),
  open AS MATERIALIZED (
    SELECT h.opening_hours, h.time_zone, opening_hours_open_time(h.opening_hours, h.time_zone, tstzrange($3, $4, '[)')) AS open
    FROM (SELECT DISTINCT opening_hours, time_zone FROM searched WHERE $10::boolean AND opening_hours IS NOT NULL) AS h
  ),
  type_full AS MATERIALIZED (
    SELECT quota_full_periods(tr.quotas, tr.time_zone, $9::bigint, $1, NULL, tstzrange($3, $4, '[)'), $5::interval) AS periods
    FROM resource_type_rule tr
    WHERE $10::boolean AND tr.type = $1
  )
  SELECT e.id AS resource_id, e.name AS resource_name, lower(f.slot) AS starts_at, upper(f.slot) AS ends_at
  FROM searched e
  LEFT JOIN open o ON o.opening_hours = e.opening_hours AND o.time_zone IS NOT DISTINCT FROM e.time_zone
  CROSS JOIN LATERAL (
    SELECT tstzmultirange(e.span) * coalesce(o.open, tstzmultirange(e.span))
           - coalesce((SELECT periods FROM type_full), '{}')
           - CASE WHEN $10::boolean AND jsonb_array_length(e.own_quotas) > 0
                  THEN quota_full_periods(e.own_quotas, e.own_zone, $9::bigint, NULL, e.id, e.span, $5::interval) ELSE '{}' END
           - coalesce(range_agg(${TAKEN}), '{}') AS free
    FROM allocation a
    WHERE ${blocking('e.span')}
  ) f0
  CROSS JOIN LATERAL unnest(f0.free) AS gap
  CROSS JOIN LATERAL (SELECT ${onGrid('gap', '$10')} AS slot) f
  WHERE lower(f.slot) + $5::interval <= upper(f.slot)
    AND ${lengthAllowed('lower(f.slot)', '$5::interval', '$8')}
    AND ${endsOnGrid('lower(f.slot) + $5::interval', '$10')}
  ORDER BY lower(f.slot), e.name, e.id
  LIMIT $6 OFFSET $7`

// SEARCHED in the walk's order, and a booking of the duration from the window's start.
const SEARCHED_BY_NAME = `${SEARCHED}
    ORDER BY r.name, r.id`
const FROM_START = "tstzrange($3::timestamptz, $3::timestamptz + $5::interval, '[)')"

// The slots that start at the window's start come first in SLOTS' order (no gap starts
// earlier), by name: every resource whose search span starts there and that is free for
// the duration from there, its gap ending where the first blocking allocation (widened as
// in SLOTS) begins, or where the span ends. When the calendar-shaped rules bind ($10), the
// span is the first range of what they leave of it (member_calendar_time(), one call per
// resource reached), its start must be on the grid and the gap's end is cut to it. This
// walks the resources by name, one probe each, and stops at the end of the page or after
// $11 resources (OFFSET 0 keeps the probe a subplan per resource reached), or after
// walkLimit()'s sample when nearly all of those are busy at the window's start. When most
// resources are free at the window's start, the usual case, it fills the page at a cost
// that grows with neither the allocations nor the resources. walked_all: whether the walk
// reached every resource (findSlots).
export const SLOTS_AT_START = `
  WITH walk_limit AS (${walkLimit(SEARCHED_BY_NAME, unblocked(FROM_START, 'r'), OF_TYPE, '$11')}
  ), walk AS (${SEARCHED_BY_NAME}
    LIMIT (SELECT n FROM walk_limit)
  ), reached AS (
    SELECT w.*, CASE WHEN $10::boolean
                     THEN (SELECT first FROM unnest(member_calendar_time(w.id, w.span, $9::bigint, $5::interval)) AS first LIMIT 1)
                     ELSE w.span END AS first
    FROM walk w
  )
  SELECT e.id AS resource_id, e.name AS resource_name, $3::timestamptz AS starts_at, x.ends_at,
         ${walkedAll(OF_TYPE, '(SELECT n FROM walk_limit)')}
  FROM reached e
  CROSS JOIN LATERAL (
    SELECT CASE WHEN $10::boolean THEN slot_grid_previous(e.slot_grid, e.time_zone, g.ends_at) ELSE g.ends_at END AS ends_at
    FROM (SELECT ${gapEnd('$3::timestamptz', 'upper(e.first)')} AS ends_at) g
  ) x
  WHERE lower(e.first) = $3::timestamptz
    AND (NOT $10::boolean OR slot_grid_contains(e.slot_grid, e.time_zone, $3::timestamptz))
    AND $3::timestamptz + $5::interval <= x.ends_at
    AND ${lengthAllowed('$3::timestamptz', '$5::interval', '$8')}
    AND ${endsOnGrid('$3::timestamptz + $5::interval', '$10')}
    AND ${unblocked(FROM_START)}
  ORDER BY e.name, e.id
  LIMIT $6 OFFSET $7`

// The fleet-wide search, when the walk at the window's start does not fill the page: the
// slots are taken in order of their start, one start time (a tick) at a time. A gap starts
// where a search span starts (the window's start; for a member, also where notice lets
// them book) or where what an allocation takes from its resource ends. NEXT_TICK finds the
// earliest start after $7 at which some resource has a slot, walking the live allocations
// in order of where their widened range ends (allocation_blocked_ends_idx) and stopping at
// the first that leaves room; SLOTS_AT lists that tick's slots by name. Each costs about
// what is busy around the tick, not a probe per resource, so a fleet that is all out at
// the window's start (the synchronised fleet) is answered after a tick or two.
// Their parameters: $1 type, $2 site, $3 from, $4 to, $5 duration, $6 whether member rules
// bind, $7 the tick (NEXT_TICK: the one before; the first is the window's start), $8
// (SLOTS_AT) how many.

// The rules of resource `id` and its search span, as `e` in blocking() and TAKEN. OFFSET 0
// keeps it a lookup per row reached.
const rulesOf = (id: string) => `
    SELECT e.resource_id AS id, e.resource_name, e.buffer_before, e.buffer_after, e.min_duration, e.max_duration,
           ${searchSpan('$3', '$4', '$6')} AS span
    FROM effective_rule e WHERE e.resource_id = ${id} OFFSET 0`

// Where a search span may start: the window's start and, for a member, now plus any
// min_notice the type or one of its resources has (SLOTS_AT checks each resource's own).
const SPAN_STARTS = `
    SELECT $3::timestamptz AS t
    UNION ALL
    SELECT now() + n.min_notice FROM (
      SELECT min_notice FROM resource_type_rule WHERE type = $1
      UNION SELECT min_notice FROM resource_rule) AS n
    WHERE $6::boolean AND n.min_notice IS NOT NULL`

// The widest buffer_before a resource of the type may have: how far before a gap's start
// the widened range of the allocation it follows may end.
const WIDEST_BEFORE = `(
    SELECT coalesce(max(b.before), '0') FROM (
      SELECT buffer_before FROM resource_type_rule WHERE type = $1
      UNION ALL SELECT buffer_before FROM resource_rule) AS b (before))`

const BLOCKED_END = 'upper(allocation_blocked_range(a.during, a.buffer_before, a.buffer_after))'

// The live allocations after which a gap may start after $7, the gap starting up to the
// widest buffer_before after their widened range ends (times are whole microseconds: after
// $7 is from $7 plus one), and before the window ends, in that order, read from
// allocation_blocked_ends_idx: at most
// TICK_SCAN of them, so that the planner reads the index in order instead of sorting the
// whole window's, and the checks below run only for the ones reached.
const TICK_SCAN = 2000
const endingAfter = (bound: string) => `
      SELECT a.*, ${BLOCKED_END} AS bu FROM allocation a
      WHERE a.status IN ('held', 'confirmed')
        AND ${BLOCKED_END} >= $7::timestamptz + interval '1 microsecond' - ${WIDEST_BEFORE}
        AND ${BLOCKED_END} < $4::timestamptz
        AND ${bound}
      ORDER BY ${BLOCKED_END}
      LIMIT ${TICK_SCAN}`

// The gaps that start after such an allocation `a` of the type (where its TAKEN range
// ends, u) with room for the duration, in order of bu. Every lookup is a lateral one
// (OFFSET 0), so that nothing (a hash join) undoes the index's order and the checks stop
// at the first gap.
const gapsAfterEnds = (bound: string) => `
    SELECT a.bu, g.u
    FROM (${endingAfter(bound)}) AS a
    CROSS JOIN LATERAL (SELECT r.type, r.site_id FROM resource r WHERE r.id = a.resource_id OFFSET 0) r
    CROSS JOIN LATERAL (${rulesOf('a.resource_id')}) e
    CROSS JOIN LATERAL (SELECT upper(${TAKEN}) AS u) g
    WHERE allocation_blocks(a.status, a.expires_at)
      AND ${OF_TYPE}
      AND g.u > $7::timestamptz AND g.u >= lower(e.span) AND g.u + $5::interval <= upper(e.span)
      AND ${lengthAllowed('g.u', '$5::interval', '$6')}
      AND ${unblocked("tstzrange(g.u, g.u + $5::interval, '[)')")}
    ORDER BY a.bu`

// The earliest start after $7: where a search span starts, or the first gap in order of
// bu (bu: where that allocation's own widened range ends). cut: TICK_SCAN allocations were
// read without finding room after any, so the answer is not known (findSlots then leaves
// the page to SLOTS). earlier: EARLIER_TICK may find an earlier one.
const NEXT_TICK = `
  WITH first AS (${gapsAfterEnds('true')}
    LIMIT 1)
  SELECT least(
    (SELECT min(s.t) FROM (${SPAN_STARTS}) AS s
     WHERE s.t > $7::timestamptz AND s.t < $4::timestamptz),
    (SELECT u FROM first)) AS tick,
    (SELECT bu FROM first) AS bu,
    (SELECT bu < u FROM first) AS earlier,
    NOT EXISTS (SELECT 1 FROM first) AND (SELECT count(*) FROM (${endingAfter('true')}) AS a) = ${TICK_SCAN} AS cut`

// The first gap in order of bu is not always the earliest: where resources have different
// buffer_before rules, another allocation ending a little later may leave a gap that
// starts sooner. Any such ends its own widened range between the first's ($8) and the
// tick found ($9), so only those are read (none without buffers: NEXT_TICK's bu is its tick).
const EARLIER_TICK = `
  SELECT min(c.u) AS tick FROM (${gapsAfterEnds(`${BLOCKED_END} >= $8::timestamptz AND ${BLOCKED_END} < $9::timestamptz`)}) AS c`

// The slots that start at tick $7, by name, at most $8: resources free for the duration
// from there, where a search span starts or an allocation's TAKEN range ends, each then
// checked exactly, in name order until the page is full. Which resources: `walk`, the
// first $9 by name, each looked up alone (one probe each; walkedPage tries that first, and
// its rows are all the tick's when the $9 were every resource: walked_all); otherwise the
// free ones among all (freeResourceRows, from the kept free time) whose span starts at the
// tick or whose allocation ends there.
const FROM_TICK = "tstzrange($7::timestamptz, $7::timestamptz + $5::interval, '[)')"
const WALKED_AT_TICK = `
    SELECT r.id, r.name FROM (
      SELECT r.id, r.name, e.buffer_before, e.buffer_after FROM resource r
      JOIN effective_rule e ON e.resource_id = r.id
      WHERE ${OF_TYPE}
      ORDER BY r.type, r.name, r.id
      LIMIT $9) AS r
    WHERE ${unblocked(FROM_TICK, 'r')}`
const FREE_AT_TICK = `
    SELECT r.id, r.name FROM (${freeResourceRows(FROM_TICK, '$1')}) AS r
    WHERE ${OF_TYPE}
      AND ($7::timestamptz IN (${SPAN_STARTS}) OR r.id IN (
        SELECT a.resource_id FROM allocation a
        WHERE a.status IN ('held', 'confirmed')
          AND ${BLOCKED_END} <= $7::timestamptz AND ${BLOCKED_END} >= $7::timestamptz - ${WIDEST_BEFORE}))`
const slotsAt = (walk: boolean) => `
  SELECT c.id AS resource_id, c.name AS resource_name, $7::timestamptz AS starts_at,
         ${gapEnd('$7::timestamptz', 'upper(e.span)')} AS ends_at
         ${walk ? `, ${walkedAll(OF_TYPE, '$9')}` : ''}
  FROM (${walk ? WALKED_AT_TICK : FREE_AT_TICK}) AS c
  CROSS JOIN LATERAL (${rulesOf('c.id')}) e
  WHERE $7::timestamptz >= lower(e.span) AND $7::timestamptz + $5::interval <= upper(e.span)
    AND ${lengthAllowed('$7::timestamptz', '$5::interval', '$6')}
    AND ($7::timestamptz = lower(e.span) OR EXISTS (
      SELECT 1 FROM allocation a
      WHERE ${blocking("tstzrange($7::timestamptz - interval '1 microsecond', $7::timestamptz, '[)')")}
        AND upper(${TAKEN}) = $7::timestamptz))
  ORDER BY c.name, c.id
  LIMIT $8`

const SLOTS_AT = slotsAt(false)
const SLOTS_AT_WALK = slotsAt(true)

/**
 * Start times the fleet-wide search visits before it hands over to SLOTS (a probe per
 * resource, always complete); it hands over sooner when the ticks are so sparse in slots
 * that the page would take many more.
 */
const MAX_TICKS = 8

export interface Window { from: string, to: string }

/**
 * Whether the search is for someone the member booking rules bind (policy decides), and
 * who asks: a member's quotas count their own bookings.
 */
export interface SearchOptions { rules: boolean, actor: number }

/**
 * The free parts of [from, to) for one resource (of `type`, when given), earliest first:
 * where a new allocation fits with its buffers and its neighbours'. With `options.rules`,
 * also only where a member may book (notice, advance, min_duration).
 */
export async function listFreeTime (db: Db, resourceId: string, type: string | undefined, window: Window, page: Page, options: SearchOptions): Promise<FreeTime[]> {
  return (await db.query<FreeTime>(prepared('free-time', FREE, [resourceId, type ?? null, window.from, window.to, page.limit + 1, page.offset, options.rules, options.actor]))).rows
}

export interface SlotSearch extends Window {
  type: string
  site_id?: number
  /** An ISO 8601 duration already checked by the caller; PostgreSQL reads it as an interval. */
  duration: string
}

// Whether the calendar-shaped rules can cut a search of type $1: its type, or one of its
// resources, has opening hours, a slot grid or quotas (a time zone alone changes nothing).
const CALENDAR_RULES = `
  SELECT EXISTS (
    SELECT 1 FROM resource_type_rule tr
    WHERE tr.type = $1 AND (tr.opening_hours IS NOT NULL OR tr.slot_grid IS NOT NULL OR jsonb_array_length(tr.quotas) > 0)
  ) OR EXISTS (
    SELECT 1 FROM resource_rule rr JOIN resource r ON r.id = rr.resource_id
    WHERE r.type = $1 AND (rr.opening_hours IS NOT NULL OR rr.slot_grid IS NOT NULL OR jsonb_array_length(rr.quotas) > 0)
  ) AS apply`

/**
 * Free gaps at least `duration` long across the resources of a type (and site), earliest
 * first, buffers kept clear. With `options.rules`, only what a member may book. The slots
 * at the window's start sort before all others, so when a short walk finds enough of them
 * to fill the page (and the row after it), they are the page; otherwise the full search:
 * tick by tick, or SLOTS when calendar-shaped rules bind the member, since they start gaps
 * (an opening, a grid time, a period with room) where no tick looks.
 */
export async function findSlots (db: Db, search: SlotSearch, page: Page, options: SearchOptions): Promise<Slot[]> {
  const calendar = options.rules && (await db.query<{ apply: boolean }>(prepared('slots-calendar-rules', CALENDAR_RULES, [search.type]))).rows[0]!.apply
  const values = [search.type, search.site_id ?? null, search.from, search.to, search.duration, page.limit + 1, page.offset, options.rules, options.actor, calendar]
  // The walk lists the slots at the window's start from the first, so that when it reached
  // every resource they are all of them, the search's first tick.
  const wanted = page.offset + page.limit + 1
  const atStart = await walkFor(wanted, async (budget) =>
    (await db.query<Slot & Walked>(SLOTS_AT_START, [...values.slice(0, 5), wanted, 0, ...values.slice(7), budget])).rows)
  if (atStart.rows.length === wanted) return atStart.rows.slice(page.offset)
  // A fleet the walk reached whole is smaller than its budget, so SLOTS's probe per resource
  // costs no more than the walk did, where ticks would cost three statements a slot.
  if (calendar || atStart.all) return (await db.query<Slot>(SLOTS, values)).rows
  return slotsByTick(db, values, page)
}

interface NextTick { tick: string | null, bu: string | null, earlier: boolean | null, cut: boolean }

/**
 * The page taken tick by tick (NEXT_TICK, SLOTS_AT): the rows before the page and the page
 * with the row after it, for a fleet larger than the walk in findSlots reached. The first
 * tick is the window's start, whose slots are looked for set-wise. A page that spans more
 * than MAX_TICKS start times (many short gaps, a long page) is left to SLOTS, one probe per
 * resource.
 */
async function slotsByTick (db: Db, values: unknown[], page: Page): Promise<Slot[]> {
  const wanted = page.offset + page.limit + 1
  const search = [...values.slice(0, 5), values[7]]
  const from = values[2] as string
  const rows: Slot[] = (await db.query<Slot>(prepared('slots-at-tick', SLOTS_AT, [...search, from, wanted]))).rows
  let after: string = from
  for (let ticks = 1; rows.length < wanted; ticks++) {
    if (ticks === MAX_TICKS || (ticks >= 3 && rows.length * 2 < wanted)) return (await db.query<Slot>(SLOTS, values)).rows
    const next: NextTick = (await db.query<NextTick>(prepared('slots-next-tick', NEXT_TICK, [...search, after]))).rows[0]!
    if (next.cut) return (await db.query<Slot>(SLOTS, values)).rows
    let tick = next.tick
    if (tick === null) break
    if (next.earlier === true) {
      tick = (await db.query<{ tick: string | null }>(EARLIER_TICK, [...search, after, next.bu, tick])).rows[0]!.tick ?? tick
    }
    // A tick's slots are a page of their own: as many as are still wanted, and one more
    // tells walkedPage the walk found them all.
    const tickPage = { limit: wanted - rows.length - 1, offset: 0 }
    const atTick = [...search, tick, wanted - rows.length]
    rows.push(...await walkedPage(tickPage,
      async (budget) => (await db.query<Slot & Walked>(prepared('slots-at-tick-walk', SLOTS_AT_WALK, [...atTick, budget]))).rows,
      async () => (await db.query<Slot>(prepared('slots-at-tick', SLOTS_AT, atTick))).rows))
    after = tick
  }
  return rows.slice(page.offset)
}
