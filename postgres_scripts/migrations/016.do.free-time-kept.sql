-- Version 16: each resource's free time kept as rows, so that "which resources of this type
-- are free over this window" reads only the ones that are.
--
-- Asked of the allocations, that question is answered by proving every other resource
-- busy: one pass over all that is busy in the window, then a lookup per resource. When a
-- whole fleet is out at once (100,000 lorries, each booked at the asked hour) that pass
-- was most of each search, about 50 ms on the benchmark's machine, however short the
-- answer. resource_gap holds the complement instead: for each resource, the maximal ranges
-- that no confirmed allocation (widened by its own buffers, as allocation_no_overlap
-- compares them) meets. A window is free on a resource exactly when one of its gaps
-- contains it, so the free resources of a type are an index search whose rows are the
-- answer: none when the fleet is out.
--
-- * Only confirmed allocations are kept out of the gaps: a hold stops blocking when it
--   runs out, which no write marks, so the searches look up the live holds (few: they
--   last an hour at most) beside the gaps.
-- * Triggers keep the gaps in the same transaction as the change that moves them, so a
--   search sees the same allocations through both. Each statement on allocation rewrites,
--   for each resource it touched, only the gaps that meet or adjoin what changed.
--   Writers of one resource's gaps take turns on a transaction-scoped advisory lock (one of
--   1,024, by the resource's id), which also orders them after one another's commits (READ
--   COMMITTED reads afresh after it).
-- * A resource starts with one gap, all of time. Its type is kept beside its gaps (by the
--   foreign key: a resource that changes type moves its gaps along) so that the indexes
--   serve a type.
-- * A load that turns off triggers (session_replication_role = replica, as the benchmark's
--   bulk load does) must call resource_gap_rebuild() after it; TRUNCATE allocation does.

CREATE TABLE resource_gap (
  resource_id uuid NOT NULL,
  type        text NOT NULL,
  during      tstzrange NOT NULL,
  CONSTRAINT resource_gap_resource_fkey FOREIGN KEY (resource_id, type)
    REFERENCES resource (id, type) ON UPDATE CASCADE ON DELETE CASCADE
);
COMMENT ON COLUMN resource_gap.resource_id IS 'The resource whose free time this is.';
COMMENT ON COLUMN resource_gap.type IS 'The resource''s type (kept along by the foreign key), so that the indexes serve a search of a type.';
COMMENT ON COLUMN resource_gap.during IS 'A maximal free range: no confirmed allocation of the resource, widened by its own buffers, meets it. Unbounded at either end when nothing is booked beyond.';
COMMENT ON TABLE resource_gap IS
  'Derived, kept by triggers: each resource''s free time, the maximal ranges no confirmed allocation (widened by its own buffers) meets. Holds are not in it. E.g. SELECT resource_id FROM resource_gap WHERE type = ''lorry'' AND during @> tstzrange(''2026-12-24 09:00Z'', ''2026-12-24 17:00Z'').';


-- The gaps of each resource named in resource_ids (null: every resource) written afresh
-- from its confirmed allocations.
CREATE FUNCTION resource_gap_rebuild(resource_ids uuid[] DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  written bigint;
BEGIN
  -- Writers of gaps write allocations first: this waits for them, and keeps them out until commit.
  LOCK TABLE allocation IN SHARE MODE;
  DELETE FROM resource_gap WHERE resource_ids IS NULL OR resource_id = ANY (resource_ids);
  INSERT INTO resource_gap (resource_id, type, during)
  SELECT r.id, r.type, gap
  FROM resource r
  CROSS JOIN LATERAL unnest('{(,)}'::tstzmultirange - coalesce((
    SELECT range_agg(allocation_blocked_range(a.during, a.buffer_before, a.buffer_after))
    FROM allocation a
    WHERE a.resource_id = r.id AND a.status = 'confirmed'), '{}')) AS gap
  WHERE resource_ids IS NULL OR r.id = ANY (resource_ids);
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END
$$;
COMMENT ON FUNCTION resource_gap_rebuild(uuid[]) IS
  'Writes the resource_gap rows of the resources named (null: all) afresh from their confirmed allocations; returns how many. The triggers keep them otherwise: needed only after writing allocations with triggers off. E.g. SELECT resource_gap_rebuild();';

-- The gaps of the resources in resource_ids rewritten where ranges (pairwise: a widened
-- range that became or stopped being a confirmed allocation's) changed them. For each
-- resource, the reach is all it changed, one microsecond wider on each side so that a gap
-- ending or starting right there is taken too; the gaps meeting it are deleted, and what
-- they and the reach span is written again as that span less its confirmed allocations.
-- plpgsql would plan its statement afresh on every call (a custom plan looks no costlier
-- than the generic one): force_generic_plan keeps one per connection, as migration 15 does
-- for the rules (measured: 1.2 to 1.8 ms added to a booking's INSERT, 0.2 to 0.3 with it).
CREATE FUNCTION resource_gap_refresh(resource_ids uuid[], ranges tstzrange[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  -- One lock per bucket of resources, not per resource: a statement touching 100,000
  -- resources would otherwise hold 100,000 locks, more than PostgreSQL's lock table takes
  -- (out of shared memory). In bucket order, so that two statements do not wait on each other.
  PERFORM pg_advisory_xact_lock(hashtext('invsys gaps'), c.bucket)
  FROM (SELECT DISTINCT abs(hashtext(id::text) % 1024) AS bucket FROM unnest(resource_ids) AS id ORDER BY 1) AS c;
  WITH changed AS (
    SELECT c.resource_id, r.type,
           tstzrange(lower(c.reach) - interval '1 microsecond', upper(c.reach) + interval '1 microsecond', '[)') AS reach
    FROM (SELECT resource_id, range_merge(range_agg(during)) AS reach
          FROM unnest(resource_ids, ranges) AS c (resource_id, during)
          GROUP BY resource_id) AS c
    -- A resource deleted in the same statement keeps no gaps.
    JOIN resource r ON r.id = c.resource_id
  ), gone AS (
    DELETE FROM resource_gap g USING changed c
    WHERE g.resource_id = c.resource_id AND g.during && c.reach
    RETURNING g.resource_id, g.during
  ), spans AS (
    SELECT c.resource_id, c.type, range_merge(c.reach, coalesce(range_merge(range_agg(d.during)), c.reach)) AS span
    FROM changed c
    LEFT JOIN gone d ON d.resource_id = c.resource_id
    GROUP BY c.resource_id, c.type, c.reach
  )
  INSERT INTO resource_gap (resource_id, type, during)
  SELECT s.resource_id, s.type, gap
  FROM spans s
  CROSS JOIN LATERAL unnest(tstzmultirange(s.span) - coalesce((
    SELECT range_agg(allocation_blocked_range(a.during, a.buffer_before, a.buffer_after))
    FROM allocation a
    WHERE a.resource_id = s.resource_id AND a.status = 'confirmed'
      AND allocation_blocked_range(a.during, a.buffer_before, a.buffer_after) && s.span), '{}')) AS gap;
END
$$;
COMMENT ON FUNCTION resource_gap_refresh(uuid[], tstzrange[]) IS
  'Rewrites the resource_gap rows of the resources named where the paired ranges changed them (allocation_refresh_gaps calls it); writers of one resource''s gaps take turns on an advisory lock (one of 1,024, by resource id).';

-- A statement's changes to confirmed allocations: the (resource, widened range) pairs it
-- added or took away. An UPDATE that leaves them as they were (a description) has none.
CREATE FUNCTION allocation_refresh_gaps() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM resource_gap_refresh(array_agg(resource_id), array_agg(allocation_blocked_range(during, buffer_before, buffer_after)))
    FROM new_rows WHERE status = 'confirmed'
    HAVING count(*) > 0;
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM resource_gap_refresh(array_agg(resource_id), array_agg(allocation_blocked_range(during, buffer_before, buffer_after)))
    FROM old_rows WHERE status = 'confirmed'
    HAVING count(*) > 0;
  ELSE
    PERFORM resource_gap_refresh(array_agg(c.resource_id), array_agg(c.blocked))
    FROM ((SELECT resource_id, allocation_blocked_range(during, buffer_before, buffer_after) AS blocked FROM old_rows WHERE status = 'confirmed'
           EXCEPT ALL
           SELECT resource_id, allocation_blocked_range(during, buffer_before, buffer_after) FROM new_rows WHERE status = 'confirmed')
          UNION ALL
          (SELECT resource_id, allocation_blocked_range(during, buffer_before, buffer_after) FROM new_rows WHERE status = 'confirmed'
           EXCEPT ALL
           SELECT resource_id, allocation_blocked_range(during, buffer_before, buffer_after) FROM old_rows WHERE status = 'confirmed')) AS c
    HAVING count(*) > 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION allocation_refresh_gaps() IS
  'Keeps resource_gap: after each statement on allocation, rewrites the gaps of the resources whose confirmed allocations it changed, around what changed.';

-- Transition tables allow one event per trigger.
CREATE TRIGGER allocation_refresh_gaps_inserted AFTER INSERT ON allocation
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION allocation_refresh_gaps();
CREATE TRIGGER allocation_refresh_gaps_updated AFTER UPDATE ON allocation
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION allocation_refresh_gaps();
CREATE TRIGGER allocation_refresh_gaps_deleted AFTER DELETE ON allocation
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION allocation_refresh_gaps();

CREATE FUNCTION allocation_truncate_gaps() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM resource_gap_rebuild();
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION allocation_truncate_gaps() IS 'After TRUNCATE allocation every resource is free all the time again: resource_gap_rebuild().';
CREATE TRIGGER allocation_truncate_gaps AFTER TRUNCATE ON allocation
  FOR EACH STATEMENT EXECUTE FUNCTION allocation_truncate_gaps();

CREATE FUNCTION resource_add_gap() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO resource_gap (resource_id, type, during) SELECT id, type, '(,)' FROM new_rows;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION resource_add_gap() IS 'A new resource is free all the time: one resource_gap row.';
CREATE TRIGGER resource_add_gap AFTER INSERT ON resource
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION resource_add_gap();

-- Filled before its indexes are built, so that they are built once rather than grown row by row.
SELECT resource_gap_rebuild();

-- A search of a type reads three indexes (availability.ts, gapContains): the bounded gaps by
-- GiST, the gaps open at the end by where they start, and those open only at the start by
-- where they end. The open gaps are kept out of the GiST index: a GiST key never shrinks,
-- and every resource's first gap is open at both ends and its last stays open at the end,
-- so with them in it the keys span all time and each search reads much of the index.
CREATE INDEX resource_gap_bounded_idx ON resource_gap USING gist (type, during)
  WHERE NOT (lower_inf(during) OR upper_inf(during));
CREATE INDEX resource_gap_open_end_idx ON resource_gap (type, coalesce(lower(during), '-infinity'))
  WHERE upper_inf(during);
CREATE INDEX resource_gap_open_start_idx ON resource_gap (type, upper(during))
  WHERE lower_inf(during) AND NOT upper_inf(during);
-- A statement's rewrite of one resource's gaps (resource_gap_refresh).
CREATE INDEX resource_gap_resource_during_idx ON resource_gap USING gist (resource_id, during);

-- What migration 11 added it for (the live allocations meeting a window, whatever their
-- resource) is now read from resource_gap; nothing else reads it, and every booking wrote it.
DROP INDEX allocation_blocked_idx;
