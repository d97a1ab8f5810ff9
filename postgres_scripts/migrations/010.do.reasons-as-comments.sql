-- The reasons behind the schema, as COMMENT ON: what psql's \d+ and \df+ show, and what
-- the generated whole schema (create_tables.sql, a pg_dump) keeps, where SQL comments in
-- the migrations are lost. Changes no behaviour.

COMMENT ON FUNCTION touch_updated_at() IS
  'Sets updated_at on every update, so it stays honest for changes made by hand in psql too, not only through the API.';
COMMENT ON FUNCTION site_keep_id_sequence_ahead() IS
  'A site inserted with a chosen id (PUT /api/sites/:id, or psql) moves the id sequence past it, so later generated ids do not run into it. '
  'The advisory lock keeps two such inserts from moving the sequence backwards past each other.';
COMMENT ON FUNCTION allocation_apply_buffers() IS
  'Fills an allocation''s buffers from the rules in force (effective_rule) whenever it is inserted or moved (times or resource), by the API or by hand. '
  'Any other change keeps them: rules changed later never rewrite existing allocations, and an admin may waive a buffer in psql.';
COMMENT ON FUNCTION allocation_expire_overlapping_holds() IS
  'Before a row starts (or keeps) blocking a slot, run-out holds of the same resource whose buffered ranges meet its own are written as expired, '
  'so they leave the exclusion constraint''s index before the row is checked against it. It runs inside the inserting or moving statement, '
  'so INSERT ... ON CONFLICT DO NOTHING sees the slot free: no background job is needed for correctness.';
COMMENT ON FUNCTION allocation_check_status_change() IS
  'A hold is born held and leaves that state once: confirmed while it lasts, cancelled, or expired once it has run out. '
  'Expired is history, like cancelled; nothing else changes status (check_violation allocation_status_transition).';
COMMENT ON FUNCTION allocation_record_event() IS
  'Writes one allocation_event row per insert, update and delete of an allocation, whoever makes it (the API or psql), '
  'with the actor the transaction names in invsys.actor (null in psql unless set).';
COMMENT ON FUNCTION allocation_snapshot(allocation) IS
  'The stored row shaped like the API''s allocation (during split into starts_at and ends_at, times in UTC with Z), so history reads the same whoever wrote it.';
COMMENT ON FUNCTION utc_text(timestamptz) IS
  'RFC 3339 in UTC with Z, as the API writes times, whatever the session''s TimeZone (the era after it for years BC, which only psql can store). '
  'Without a SET clause, so that the planner inlines it: the history trigger calls it for every time of a row.';

COMMENT ON CONSTRAINT allocation_no_overlap ON allocation IS
  'The promise of the product: no two live allocations of one resource overlap, each widened by its own buffers (so neighbours are at least '
  'the earlier one''s buffer_after plus the later one''s buffer_before apart). Cancelled and expired rows stay as history and block nothing. '
  'A hold past its expires_at stays in this index until written as expired (the predicate cannot mention now()): '
  'allocation_expire_overlapping_holds does that before anything is checked against it, and reads ask allocation_blocks().';
COMMENT ON CONSTRAINT allocation_during_half_open ON allocation IS
  'One spelling per range: bounded ends are [start, end), so back-to-back allocations touch without overlapping. '
  'It passes the empty range, so that allocation_during_not_empty is the check that names that mistake.';
COMMENT ON CONSTRAINT allocation_during_finite ON allocation IS
  'An open end is an unbounded range end, never the infinity timestamp, so "until further notice" has one representation for psql users and the API alike.';
COMMENT ON CONSTRAINT allocation_hold_length ON allocation IS
  'A hold is short by design: it reserves a slot for at most an hour while someone decides, not instead of booking.';
COMMENT ON CONSTRAINT container_in_freezer ON container IS
  'freezer_type is always freezer: with freezer_id it makes up the foreign key container_freezer_fkey.';
COMMENT ON CONSTRAINT container_freezer_fkey ON container IS
  'To (id, type) of resource, with type always freezer: the database refuses a container in anything but a freezer, '
  'and refuses turning a freezer that holds containers into another type.';
COMMENT ON CONSTRAINT resource_id_type_unique ON resource IS
  'What container_freezer_fkey references: a resource''s id together with its type.';

COMMENT ON INDEX account_name_unique IS 'Names ignore case, so "Alice" and "alice" cannot be two people.';
COMMENT ON INDEX allocation_resource_span_idx IS
  'One resource''s allocations by time, whatever their status (reads ask allocation_overlaps). Ends first: a window asks for ends after its start '
  'and starts before its end, and the first is the bound that cuts a resource''s past away.';
COMMENT ON INDEX allocation_starts_idx IS
  'Every allocation by start, then id: the order lists are in, so a page of the list across resources is read from here and no further than the page.';
COMMENT ON INDEX allocation_during_idx IS
  'What is going on at an instant across all resources (the list across resources, from its window''s start).';

COMMENT ON TRIGGER api_token_notify_credentials_changed ON api_token IS
  'Not when only last_used_at moved: every lookup the database answers stamps it (at most once a minute), and a notice then would only make '
  'the replica drop the lookup it had just kept, and look the token up again.';
COMMENT ON TRIGGER allocation_apply_buffers ON allocation IS
  'Named to run before allocation_expire_overlapping_holds (triggers fire in name order), which needs the buffers to know which holds are in the way.';
