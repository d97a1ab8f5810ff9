-- Version 11: availability that costs what its answer costs when little is free.
--
-- Available resources, book-any-free and slot search used to walk the resources of a type
-- one by one, each looked up in the exclusion constraint's index. When most are free, the
-- walk stops after a few; when the whole fleet is out, it visits every resource. Asked
-- set-wise instead, "which of these resources is busy over this window" is the allocations
-- that meet the window, found through an index on the time alone, anti-joined with the
-- resources: about as cheap per resource as a hash lookup.
--
-- * allocation_blocked_idx: the live allocations by their range widened by their buffers,
--   the exclusion constraint's expression without resource_id in front (an index that
--   starts with a random uuid is no help to a search on time alone).
-- * allocation_blocked_ends_idx: the same allocations by where their widened range ends,
--   so that a slot search reads the ends after a given time in order and stops when its
--   page is full, however many resources there are.
-- * resource_type_name_idx: the resources of a type in page order with their ids and
--   sites, so that a set-wise search reads them from the index alone.
-- * type_blocked_range(): what a new allocation blocks on a resource that has no rules of
--   its own (so follows its type's): the searches judge all such resources of a type
--   against one widened window, and only resources with rules of their own one by one.

CREATE INDEX allocation_blocked_idx ON allocation USING gist (allocation_blocked_range(during, buffer_before, buffer_after))
  WHERE (status IN ('held', 'confirmed'));

CREATE INDEX allocation_blocked_ends_idx ON allocation (upper(allocation_blocked_range(during, buffer_before, buffer_after)))
  WHERE (status IN ('held', 'confirmed'));

CREATE INDEX resource_type_name_idx ON resource (type, name, id) INCLUDE (site_id);

CREATE FUNCTION type_blocked_range(type text, during tstzrange) RETURNS tstzrange
LANGUAGE sql STABLE AS $$
  SELECT allocation_blocked_range(during, t.buffer_before, t.buffer_after)
  FROM (SELECT) AS one
  LEFT JOIN resource_type_rule t ON t.type = type_blocked_range.type
$$;
COMMENT ON FUNCTION type_blocked_range(text, tstzrange) IS
  'during widened by the type''s buffers in force now: what a new allocation over during would block on a resource of the type that has no resource_rule of its own (resource_blocked_range for one that has).';
