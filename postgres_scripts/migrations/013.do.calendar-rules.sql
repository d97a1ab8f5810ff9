-- Version 13: the calendar-shaped booking rules. Besides how long and how early, an admin
-- says *when* members may book: opening hours per weekday and a slot grid, read on the wall
-- clock of a time zone, and fair-share quotas per calendar period. Like the other member
-- rules they live here, so that the API and psql judge a booking the same way:
-- booking_rule_violations() judges opening hours and the grid, booking_quota_breach() the
-- quotas (under a lock per member and quota scope, so that two simultaneous bookings by one
-- member cannot both take the last of a quota), resource_open_time() answers "when is it
-- open". No rule is set by this migration: until an admin sets one, nothing changes.

-- Time zones are PostgreSQL's own (the IANA names it knows), so that what the API accepts
-- is exactly what AT TIME ZONE can read. Names match ignoring case, as AT TIME ZONE reads them.
CREATE FUNCTION time_zone_known(zone text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE lower(name) = lower(zone))
$$;
COMMENT ON FUNCTION time_zone_known(text) IS
  'Whether PostgreSQL knows zone as a time zone name (pg_timezone_names: IANA names such as Europe/Lisbon, ignoring case). Offsets such as +01:00 are not zones.';

-- The shape the API writes: {"mon": [["08:00", "12:00"], ["13:00", "18:00"]], ...}: weekdays
-- mon to sun, each a list of [start, end) wall-clock intervals, HH:MM from 00:00 to 24:00, each
-- ending after it starts and none overlapping another of the same day (touching is fine). A day
-- left out, or [], is closed. plpgsql rather than SQL: each element's shape is checked before
-- anything reads it, which a SQL expression cannot promise.
CREATE FUNCTION opening_hours_valid(hours jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  day text;
  intervals jsonb;
  item jsonb;
  previous_end text;
BEGIN
  IF hours IS NULL THEN
    RETURN true;
  END IF;
  IF jsonb_typeof(hours) <> 'object' THEN
    RETURN false;
  END IF;
  FOR day, intervals IN SELECT key, value FROM jsonb_each(hours) LOOP
    IF day <> ALL (ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']) OR jsonb_typeof(intervals) <> 'array' THEN
      RETURN false;
    END IF;
    FOR item IN SELECT value FROM jsonb_array_elements(intervals) LOOP
      IF jsonb_typeof(item) <> 'array' OR jsonb_array_length(item) <> 2
         OR jsonb_typeof(item -> 0) <> 'string' OR jsonb_typeof(item -> 1) <> 'string'
         OR NOT (item ->> 0) ~ '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$'
         OR NOT (item ->> 1) ~ '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$'
         OR (item ->> 0) COLLATE "C" >= (item ->> 1) THEN
        RETURN false;
      END IF;
    END LOOP;
    previous_end := NULL;
    FOR item IN SELECT value FROM jsonb_array_elements(intervals) ORDER BY (value ->> 0) COLLATE "C" LOOP
      IF (item ->> 0) COLLATE "C" < previous_end THEN
        RETURN false;
      END IF;
      previous_end := item ->> 1;
    END LOOP;
  END LOOP;
  RETURN true;
END
$$;
COMMENT ON FUNCTION opening_hours_valid(jsonb) IS
  'Whether hours is opening hours as stored: {"mon": [["08:00", "12:00"], ...], ...}, weekdays mon to sun, HH:MM from 00:00 to 24:00, each interval ending after it starts, none overlapping another of its day.';

-- The shape the API writes: [{"period": "week", "max_duration": "PT10H", "max_bookings": 5}, ...],
-- period day, week or month; max_duration an interval of zero or more, max_bookings a whole
-- number of zero or more; at least one of the two set (null: no limit of that kind).
CREATE FUNCTION quotas_valid(quotas jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL RESTRICTED AS $$
DECLARE
  item jsonb;
BEGIN
  IF quotas IS NULL THEN
    RETURN true;
  END IF;
  IF jsonb_typeof(quotas) <> 'array' THEN
    RETURN false;
  END IF;
  FOR item IN SELECT value FROM jsonb_array_elements(quotas) LOOP
    IF jsonb_typeof(item) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(item) AS k WHERE k NOT IN ('period', 'max_duration', 'max_bookings'))
       OR coalesce(item ->> 'period', '') NOT IN ('day', 'week', 'month')
       OR coalesce(jsonb_typeof(item -> 'max_duration'), 'null') NOT IN ('null', 'string')
       OR coalesce(jsonb_typeof(item -> 'max_bookings'), 'null') NOT IN ('null', 'number')
       OR (coalesce(jsonb_typeof(item -> 'max_duration'), 'null') = 'null' AND coalesce(jsonb_typeof(item -> 'max_bookings'), 'null') = 'null') THEN
      RETURN false;
    END IF;
    -- Read as an interval where it parses (PostgreSQL 15, which the high-availability
    -- cluster runs, has no pg_input_is_valid): a parse error is an invalid quota.
    IF jsonb_typeof(item -> 'max_duration') = 'string' THEN
      BEGIN
        IF (item ->> 'max_duration')::interval < '0' THEN
          RETURN false;
        END IF;
      EXCEPTION WHEN data_exception THEN
        RETURN false;
      END;
    END IF;
    IF jsonb_typeof(item -> 'max_bookings') = 'number' AND NOT (
         (item ->> 'max_bookings')::numeric BETWEEN 0 AND 2147483647 AND (item ->> 'max_bookings')::numeric % 1 = 0) THEN
      RETURN false;
    END IF;
  END LOOP;
  RETURN true;
END
$$;
COMMENT ON FUNCTION quotas_valid(jsonb) IS
  'Whether quotas is a list of quotas as stored: [{"period": "day"|"week"|"month", "max_duration": ISO 8601 duration or null, "max_bookings": whole number or null}, ...], at least one limit per quota, none negative.';

-- A slot grid is a step that divides a day evenly (PT15M, PT1H, PT90M), counted from each
-- local midnight, or one local day (P1D, which is 23 or 25 hours on the days clocks change).
-- Longer grids would need a starting day to count from, which nothing here gives: refused.
CREATE FUNCTION slot_grid_valid(grid interval) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT grid IS NULL OR (grid > '0' AND (grid = '1 day'
    OR (grid < '1 day' AND mod(86400000000::numeric, extract(epoch FROM grid) * 1000000) = 0)))
$$;
COMMENT ON FUNCTION slot_grid_valid(interval) IS
  'Whether grid can be a slot grid: longer than zero, and either dividing a day evenly (PT15M, PT1H, PT90M) or one day (P1D).';

ALTER TABLE resource_type_rule
  ADD COLUMN time_zone text CONSTRAINT resource_type_rule_time_zone_known CHECK (time_zone IS NULL OR time_zone_known(time_zone)),
  ADD COLUMN opening_hours jsonb CONSTRAINT resource_type_rule_opening_hours_valid CHECK (opening_hours_valid(opening_hours)),
  ADD COLUMN slot_grid interval CONSTRAINT resource_type_rule_slot_grid_valid CHECK (slot_grid_valid(slot_grid)),
  ADD COLUMN quotas jsonb CONSTRAINT resource_type_rule_quotas_valid CHECK (quotas_valid(quotas));
COMMENT ON COLUMN resource_type_rule.time_zone IS 'IANA time zone (e.g. Europe/Lisbon) on whose wall clock opening_hours, slot_grid and quotas are read; null: UTC.';
COMMENT ON COLUMN resource_type_rule.opening_hours IS 'When members may book, per weekday: {"mon": [["08:00", "12:00"], ["13:00", "18:00"]], ...} in time_zone; a day left out or [] is closed, "24:00" ends a day; null: always open.';
COMMENT ON COLUMN resource_type_rule.slot_grid IS 'Members'' bookings start and end on steps of this length from each local midnight in time_zone (PT15M, PT1H; P1D: local days); null: no grid.';
COMMENT ON COLUMN resource_type_rule.quotas IS 'How much one member may have booked of all resources of the type per calendar period in this type''s time_zone: [{"period": "day"|"week"|"month", "max_duration": "PT10H"|null, "max_bookings": 5|null}]; null or []: none. Binds besides any resource''s own.';

ALTER TABLE resource_rule
  ADD COLUMN time_zone text CONSTRAINT resource_rule_time_zone_known CHECK (time_zone IS NULL OR time_zone_known(time_zone)),
  ADD COLUMN opening_hours jsonb CONSTRAINT resource_rule_opening_hours_valid CHECK (opening_hours_valid(opening_hours)),
  ADD COLUMN slot_grid interval CONSTRAINT resource_rule_slot_grid_valid CHECK (slot_grid_valid(slot_grid)),
  ADD COLUMN quotas jsonb CONSTRAINT resource_rule_quotas_valid CHECK (quotas_valid(quotas));
COMMENT ON COLUMN resource_rule.time_zone IS 'Overrides resource_type_rule.time_zone for this resource''s opening hours, grid and own quotas; null inherits.';
COMMENT ON COLUMN resource_rule.opening_hours IS 'Overrides resource_type_rule.opening_hours; null inherits.';
COMMENT ON COLUMN resource_rule.slot_grid IS 'Overrides resource_type_rule.slot_grid; null inherits.';
COMMENT ON COLUMN resource_rule.quotas IS 'How much one member may have booked of this resource per calendar period in its time_zone (same shape as resource_type_rule.quotas). Not inherited field by field: the type''s quotas bind as well.';

-- The new fields go at the end, so that existing readers of the view keep their columns.
CREATE OR REPLACE VIEW effective_rule AS
  SELECT r.id AS resource_id, r.type, r.name AS resource_name,
         coalesce(rr.min_duration, tr.min_duration) AS min_duration,
         coalesce(rr.max_duration, tr.max_duration) AS max_duration,
         coalesce(rr.min_notice, tr.min_notice) AS min_notice,
         coalesce(rr.max_advance, tr.max_advance) AS max_advance,
         coalesce(rr.buffer_before, tr.buffer_before) AS buffer_before,
         coalesce(rr.buffer_after, tr.buffer_after) AS buffer_after,
         coalesce(rr.members_may_book_open_ended, tr.members_may_book_open_ended, false) AS members_may_book_open_ended,
         CASE WHEN rr.min_duration IS NOT NULL THEN 'resource' WHEN tr.min_duration IS NOT NULL THEN 'type' ELSE 'none' END AS min_duration_source,
         CASE WHEN rr.max_duration IS NOT NULL THEN 'resource' WHEN tr.max_duration IS NOT NULL THEN 'type' ELSE 'none' END AS max_duration_source,
         CASE WHEN rr.min_notice IS NOT NULL THEN 'resource' WHEN tr.min_notice IS NOT NULL THEN 'type' ELSE 'none' END AS min_notice_source,
         CASE WHEN rr.max_advance IS NOT NULL THEN 'resource' WHEN tr.max_advance IS NOT NULL THEN 'type' ELSE 'none' END AS max_advance_source,
         CASE WHEN rr.buffer_before IS NOT NULL THEN 'resource' WHEN tr.buffer_before IS NOT NULL THEN 'type' ELSE 'none' END AS buffer_before_source,
         CASE WHEN rr.buffer_after IS NOT NULL THEN 'resource' WHEN tr.buffer_after IS NOT NULL THEN 'type' ELSE 'none' END AS buffer_after_source,
         CASE WHEN rr.members_may_book_open_ended IS NOT NULL THEN 'resource' WHEN tr.members_may_book_open_ended IS NOT NULL THEN 'type' ELSE 'none' END AS members_may_book_open_ended_source,
         coalesce(rr.time_zone, tr.time_zone) AS time_zone,
         coalesce(rr.opening_hours, tr.opening_hours) AS opening_hours,
         coalesce(rr.slot_grid, tr.slot_grid) AS slot_grid,
         coalesce(rr.quotas, tr.quotas) AS quotas,
         CASE WHEN rr.time_zone IS NOT NULL THEN 'resource' WHEN tr.time_zone IS NOT NULL THEN 'type' ELSE 'none' END AS time_zone_source,
         CASE WHEN rr.opening_hours IS NOT NULL THEN 'resource' WHEN tr.opening_hours IS NOT NULL THEN 'type' ELSE 'none' END AS opening_hours_source,
         CASE WHEN rr.slot_grid IS NOT NULL THEN 'resource' WHEN tr.slot_grid IS NOT NULL THEN 'type' ELSE 'none' END AS slot_grid_source,
         CASE WHEN rr.quotas IS NOT NULL THEN 'resource' WHEN tr.quotas IS NOT NULL THEN 'type' ELSE 'none' END AS quotas_source
  FROM resource r
  LEFT JOIN resource_type_rule tr ON tr.type = r.type
  LEFT JOIN resource_rule rr ON rr.resource_id = r.id;
COMMENT ON VIEW effective_rule IS 'The booking rules in force for each resource: its own where set, else its type''s; null is no rule (time_zone null: UTC). Each *_source column says where a value comes from: resource, type or none. quotas shows the resource''s own, else its type''s; the type''s bind besides the resource''s own (booking_quota_breach).';

-- ---------------------------------------------------------------------------------------
-- Wall-clock time. A local time is turned into instants by the UTC offsets in force around
-- it, never by AT TIME ZONE on the local time alone: for a time the clocks skip (02:30 on the
-- spring-forward night in New York) PostgreSQL answers an instant an hour later on the clock
-- (03:30), where the rule here is the next instant that exists (03:00).

-- The UTC offset of zone at instant t (east of Greenwich positive): Europe/Lisbon in July is 01:00.
CREATE FUNCTION time_zone_offset(zone text, t timestamptz) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (t AT TIME ZONE zone) - (t AT TIME ZONE 'UTC')
$$;
COMMENT ON FUNCTION time_zone_offset(text, timestamptz) IS
  'The UTC offset of zone at instant t, east of Greenwich positive: time_zone_offset(''Europe/Lisbon'', ''2031-07-01Z'') is 01:00:00.';

-- The instant zone's offset changes between after and before, whose offsets differ (one
-- change between them), to the second (tz changes fall on whole seconds): a binary search.
CREATE FUNCTION time_zone_change(zone text, after timestamptz, before timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  lo bigint := floor(extract(epoch FROM after));
  hi bigint := ceil(extract(epoch FROM before));
  first interval := time_zone_offset(zone, to_timestamp(lo));
  mid bigint;
BEGIN
  WHILE hi - lo > 1 LOOP
    mid := lo + (hi - lo) / 2;
    IF time_zone_offset(zone, to_timestamp(mid)) = first THEN
      lo := mid;
    ELSE
      hi := mid;
    END IF;
  END LOOP;
  RETURN to_timestamp(hi);
END
$$;
COMMENT ON FUNCTION time_zone_change(text, timestamptz, timestamptz) IS
  'The instant (to the second) at which zone''s UTC offset changes between after and before, when their offsets differ.';

-- local_time_span() on the days the clocks change (below): before the change, each instant
-- is its wall-clock time less the offset before; from it on, less the offset after.
CREATE FUNCTION local_time_span_across_change(zone text, from_local timestamp, to_local timestamp) RETURNS tstzmultirange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT tstzmultirange(allocation_range((from_local - o.before) AT TIME ZONE 'UTC', least((to_local - o.before) AT TIME ZONE 'UTC', o.change)))
       + tstzmultirange(allocation_range(greatest((from_local - o.after) AT TIME ZONE 'UTC', o.change), (to_local - o.after) AT TIME ZONE 'UTC'))
  FROM (SELECT (from_local - interval '14 hours') AT TIME ZONE 'UTC' AS lo, (to_local + interval '12 hours') AT TIME ZONE 'UTC' AS hi) AS b
  CROSS JOIN LATERAL (SELECT time_zone_offset(zone, b.lo) AS before, time_zone_offset(zone, b.hi) AS after, time_zone_change(zone, b.lo, b.hi) AS change) AS o
$$;
COMMENT ON FUNCTION local_time_span_across_change(text, timestamp, timestamp) IS
  'local_time_span() when zone''s offset changes within [from_local - 14 h, to_local + 12 h].';

-- Offsets lie between -12:00 and +14:00, so every instant whose wall-clock time is within
-- [from_local, to_local) lies within [from_local - 14 h, to_local + 12 h] read as UTC. When
-- the offset is the same at both ends of that bracket (every day but those the clocks
-- change, DST changes being months apart), each of those instants is its wall-clock time
-- less that offset; on the days they change, local_time_span_across_change() finds when.
-- A single expression, so that the planner inlines it into the query that calls it.
CREATE FUNCTION local_time_span(zone text, from_local timestamp, to_local timestamp) RETURNS tstzmultirange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN time_zone_offset(zone, (from_local - interval '14 hours') AT TIME ZONE 'UTC') = time_zone_offset(zone, (to_local + interval '12 hours') AT TIME ZONE 'UTC')
    THEN tstzmultirange(allocation_range((from_local - time_zone_offset(zone, (from_local - interval '14 hours') AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC',
                                         (to_local - time_zone_offset(zone, (from_local - interval '14 hours') AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC'))
    ELSE local_time_span_across_change(zone, from_local, to_local)
  END
$$;
COMMENT ON FUNCTION local_time_span(text, timestamp, timestamp) IS
  'Every instant at which the wall clock in zone reads from from_local (inclusive) to to_local (exclusive): a time the clocks skip begins at the next instant that exists, and a time they repeat counts both times.';

-- The first instant at which the wall clock reads wall_clock or later (same bracket as above).
CREATE FUNCTION local_instant(zone text, wall_clock timestamp) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT lower(local_time_span(zone, wall_clock, wall_clock + interval '1 day'))
$$;
COMMENT ON FUNCTION local_instant(text, timestamp) IS
  'The first instant at which the wall clock in zone reads wall_clock or later: the instant it names, the first of two when clocks go back, the instant they jump to when they skip it.';

-- ---------------------------------------------------------------------------------------
-- Opening hours.

-- Opening hours as the API shows them: every weekday, mon to sun, in order (jsonb keeps keys
-- in its own order); a day not given is closed ([]), its intervals by start.
CREATE FUNCTION opening_hours_in_order(hours jsonb) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN hours IS NOT NULL THEN (
    SELECT json_object_agg(d.day, coalesce((
      SELECT json_agg(i.value ORDER BY (i.value ->> 0) COLLATE "C", (i.value ->> 1) COLLATE "C") FROM jsonb_array_elements(hours -> d.day) AS i), '[]'::json) ORDER BY d.n)
    FROM unnest(ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']) WITH ORDINALITY AS d(day, n)) END
$$;
COMMENT ON FUNCTION opening_hours_in_order(jsonb) IS
  'Opening hours with every weekday, mon to sun, in order, and each day''s intervals by start (a day not given is []).';

-- The part of span that is open under opening hours `hours` read in zone (null: UTC): every
-- interval of every local day the span meets, turned into instants by local_time_span, so
-- that touching intervals (Friday to 24:00, Saturday from 00:00) join into one range. span
-- must be bounded when hours is set (open time over an unbounded span has no end).
CREATE FUNCTION opening_hours_open_time(hours jsonb, zone text, span tstzrange) RETURNS tstzmultirange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN hours IS NULL THEN tstzmultirange(span)
    WHEN isempty(span) OR lower_inf(span) OR upper_inf(span) THEN '{}'::tstzmultirange
    ELSE tstzmultirange(span) * coalesce((
      SELECT range_agg(local_time_span(z.zone, d + (i ->> 0)::time, d + (i ->> 1)::time))
      FROM generate_series(((lower(span) AT TIME ZONE z.zone)::date - 1)::timestamp, (upper(span) AT TIME ZONE z.zone)::date::timestamp, interval '1 day') AS d
      CROSS JOIN LATERAL jsonb_array_elements(hours -> (ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'])[extract(isodow FROM d)::int]) AS i
    ), '{}'::tstzmultirange)
  END
  FROM (SELECT coalesce(opening_hours_open_time.zone, 'UTC') AS zone) AS z
$$;
COMMENT ON FUNCTION opening_hours_open_time(jsonb, text, tstzrange) IS
  'The part of the bounded span that is open under opening hours read in zone (null: UTC); all of span when hours is null.';

CREATE FUNCTION resource_open_time(resource_id uuid, span tstzrange) RETURNS tstzmultirange
LANGUAGE plpgsql STABLE AS $$
DECLARE
  hours jsonb;
  zone text;
BEGIN
  SELECT e.opening_hours, e.time_zone INTO hours, zone FROM effective_rule e WHERE e.resource_id = resource_open_time.resource_id;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF hours IS NOT NULL AND (lower_inf(span) OR upper_inf(span)) THEN
    RAISE EXCEPTION 'resource_open_time needs a bounded span: the resource has opening hours'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN opening_hours_open_time(hours, zone, span);
END
$$;
COMMENT ON FUNCTION resource_open_time(uuid, tstzrange) IS
  'When members may book the resource within span under its opening hours (all of span when it has none; null when there is no such resource). E.g. SELECT unnest(resource_open_time(id, tstzrange(now(), now() + interval ''7 days''))) FROM resource.';

-- ---------------------------------------------------------------------------------------
-- The slot grid: the instants whose wall-clock time of day in zone is a whole number of
-- steps from midnight (both passes of a repeated time), and, where the clocks skip a grid
-- time, the instant they jump to (the next instant that exists).

-- Whether instant t is where the clocks jumped forward over a wall-clock time that is a
-- whole number of grid steps from midnight (the gap is [time of day at t - jump, time of day
-- at t)). A single expression, so that it is inlined.
CREATE FUNCTION slot_grid_skipped_to(grid interval, zone text, t timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT time_zone_offset(zone, t) > time_zone_offset(zone, ((t AT TIME ZONE 'UTC') - interval '1 microsecond') AT TIME ZONE 'UTC')
     AND ceil((extract(epoch FROM (t AT TIME ZONE zone)::time)
               - extract(epoch FROM time_zone_offset(zone, t) - time_zone_offset(zone, ((t AT TIME ZONE 'UTC') - interval '1 microsecond') AT TIME ZONE 'UTC'))) / extract(epoch FROM grid))
         * extract(epoch FROM grid) < extract(epoch FROM (t AT TIME ZONE zone)::time)
$$;
COMMENT ON FUNCTION slot_grid_skipped_to(interval, text, timestamptz) IS
  'Whether the clocks in zone jumped forward at instant t over a wall-clock time on the grid (which then begins at t).';

CREATE FUNCTION slot_grid_contains(grid interval, zone text, t timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT grid IS NULL OR t IS NULL OR NOT isfinite(t)
      OR mod(extract(epoch FROM (t AT TIME ZONE coalesce(zone, 'UTC'))::time), extract(epoch FROM grid)) = 0
      OR slot_grid_skipped_to(grid, coalesce(zone, 'UTC'), t)
$$;
COMMENT ON FUNCTION slot_grid_contains(interval, text, timestamptz) IS
  'Whether instant t is on the slot grid: a whole number of grid steps after a local midnight in zone (null: UTC), or where the clocks jump to over such a time. True when grid or t is null (no grid, an open end).';

-- The grid time at or after (up) or at or before (down) wall-clock time w, on w's local day
-- (for up, the next day's midnight when w is past the day's last grid time).
CREATE FUNCTION slot_grid_local_step(grid interval, w timestamp, up boolean) RETURNS timestamp
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT date_trunc('day', w) + grid * (CASE WHEN up THEN ceil(x.steps) ELSE floor(x.steps) END)::float8
  FROM (SELECT extract(epoch FROM w - date_trunc('day', w)) / extract(epoch FROM grid) AS steps) AS x
$$;
COMMENT ON FUNCTION slot_grid_local_step(interval, timestamp, boolean) IS
  'The wall-clock grid time at or after (up) or at or before w, a whole number of grid steps from w''s midnight.';

-- Where search rounds a free gap to the grid. Nearly always the grid time is the wall-clock
-- one less t's offset; when the clocks change in between, the change is found and the grid
-- read on its far side (no grid time lies between t and the change: each would be that
-- wall-clock one or further).
CREATE FUNCTION slot_grid_next(grid interval, zone text, t timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  z text := coalesce(zone, 'UTC');
  o interval;
  u timestamptz;
  change timestamptz;
BEGIN
  IF grid IS NULL OR t IS NULL OR NOT isfinite(t) THEN
    RETURN t;
  END IF;
  o := time_zone_offset(z, t);
  u := (slot_grid_local_step(grid, t AT TIME ZONE z, true) - o) AT TIME ZONE 'UTC';
  IF time_zone_offset(z, u) = o THEN
    RETURN u;
  END IF;
  change := time_zone_change(z, t, u);
  IF slot_grid_contains(grid, z, change) THEN
    RETURN change;
  END IF;
  RETURN (slot_grid_local_step(grid, change AT TIME ZONE z, true) - time_zone_offset(z, change)) AT TIME ZONE 'UTC';
END
$$;
COMMENT ON FUNCTION slot_grid_next(interval, text, timestamptz) IS
  'The first instant at or after t on the slot grid of zone (null: UTC); t itself when grid is null.';

CREATE FUNCTION slot_grid_previous(grid interval, zone text, t timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  z text := coalesce(zone, 'UTC');
  o interval;
  u timestamptz;
  change timestamptz;
  before timestamptz;
BEGIN
  IF grid IS NULL OR t IS NULL OR NOT isfinite(t) THEN
    RETURN t;
  END IF;
  o := time_zone_offset(z, t);
  u := (slot_grid_local_step(grid, t AT TIME ZONE z, false) - o) AT TIME ZONE 'UTC';
  IF time_zone_offset(z, u) = o THEN
    RETURN u;
  END IF;
  change := time_zone_change(z, u, t);
  IF slot_grid_contains(grid, z, change) THEN
    RETURN change;
  END IF;
  before := ((change AT TIME ZONE 'UTC') - interval '1 microsecond') AT TIME ZONE 'UTC';
  RETURN (slot_grid_local_step(grid, before AT TIME ZONE z, false) - time_zone_offset(z, before)) AT TIME ZONE 'UTC';
END
$$;
COMMENT ON FUNCTION slot_grid_previous(interval, text, timestamptz) IS
  'The last instant at or before t on the slot grid of zone (null: UTC); t itself when grid is null.';

-- The part of a free gap a member can book on the grid: from its first grid time to its last.
CREATE FUNCTION slot_grid_fit(grid interval, zone text, gap tstzrange) RETURNS tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN grid IS NULL OR isempty(gap) THEN gap
              ELSE allocation_range(slot_grid_next(grid, zone, lower(gap)), slot_grid_previous(grid, zone, upper(gap))) END
$$;
COMMENT ON FUNCTION slot_grid_fit(interval, text, tstzrange) IS
  'The part of gap from its first to its last time on the slot grid (empty when none or only one is in it); gap itself when grid is null.';

-- ---------------------------------------------------------------------------------------
-- The member rules, with opening hours and the grid (judged only when set; a psql booking or
-- an admin's is not judged at all). An open-ended booking never lies within opening hours.
CREATE OR REPLACE FUNCTION booking_rule_violations(resource_id uuid, during tstzrange, judged_at timestamptz)
RETURNS TABLE (ordinal integer, rule text, rule_limit interval, source text)
LANGUAGE sql STABLE AS $$
  SELECT v.ordinal, v.rule, v.rule_limit, v.source
  FROM effective_rule e
  CROSS JOIN LATERAL (VALUES
    (1, 'members_may_book_open_ended', NULL::interval, e.members_may_book_open_ended_source,
     NOT e.members_may_book_open_ended AND (lower_inf(during) OR upper_inf(during))),
    (2, 'min_duration', e.min_duration, e.min_duration_source,
     NOT lower_inf(during) AND NOT upper_inf(during) AND lower(during) + e.min_duration > upper(during)),
    (3, 'max_duration', e.max_duration, e.max_duration_source,
     NOT lower_inf(during) AND NOT upper_inf(during) AND lower(during) + e.max_duration < upper(during)),
    (4, 'min_notice', e.min_notice, e.min_notice_source,
     e.min_notice IS NOT NULL AND (lower_inf(during) OR lower(during) < judged_at + e.min_notice)),
    (5, 'max_advance', e.max_advance, e.max_advance_source,
     NOT lower_inf(during) AND lower(during) > judged_at + e.max_advance),
    (6, 'opening_hours', NULL::interval, e.opening_hours_source,
     CASE WHEN e.opening_hours IS NULL OR isempty(during) THEN false
          WHEN lower_inf(during) OR upper_inf(during) THEN true
          ELSE NOT (during <@ opening_hours_open_time(e.opening_hours, e.time_zone, during)) END),
    (7, 'slot_grid', e.slot_grid, e.slot_grid_source,
     CASE WHEN e.slot_grid IS NULL OR isempty(during) THEN false
          ELSE NOT (slot_grid_contains(e.slot_grid, e.time_zone, lower(during)) AND slot_grid_contains(e.slot_grid, e.time_zone, upper(during))) END)
  ) AS v (ordinal, rule, rule_limit, source, broken)
  WHERE e.resource_id = booking_rule_violations.resource_id AND v.broken
  ORDER BY v.ordinal
$$;
COMMENT ON FUNCTION booking_rule_violations(uuid, tstzrange, timestamptz) IS
  'The member rules a booking of the resource over during would break as of judged_at, in order (no rows: allowed); quotas are judged by booking_quota_breach. E.g. SELECT * FROM booking_rule_violations(id, allocation_range(now() + interval ''1 hour'', NULL), now()).';

-- ---------------------------------------------------------------------------------------
-- Quotas.

-- Quotas as the API shows them: each with period, max_duration (normalised), max_bookings, in that order.
CREATE FUNCTION quotas_in_order(quotas jsonb) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN quotas IS NOT NULL THEN coalesce((
    SELECT json_agg(json_build_object('period', q.value ->> 'period',
                                      'max_duration', iso_duration((q.value ->> 'max_duration')::interval),
                                      'max_bookings', (q.value ->> 'max_bookings')::bigint) ORDER BY q.n)
    FROM jsonb_array_elements(quotas) WITH ORDINALITY AS q(value, n)), '[]'::json) END
$$;
COMMENT ON FUNCTION quotas_in_order(jsonb) IS
  'Quotas as the API shows them: [{"period", "max_duration" (ISO 8601, normalised), "max_bookings"}, ...] in the order given.';

-- The calendar periods (local days, weeks from Monday, months) in zone that span meets.
CREATE FUNCTION quota_periods(period text, zone text, span tstzrange) RETURNS SETOF tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT tstzrange(local_instant(zone, p), local_instant(zone, p + s.step), '[)')
  FROM (SELECT CASE period WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '1 week' ELSE interval '1 month' END AS step) AS s
  CROSS JOIN generate_series(date_trunc(period, (lower(span) AT TIME ZONE zone) - interval '1 day'), upper(span) AT TIME ZONE zone, s.step) AS p
  WHERE NOT isempty(span) AND NOT lower_inf(span) AND NOT upper_inf(span)
    AND tstzrange(local_instant(zone, p), local_instant(zone, p + s.step), '[)') && span
$$;
COMMENT ON FUNCTION quota_periods(text, text, tstzrange) IS
  'The calendar periods (day, week from Monday, month) of zone''s wall clock that the bounded span meets, as ranges of instants.';

-- Run-out holds, cancelled and expired allocations, and maintenance do not count; each
-- booking counts by the part of it within the period. The owner's bookings are found through
-- allocation_owner_span_idx, by owner and time.
CREATE FUNCTION quota_usage(owner_id bigint, type text, resource_id uuid, period tstzrange, except_id uuid, series_id uuid, series_from timestamptz)
RETURNS TABLE (duration interval, bookings bigint)
LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(upper(a.during * period) - lower(a.during * period)), '0'), count(*)
  FROM allocation a
  JOIN resource r ON r.id = a.resource_id
  WHERE a.owner_id = quota_usage.owner_id
    AND allocation_overlaps(a.during, period)
    AND a.kind = 'booking' AND allocation_blocks(a.status, a.expires_at)
    AND (quota_usage.type IS NULL OR r.type = quota_usage.type)
    AND (quota_usage.resource_id IS NULL OR a.resource_id = quota_usage.resource_id)
    AND a.id IS DISTINCT FROM except_id
    AND (quota_usage.series_id IS NULL OR a.series_id IS DISTINCT FROM quota_usage.series_id OR lower(a.during) < series_from)
$$;
COMMENT ON FUNCTION quota_usage(bigint, text, uuid, tstzrange, uuid, uuid, timestamptz) IS
  'What owner_id has booked within period (live bookings, by the part within it): of every resource of type, or of resource_id; leaving out except_id and the occurrences of series_id from series_from on.';

-- The quotas a member's booking of the resource over during would break, in the order they
-- are judged (the type's, then the resource's, each in its order, each period by time), with
-- the period and what is already used there (no row: allowed). The type's quotas count the
-- member's bookings of every resource of the type, in the type's time zone; the resource's
-- own count that resource, in its time zone; both bind. An open-ended booking fits no quota.
-- except_id leaves out the allocation being moved; series_id leaves out that series'
-- occurrences from during's start on (to explain, after a series' insert, what that insert
-- saw when it judged an occurrence). No lock: booking_quota_breach() is the check that holds.
CREATE FUNCTION booking_quota_breaches(resource_id uuid, during tstzrange, owner_id bigint, except_id uuid DEFAULT NULL, series_id uuid DEFAULT NULL)
RETURNS TABLE (source text, quota jsonb, time_zone text, period tstzrange, used_duration interval, used_bookings bigint, added_duration interval)
LANGUAGE sql STABLE AS $$
  WITH rules AS (
    SELECT r.type, tr.quotas AS type_quotas, coalesce(tr.time_zone, 'UTC') AS type_zone,
           rr.quotas AS own_quotas, coalesce(rr.time_zone, tr.time_zone, 'UTC') AS own_zone
    FROM resource r
    LEFT JOIN resource_type_rule tr ON tr.type = r.type
    LEFT JOIN resource_rule rr ON rr.resource_id = r.id
    WHERE r.id = booking_quota_breaches.resource_id AND booking_quota_breaches.owner_id IS NOT NULL AND NOT isempty(during)
  ), quota AS (
    SELECT 1 AS scope, q.n, 'type' AS source, q.value AS quota, rules.type_zone AS zone, rules.type AS of_type, NULL::uuid AS of_resource
    FROM rules CROSS JOIN jsonb_array_elements(coalesce(rules.type_quotas, '[]')) WITH ORDINALITY AS q(value, n)
    UNION ALL
    SELECT 2, q.n, 'resource', q.value, rules.own_zone, NULL, booking_quota_breaches.resource_id
    FROM rules CROSS JOIN jsonb_array_elements(coalesce(rules.own_quotas, '[]')) WITH ORDINALITY AS q(value, n)
  ), judged AS (
    -- An open-ended booking is judged against the period its bounded end (or now) is in, and breaks it.
    SELECT q.*, p.period, lower_inf(during) OR upper_inf(during) AS endless
    FROM quota q
    CROSS JOIN LATERAL (
      SELECT qp AS period FROM quota_periods(q.quota ->> 'period', q.zone, during) AS qp
      UNION ALL
      SELECT qp FROM quota_periods(q.quota ->> 'period', q.zone,
        tstzrange(coalesce(lower(during), upper(during) - interval '1 microsecond', now()), coalesce(lower(during), upper(during) - interval '1 microsecond', now()), '[]')) AS qp
      WHERE lower_inf(during) OR upper_inf(during)
    ) AS p
  )
  SELECT j.source, j.quota, j.zone, j.period, u.duration, u.bookings,
         CASE WHEN NOT j.endless THEN upper(during * j.period) - lower(during * j.period) END
  FROM judged j
  CROSS JOIN LATERAL quota_usage(booking_quota_breaches.owner_id, j.of_type, j.of_resource, j.period, booking_quota_breaches.except_id,
                                 booking_quota_breaches.series_id, lower(during)) AS u
  WHERE j.endless
     OR u.bookings + 1 > (j.quota ->> 'max_bookings')::bigint
     OR u.duration + (upper(during * j.period) - lower(during * j.period)) > (j.quota ->> 'max_duration')::interval
  ORDER BY j.scope, j.n, lower(j.period)
$$;
COMMENT ON FUNCTION booking_quota_breaches(uuid, tstzrange, bigint, uuid, uuid) IS
  'The quotas owner_id''s booking of the resource over during would break, in order (no rows: allowed), each with its period (in time_zone) and what is already used in it. Reads as of now, without the lock booking_quota_breach() takes.';

-- The first of them, judged so that it holds under concurrency: before counting, a
-- transaction-scoped advisory lock per member and quota scope (the type's first, then the
-- resource's, always in that order), so two simultaneous bookings by one member wait for
-- each other here, and the second counts the first once it has committed. VOLATILE for
-- that reason: its count is a query of its own, with a snapshot taken after the lock is
-- granted, which also sees the rows its calling statement has inserted so far (a series'
-- earlier occurrences). No quota, no lock.
CREATE FUNCTION booking_quota_breach(resource_id uuid, during tstzrange, owner_id bigint, except_id uuid DEFAULT NULL, series_id uuid DEFAULT NULL)
RETURNS TABLE (source text, quota jsonb, time_zone text, period tstzrange, used_duration interval, used_bookings bigint, added_duration interval)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  found_type text;
  type_quotas jsonb;
  own_quotas jsonb;
BEGIN
  SELECT r.type, tr.quotas, rr.quotas INTO found_type, type_quotas, own_quotas
  FROM resource r
  LEFT JOIN resource_type_rule tr ON tr.type = r.type
  LEFT JOIN resource_rule rr ON rr.resource_id = r.id
  WHERE r.id = booking_quota_breach.resource_id;
  IF found_type IS NULL OR booking_quota_breach.owner_id IS NULL OR isempty(during)
     OR (coalesce(jsonb_array_length(type_quotas), 0) = 0 AND coalesce(jsonb_array_length(own_quotas), 0) = 0) THEN
    RETURN;
  END IF;
  IF jsonb_array_length(type_quotas) > 0 THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('invsys quota ' || booking_quota_breach.owner_id || ' type ' || found_type, 0));
  END IF;
  IF jsonb_array_length(own_quotas) > 0 THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('invsys quota ' || booking_quota_breach.owner_id || ' resource ' || booking_quota_breach.resource_id, 0));
  END IF;
  RETURN QUERY
    SELECT * FROM booking_quota_breaches(booking_quota_breach.resource_id, during, booking_quota_breach.owner_id, except_id, booking_quota_breach.series_id) LIMIT 1;
END
$$;
COMMENT ON FUNCTION booking_quota_breach(uuid, tstzrange, bigint, uuid, uuid) IS
  'The first quota owner_id''s booking of the resource over during would break (no row: allowed), with the period (in time_zone) and what is already used in it. Takes a lock per member and quota scope until the transaction ends, so that concurrent bookings by one member are counted one after the other. E.g. SELECT * FROM booking_quota_breach(id, tstzrange(now(), now() + interval ''3 hours''), 42).';

-- For search: the periods within span in which owner_id has less than `need` left under
-- quotas (zero need: nothing left), as one multirange, to be taken out of what they are shown.
CREATE FUNCTION quota_full_periods(quotas jsonb, zone text, owner_id bigint, of_type text, of_resource uuid, span tstzrange, need interval) RETURNS tstzmultirange
LANGUAGE sql STABLE AS $$
  SELECT coalesce(range_agg(p.period), '{}'::tstzmultirange)
  FROM jsonb_array_elements(coalesce(quotas, '[]')) AS q(value)
  CROSS JOIN LATERAL quota_periods(q.value ->> 'period', coalesce(zone, 'UTC'), span) AS p(period)
  CROSS JOIN LATERAL quota_usage(quota_full_periods.owner_id, of_type, of_resource, p.period, NULL, NULL, NULL) AS u
  WHERE quota_full_periods.owner_id IS NOT NULL
    AND (u.bookings >= (q.value ->> 'max_bookings')::bigint
         OR CASE WHEN need > '0' THEN u.duration + need > (q.value ->> 'max_duration')::interval
                 ELSE u.duration >= (q.value ->> 'max_duration')::interval END)
$$;
COMMENT ON FUNCTION quota_full_periods(jsonb, text, bigint, text, uuid, tstzrange, interval) IS
  'The calendar periods (in zone) within span in which owner_id has less than need left under quotas, counting bookings of every resource of of_type or of of_resource (need zero: nothing left).';

-- What a member may book of the resource within the bounded span, by the calendar rules: its
-- open time, less the periods in which their quotas (the type's and its own) leave less than
-- `need`. The slot grid and the other rules are the caller's (search applies them to each gap).
CREATE FUNCTION member_calendar_time(resource_id uuid, span tstzrange, owner_id bigint, need interval) RETURNS tstzmultirange
LANGUAGE sql STABLE AS $$
  SELECT opening_hours_open_time(e.opening_hours, e.time_zone, span)
         - quota_full_periods(tr.quotas, coalesce(tr.time_zone, 'UTC'), member_calendar_time.owner_id, e.type, NULL, span, need)
         - quota_full_periods(rr.quotas, coalesce(rr.time_zone, tr.time_zone, 'UTC'), member_calendar_time.owner_id, NULL, e.resource_id, span, need)
  FROM effective_rule e
  LEFT JOIN resource_type_rule tr ON tr.type = e.type
  LEFT JOIN resource_rule rr ON rr.resource_id = e.resource_id
  WHERE e.resource_id = member_calendar_time.resource_id
$$;
COMMENT ON FUNCTION member_calendar_time(uuid, tstzrange, bigint, interval) IS
  'The part of the bounded span in which owner_id may book the resource by its opening hours and quotas (with at least need left under each quota). E.g. SELECT unnest(member_calendar_time(id, tstzrange(now(), now() + interval ''7 days''), 42, interval ''1 hour'')) FROM resource.';

-- The owner's bookings by time, for quotas: replaces the plain index on owner_id, whose
-- lookups (a member's feed, foreign-key checks) the leading column still serves.
DROP INDEX allocation_owner_id_idx;
CREATE INDEX allocation_owner_span_idx ON allocation (owner_id, allocation_ends(during), allocation_starts(during));
