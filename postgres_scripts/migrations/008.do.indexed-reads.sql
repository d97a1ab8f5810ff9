-- Version 8: reads that an index serves at any size, and a cheaper history trigger.
--
-- * allocation_resource_span_idx: one resource's allocations by time, whatever their
--   status. Reads reach it through allocation_overlaps(), which is && spelled as
--   comparisons that a btree can answer. (The exclusion constraint's GiST index and
--   allocation_resource_id_during_idx hold live rows only, and a list filtered on the
--   status as of now, a CASE, cannot prove it only wants those.) A btree rather than a
--   third GiST index: far cheaper to keep up on every insert, and built in seconds on a
--   million rows, so this migration holds its lock only that long. It takes over from
--   allocation_resource_id_during_idx (live rows, on the bare during), which is dropped:
--   one GiST insert less per booking.
-- * allocation_starts_idx: every allocation in list order, so that a page of the list
--   across resources is read in order and stops at the end of the page.
-- * member_booking_window(): member_booking_span() without its lookup of the rules, so
--   that slot and free-time searches, which already have the rules at hand, inline it
--   instead of calling a function per resource.
-- * utc_text() without SET TimeZone: a function with a SET clause is never inlined and
--   switches the setting on every call, eight times per history row.

-- The start and end of an allocation's time as comparable values, an open end being
-- -infinity or infinity (allocation_during_finite keeps those for open ends only), so
-- that a btree can order and bound them.
CREATE FUNCTION allocation_starts(during tstzrange) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(lower(during), '-infinity')
$$;
COMMENT ON FUNCTION allocation_starts(tstzrange) IS
  'lower(during), or -infinity when it is open. Orders like lower(during) NULLS FIRST.';

CREATE FUNCTION allocation_ends(during tstzrange) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(upper(during), 'infinity')
$$;
COMMENT ON FUNCTION allocation_ends(tstzrange) IS
  'upper(during), or infinity when it is open.';

-- during && span, spelled as comparisons of the ends, which allocation_resource_span_idx
-- answers for one resource (&& itself needs a GiST index). Exact for the ranges
-- allocations have: half-open and never empty (allocation_during_half_open,
-- allocation_during_not_empty); span may be any range. Inlined by the planner, so that
-- resource_id = … AND allocation_overlaps(during, …) is an index range scan.
CREATE FUNCTION allocation_overlaps(during tstzrange, span tstzrange) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT NOT isempty(span)
     AND allocation_ends(during) > allocation_starts(span)
     AND allocation_starts(during) <= allocation_ends(span)
     AND (allocation_starts(during) < allocation_ends(span) OR upper_inc(span))
$$;
COMMENT ON FUNCTION allocation_overlaps(tstzrange, tstzrange) IS
  'during && span for an allocation''s during, in a form allocation_resource_span_idx answers. E.g. SELECT * FROM allocation WHERE resource_id = $1 AND allocation_overlaps(during, tstzrange(now(), now() + interval ''1 month'')).';

-- Ends first: a window asks for ends after its start and starts before its end, and the
-- first is the bound that cuts a resource's past away.
CREATE INDEX allocation_resource_span_idx ON allocation (resource_id, allocation_ends(during), allocation_starts(during));
-- Every allocation by start, then id: the order lists are in, so a page of the list across
-- resources is read from here and no further than the page.
CREATE INDEX allocation_starts_idx ON allocation (allocation_starts(during), id);
DROP INDEX allocation_resource_id_during_idx;

CREATE FUNCTION member_booking_window(span tstzrange, min_notice interval, max_advance interval, judged_at timestamptz) RETURNS tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN judged_at + min_notice >= judged_at + max_advance THEN 'empty'::tstzrange
              ELSE span * tstzrange(judged_at + min_notice, judged_at + max_advance, '[)') END
$$;
COMMENT ON FUNCTION member_booking_window(tstzrange, interval, interval, timestamptz) IS
  'The part of span in which a member may book as of judged_at under the given min_notice and max_advance (null: no rule).';

CREATE OR REPLACE FUNCTION member_booking_span(resource_id uuid, span tstzrange, judged_at timestamptz) RETURNS tstzrange
LANGUAGE sql STABLE AS $$
  SELECT member_booking_window(span, e.min_notice, e.max_advance, judged_at)
  FROM effective_rule e
  WHERE e.resource_id = member_booking_span.resource_id
$$;

-- The same text as before (to_json of a timestamptz in a UTC session, Z for +00:00, the
-- era after it), without switching TimeZone, so that the planner inlines it.
CREATE OR REPLACE FUNCTION utc_text(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN NOT isfinite(t) THEN to_json(t AT TIME ZONE 'UTC') #>> '{}'
    WHEN t < '0001-01-01T00:00:00Z' THEN replace(to_json(t AT TIME ZONE 'UTC') #>> '{}', ' BC', 'Z BC')
    ELSE (to_json(t AT TIME ZONE 'UTC') #>> '{}') || 'Z'
  END
$$;
