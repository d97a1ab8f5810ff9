-- Version 4: booking rules, per resource type and overridable per resource.
-- Buffers bind everyone through the exclusion constraint itself: every allocation keeps
-- the buffers in force when it was written, and allocation_no_overlap compares ranges
-- widened by them, so a psql insert obeys them too. Length, notice, advance and open
-- ends bind members only; booking_rule_violations() judges them for the API and psql.
-- No type has rules until an admin sets some: nothing booked before changes.

-- An interval as the API writes durations, whatever the session's IntervalStyle.
CREATE FUNCTION iso_duration(i interval) RETURNS text
LANGUAGE sql IMMUTABLE SET IntervalStyle = 'iso_8601' AS $$
  SELECT i::text
$$;
COMMENT ON FUNCTION iso_duration(interval) IS
  'An interval as an ISO 8601 duration (PT30M, P3D, P1DT2H), whatever the session''s IntervalStyle; null stays null.';

-- The rules of a type. No row, or a null field, is "no rule".
CREATE TABLE resource_type_rule (
  type                         text PRIMARY KEY REFERENCES resource_type (name) ON UPDATE CASCADE ON DELETE CASCADE,
  min_duration                 interval,
  max_duration                 interval,
  min_notice                   interval,
  max_advance                  interval,
  buffer_before                interval,
  buffer_after                 interval,
  members_may_book_open_ended  boolean NOT NULL DEFAULT false,
  CONSTRAINT resource_type_rule_not_negative CHECK (min_duration >= '0' AND max_duration >= '0' AND min_notice >= '0'
    AND max_advance >= '0' AND buffer_before >= '0' AND buffer_after >= '0'),
  CONSTRAINT resource_type_rule_min_within_max CHECK (min_duration <= max_duration)
);
COMMENT ON TABLE resource_type_rule IS 'Booking rules of a resource type; every resource of the type follows them unless resource_rule overrides a field. No row: no rules. Read the result in effective_rule.';
COMMENT ON COLUMN resource_type_rule.type IS 'The resource type the rules are for.';
COMMENT ON COLUMN resource_type_rule.min_duration IS 'Shortest booking a member may make; null: no rule.';
COMMENT ON COLUMN resource_type_rule.max_duration IS 'Longest booking a member may make; null: no rule.';
COMMENT ON COLUMN resource_type_rule.min_notice IS 'How long before its start a member''s booking must be made; null: no rule.';
COMMENT ON COLUMN resource_type_rule.max_advance IS 'How far ahead of now a member''s booking may start; null: no rule.';
COMMENT ON COLUMN resource_type_rule.buffer_before IS 'Time kept free before every allocation, for everyone (stored on each allocation when written); null: none.';
COMMENT ON COLUMN resource_type_rule.buffer_after IS 'Time kept free after every allocation (turnaround), for everyone (stored on each allocation when written); null: none.';
COMMENT ON COLUMN resource_type_rule.members_may_book_open_ended IS 'Whether members may book with an open start or end; admins always may.';

-- Per-resource overrides: a null field inherits the type's.
CREATE TABLE resource_rule (
  resource_id                  uuid PRIMARY KEY REFERENCES resource (id) ON DELETE CASCADE,
  min_duration                 interval,
  max_duration                 interval,
  min_notice                   interval,
  max_advance                  interval,
  buffer_before                interval,
  buffer_after                 interval,
  members_may_book_open_ended  boolean,
  CONSTRAINT resource_rule_not_negative CHECK (min_duration >= '0' AND max_duration >= '0' AND min_notice >= '0'
    AND max_advance >= '0' AND buffer_before >= '0' AND buffer_after >= '0'),
  CONSTRAINT resource_rule_min_within_max CHECK (min_duration <= max_duration)
);
COMMENT ON TABLE resource_rule IS 'Booking rules of one resource that override its type''s; a null field inherits the type''s. Read the result in effective_rule.';
COMMENT ON COLUMN resource_rule.resource_id IS 'The resource the overrides are for.';
COMMENT ON COLUMN resource_rule.min_duration IS 'Overrides resource_type_rule.min_duration; null inherits.';
COMMENT ON COLUMN resource_rule.max_duration IS 'Overrides resource_type_rule.max_duration; null inherits.';
COMMENT ON COLUMN resource_rule.min_notice IS 'Overrides resource_type_rule.min_notice; null inherits.';
COMMENT ON COLUMN resource_rule.max_advance IS 'Overrides resource_type_rule.max_advance; null inherits.';
COMMENT ON COLUMN resource_rule.buffer_before IS 'Overrides resource_type_rule.buffer_before; null inherits.';
COMMENT ON COLUMN resource_rule.buffer_after IS 'Overrides resource_type_rule.buffer_after; null inherits.';
COMMENT ON COLUMN resource_rule.members_may_book_open_ended IS 'Overrides resource_type_rule.members_may_book_open_ended; null inherits.';

CREATE VIEW effective_rule AS
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
         CASE WHEN rr.members_may_book_open_ended IS NOT NULL THEN 'resource' WHEN tr.members_may_book_open_ended IS NOT NULL THEN 'type' ELSE 'none' END AS members_may_book_open_ended_source
  FROM resource r
  LEFT JOIN resource_type_rule tr ON tr.type = r.type
  LEFT JOIN resource_rule rr ON rr.resource_id = r.id;
COMMENT ON VIEW effective_rule IS 'The booking rules in force for each resource: its own where set, else its type''s; null is no rule. Each *_source column says where a value comes from: resource, type or none.';

-- The range an allocation keeps everyone else out of: during widened by its buffers. The
-- buffers are added in UTC (a day is always 24 hours), so the result does not depend on
-- the session's time zone: that is what makes this IMMUTABLE, as the exclusion constraint
-- needs, and, every operator being immutable too, lets PostgreSQL inline it. Unbounded
-- ends stay unbounded; a null buffer is none.
CREATE FUNCTION allocation_blocked_range(during tstzrange, buffer_before interval, buffer_after interval) RETURNS tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN during IS NULL OR isempty(during) THEN during
              ELSE tstzrange(((lower(during) AT TIME ZONE 'UTC') - coalesce(buffer_before, '0')) AT TIME ZONE 'UTC',
                             ((upper(during) AT TIME ZONE 'UTC') + coalesce(buffer_after, '0')) AT TIME ZONE 'UTC', '[)') END
$$;
COMMENT ON FUNCTION allocation_blocked_range(tstzrange, interval, interval) IS
  'during widened by buffer_before and buffer_after, added in UTC (unbounded ends stay unbounded): what allocation_no_overlap compares.';

-- What a new allocation of the resource over during would block, with the buffers in force now.
CREATE FUNCTION resource_blocked_range(resource_id uuid, during tstzrange) RETURNS tstzrange
LANGUAGE sql STABLE AS $$
  SELECT allocation_blocked_range(during, e.buffer_before, e.buffer_after)
  FROM effective_rule e
  WHERE e.resource_id = resource_blocked_range.resource_id
$$;
COMMENT ON FUNCTION resource_blocked_range(uuid, tstzrange) IS
  'during widened by the resource''s buffers in force now: the range a new allocation over during would block.';

ALTER TABLE allocation
  ADD COLUMN buffer_before interval NOT NULL DEFAULT '0',
  ADD COLUMN buffer_after interval NOT NULL DEFAULT '0',
  ADD CONSTRAINT allocation_buffers_not_negative CHECK (buffer_before >= '0' AND buffer_after >= '0');
COMMENT ON COLUMN allocation.buffer_before IS 'Time kept free before it: the resource''s buffer_before rule when it was inserted or last moved (set by a trigger). Changing a rule does not rewrite it.';
COMMENT ON COLUMN allocation.buffer_after IS 'Time kept free after it: the resource''s buffer_after rule when it was inserted or last moved (set by a trigger). Changing a rule does not rewrite it.';

-- The promise, with buffers: no two live allocations of one resource overlap once each is
-- widened by its own buffers, so the gap between neighbours is at least the earlier one's
-- buffer_after plus the later one's buffer_before. Still one constraint of that name, so
-- INSERT ... ON CONFLICT DO NOTHING keeps absorbing its violations.
ALTER TABLE allocation
  DROP CONSTRAINT allocation_no_overlap,
  ADD CONSTRAINT allocation_no_overlap EXCLUDE USING gist (resource_id WITH =, allocation_blocked_range(during, buffer_before, buffer_after) WITH &&)
    WHERE (status IN ('held', 'confirmed'));

-- The old constraint's index also served every "this resource, this window" read on
-- the bare during; this one keeps those reads indexed.
CREATE INDEX allocation_resource_id_during_idx ON allocation USING gist (resource_id, during)
  WHERE (status IN ('held', 'confirmed'));

-- Fills an allocation's buffers from the rules in force whenever it is inserted or moved
-- (times or resource), by the API or by hand. Any other change keeps them: rules changed
-- later never rewrite existing allocations, and an admin may waive a buffer in psql.
CREATE FUNCTION allocation_apply_buffers() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  before interval;
  after interval;
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.during IS NOT DISTINCT FROM OLD.during AND NEW.resource_id = OLD.resource_id THEN
    RETURN NEW;
  END IF;
  SELECT e.buffer_before, e.buffer_after INTO before, after
  FROM effective_rule e WHERE e.resource_id = NEW.resource_id;
  NEW.buffer_before := coalesce(before, '0');
  NEW.buffer_after := coalesce(after, '0');
  RETURN NEW;
END
$$;
-- Named to run before allocation_expire_overlapping_holds (triggers fire in name order),
-- which needs the buffers to know which holds are in the way.
CREATE TRIGGER allocation_apply_buffers BEFORE INSERT OR UPDATE OF resource_id, during ON allocation
  FOR EACH ROW EXECUTE FUNCTION allocation_apply_buffers();

-- Run-out holds in the way are those whose widened range meets the new one's.
CREATE OR REPLACE FUNCTION allocation_expire_overlapping_holds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE allocation SET status = 'expired'
  WHERE id IN (
    SELECT id FROM allocation
    WHERE resource_id = NEW.resource_id AND status = 'held' AND expires_at <= now()
      AND allocation_blocked_range(during, buffer_before, buffer_after)
          && allocation_blocked_range(NEW.during, NEW.buffer_before, NEW.buffer_after)
      AND id <> NEW.id
    ORDER BY id
    FOR UPDATE);
  RETURN NEW;
END
$$;
DROP TRIGGER allocation_expire_overlapping_holds ON allocation;
CREATE TRIGGER allocation_expire_overlapping_holds BEFORE INSERT OR UPDATE OF resource_id, during, status, buffer_before, buffer_after ON allocation
  FOR EACH ROW WHEN (NEW.status IN ('held', 'confirmed')) EXECUTE FUNCTION allocation_expire_overlapping_holds();

-- Free time is where a new allocation could go now: each blocking allocation is widened
-- by its own buffers and by the new one's (its buffer_after on the near side of the
-- neighbour's start, its buffer_before past the neighbour's end).
CREATE OR REPLACE FUNCTION resource_free_time(resource_id uuid, span tstzrange) RETURNS tstzmultirange
LANGUAGE sql STABLE AS $$
  SELECT tstzmultirange(span) - coalesce(range_agg(allocation_blocked_range(a.during,
           a.buffer_before + coalesce(e.buffer_after, '0'), a.buffer_after + coalesce(e.buffer_before, '0'))), '{}'::tstzmultirange)
  FROM effective_rule e
  JOIN allocation a ON a.resource_id = e.resource_id
  WHERE e.resource_id = resource_free_time.resource_id
    AND allocation_blocks(a.status, a.expires_at)
    AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after)
        && allocation_blocked_range(span, e.buffer_before, e.buffer_after)
$$;
COMMENT ON FUNCTION resource_free_time(uuid, tstzrange) IS
  'The parts of span where a new allocation of the resource fits now: span minus its confirmed allocations and live holds, each widened by its buffers and the resource''s. E.g. SELECT unnest(resource_free_time(id, tstzrange(now(), now() + interval ''7 days''))) FROM resource.';

-- The rules that bind members, judged for a booking of the resource over during as of
-- judged_at (the API passes now()), in a fixed order; no rows: allowed. Exactly the limit
-- is allowed. An open-ended booking (either end unbounded) needs
-- members_may_book_open_ended; when allowed, its length is not judged.
CREATE FUNCTION booking_rule_violations(resource_id uuid, during tstzrange, judged_at timestamptz)
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
     NOT lower_inf(during) AND lower(during) > judged_at + e.max_advance)
  ) AS v (ordinal, rule, rule_limit, source, broken)
  WHERE e.resource_id = booking_rule_violations.resource_id AND v.broken
  ORDER BY v.ordinal
$$;
COMMENT ON FUNCTION booking_rule_violations(uuid, tstzrange, timestamptz) IS
  'The member rules a booking of the resource over during would break as of judged_at, in order (no rows: allowed). E.g. SELECT * FROM booking_rule_violations(id, allocation_range(now() + interval ''1 hour'', NULL), now()).';

-- Where a member may book at all, as of judged_at: span cut to [judged_at + min_notice,
-- judged_at + max_advance).
CREATE FUNCTION member_booking_span(resource_id uuid, span tstzrange, judged_at timestamptz) RETURNS tstzrange
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN judged_at + e.min_notice >= judged_at + e.max_advance THEN 'empty'::tstzrange
              ELSE span * tstzrange(judged_at + e.min_notice, judged_at + e.max_advance, '[)') END
  FROM effective_rule e
  WHERE e.resource_id = member_booking_span.resource_id
$$;
COMMENT ON FUNCTION member_booking_span(uuid, tstzrange, timestamptz) IS
  'The part of span in which a member may book the resource as of judged_at: from judged_at + min_notice to judged_at + max_advance.';
