-- Version 14: the change feed and webhooks (docs/events.md).
--
-- Every change to an allocation or a resource, whoever makes it (the API, a psql UPDATE),
-- is recorded by a trigger in the same transaction as the change: a change that rolls
-- back (or is refused) leaves no trace, and no code path can forget one. Allocations
-- already had that record, their history (allocation_event, allocation_record_event): the
-- feed is built on it, so that a booking still writes one row and builds its JSON once
-- (a second row per booking cost it about a tenth of its database time, measured). Resource
-- changes get the same record in resource_event. The view event is the feed: both, in
-- order of position.
--
-- Events are numbered after they commit, not when they are written: a value drawn when a
-- row is inserted (an identity) is not in commit order, so a reader paging by it would
-- skip a smaller number that commits after a larger one. event_number_committed(), run
-- by the API (one caller at a time), gives the changes that have committed since its last
-- run the next positions, in the order they were written. A position is given only once
-- its change is committed, and never below one given before: a reader that has seen
-- position N will never see an event appear at or below N.

-- The history's snapshot of an allocation becomes its API representation whole: it gains
-- resource_type (given: the trigger reads it in the statement that writes the row) and the
-- buffers (a buffer changed by hand in psql was no history before). Times in UTC with Z,
-- buffers as ISO 8601 durations or null for none, status as written (GET reads a hold past
-- its expires_at as expired before anything has written it so; the allocation.expired
-- event says when that is written). events.test.ts compares it with GET field by field.
DROP FUNCTION allocation_snapshot(allocation);
CREATE FUNCTION allocation_snapshot(a allocation, resource_type text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', a.id, 'resource_id', a.resource_id, 'resource_type', resource_type,
    'starts_at', utc_text(lower(a.during)), 'ends_at', utc_text(upper(a.during)),
    'kind', a.kind, 'status', a.status, 'description', a.description, 'data', a.data,
    'created_at', utc_text(a.created_at), 'updated_at', utc_text(a.updated_at),
    'cancelled_at', utc_text(a.cancelled_at), 'expires_at', utc_text(a.expires_at),
    'owner_id', a.owner_id, 'updated_by', a.updated_by,
    -- iso_duration() switches IntervalStyle on every call: not called for the usual zero.
    'buffer_before', CASE WHEN a.buffer_before <> '0' THEN iso_duration(a.buffer_before) END,
    'buffer_after', CASE WHEN a.buffer_after <> '0' THEN iso_duration(a.buffer_after) END,
    'series_id', a.series_id)
$$;
COMMENT ON FUNCTION allocation_snapshot(allocation, text) IS
  'An allocation as the API represents it (status as written), given its resource''s type, as jsonb: what the history and the change feed record. E.g. SELECT allocation_snapshot(a, r.type) FROM allocation a JOIN resource r ON r.id = a.resource_id.';

-- A snapshot as JSON in the API's order of fields (jsonb keeps its own order): how the
-- feed and webhooks show an allocation.
CREATE FUNCTION allocation_json(snapshot jsonb) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN snapshot IS NOT NULL THEN json_build_object(
    'id', snapshot->'id', 'resource_id', snapshot->'resource_id', 'resource_type', snapshot->'resource_type',
    'starts_at', snapshot->'starts_at', 'ends_at', snapshot->'ends_at', 'kind', snapshot->'kind',
    'status', snapshot->'status', 'description', snapshot->'description', 'data', snapshot->'data',
    'created_at', snapshot->'created_at', 'updated_at', snapshot->'updated_at', 'cancelled_at', snapshot->'cancelled_at',
    'expires_at', snapshot->'expires_at', 'owner_id', snapshot->'owner_id', 'updated_by', snapshot->'updated_by',
    'buffer_before', snapshot->'buffer_before', 'buffer_after', snapshot->'buffer_after', 'series_id', snapshot->'series_id') END
$$;
COMMENT ON FUNCTION allocation_json(jsonb) IS
  'An allocation snapshot (allocation_snapshot) as JSON with the fields in the API''s order.';

-- The resource representation of the API (GET /api/resources/{id}).
CREATE FUNCTION resource_json(r resource) RETURNS json
LANGUAGE sql STABLE AS $$
  SELECT json_build_object(
    'id', r.id, 'type', r.type, 'name', r.name, 'site_id', r.site_id, 'mac', r.mac::text,
    'created_at', utc_text(r.created_at), 'updated_at', utc_text(r.updated_at))
$$;
COMMENT ON FUNCTION resource_json(resource) IS
  'A resource as the API represents it. E.g. SELECT resource_json(r) FROM resource r.';

-- History rows become events. Rows written before this migration get position 0: they are
-- history, not news, and never enter the feed. (A default added with the column is stored
-- once, not written into every row, and dropped at once: new rows start unnumbered.)
ALTER TABLE allocation_event
  ADD COLUMN position bigint DEFAULT 0
    CONSTRAINT allocation_event_position_range CHECK (position BETWEEN 0 AND 9007199254740991),
  ADD COLUMN event_id uuid;
ALTER TABLE allocation_event
  ALTER COLUMN position DROP DEFAULT,
  ALTER COLUMN event_id SET DEFAULT gen_random_uuid();
COMMENT ON COLUMN allocation_event.position IS 'The change''s position in the change feed (GET /api/events), given once it has committed (event_number_committed()); null for a moment after the commit; 0 for history written before the feed existed, which is not in it.';
COMMENT ON COLUMN allocation_event.event_id IS 'The change''s id in the feed: webhooks send it as webhook-id, the same on every retry. Null for history from before the feed.';
COMMENT ON COLUMN allocation_event.old_row IS 'The allocation before the change, as the API represents it (allocation_snapshot: starts_at/ends_at, UTC times, status as stored; resource_type and buffers since the change feed); null for insert.';
COMMENT ON COLUMN allocation_event.new_row IS 'The allocation after the change, same shape; null for delete.';
-- The feed in order (and what the numbering reads), and reads filtered by resource.
CREATE UNIQUE INDEX allocation_event_position_idx ON allocation_event (position) WHERE position > 0;
CREATE INDEX allocation_event_unnumbered_idx ON allocation_event (id) WHERE position IS NULL;
CREATE INDEX allocation_event_resource_position_idx ON allocation_event (((coalesce(new_row, old_row)->>'resource_id')::uuid), position)
  WHERE position > 0;

-- One statement per change, the resource's type read in it (outer join: the history is
-- written even if the resource were gone). A write that changed nothing but updated_at (a
-- PATCH with the same values) is neither history nor news.
CREATE OR REPLACE FUNCTION allocation_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO allocation_event (allocation_id, operation, old_row, new_row)
  SELECT CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
         CASE
           WHEN TG_OP = 'INSERT' THEN 'insert'
           WHEN TG_OP = 'DELETE' THEN 'delete'
           WHEN NEW.status IS DISTINCT FROM OLD.status AND NEW.status = 'cancelled' THEN 'cancel'
           WHEN NEW.status IS DISTINCT FROM OLD.status AND NEW.status = 'expired' THEN 'expire'
           WHEN NEW.status IS DISTINCT FROM OLD.status AND OLD.status = 'held' AND NEW.status = 'confirmed' THEN 'confirm'
           ELSE 'update'
         END,
         s.before, s.after
  FROM (SELECT) AS one
  LEFT JOIN resource r ON r.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.resource_id ELSE NEW.resource_id END
  CROSS JOIN LATERAL (
    SELECT CASE WHEN TG_OP <> 'INSERT' THEN allocation_snapshot(OLD, CASE WHEN TG_OP = 'UPDATE' AND OLD.resource_id <> NEW.resource_id
             THEN (SELECT o.type FROM resource o WHERE o.id = OLD.resource_id) ELSE r.type END) END AS before,
           CASE WHEN TG_OP <> 'DELETE' THEN allocation_snapshot(NEW, r.type) END AS after
  ) AS s
  WHERE TG_OP <> 'UPDATE' OR s.before - 'updated_at' <> s.after - 'updated_at';
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION allocation_record_event() IS
  'Records a change to an allocation in its history (allocation_event), which is also its event in the change feed, in the same transaction.';

-- The same record for resources.
CREATE TABLE resource_event (
  -- Drawn from the history's sequence: the numbering orders both tables by when their rows
  -- were written.
  seq            bigint PRIMARY KEY DEFAULT nextval(pg_get_serial_sequence('allocation_event', 'id')),
  position       bigint CONSTRAINT resource_event_position_range CHECK (position BETWEEN 1 AND 9007199254740991),
  id             uuid NOT NULL DEFAULT gen_random_uuid(),
  type           text NOT NULL CONSTRAINT resource_event_type_known CHECK (type IN ('resource.created', 'resource.updated', 'resource.deleted')),
  occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor_id       bigint DEFAULT nullif(current_setting('invsys.actor', true), '')::bigint,
  -- No foreign key: the record outlives the resource.
  resource_id    uuid NOT NULL,
  resource_type  text NOT NULL,
  data           json CONSTRAINT resource_event_data_unless_deleted CHECK ((data IS NULL) = (type = 'resource.deleted')),
  previous       json CONSTRAINT resource_event_previous_unless_created CHECK ((previous IS NULL) = (type = 'resource.created'))
);
COMMENT ON TABLE resource_event IS 'Every change to a resource, from the API or by hand, written by a trigger: the resource half of the change feed (see the view event).';
COMMENT ON COLUMN resource_event.seq IS 'Drawn when the row is written, from the same sequence as allocation_event.id (so not in commit order): the order one numbering run numbers changes in.';
COMMENT ON COLUMN resource_event.position IS 'The change''s position in the feed, given once it has committed; null for a moment after the commit.';
COMMENT ON COLUMN resource_event.id IS 'The change''s id in the feed (webhook-id).';
COMMENT ON COLUMN resource_event.type IS 'resource.created, resource.updated or resource.deleted.';
COMMENT ON COLUMN resource_event.occurred_at IS 'Clock time when the change was written.';
COMMENT ON COLUMN resource_event.actor_id IS 'The account that made the change through the API; null for changes made by hand.';
COMMENT ON COLUMN resource_event.resource_id IS 'The resource changed.';
COMMENT ON COLUMN resource_event.resource_type IS 'Its type (after the change, or before a delete).';
COMMENT ON COLUMN resource_event.data IS 'The resource after the change, as the API represents it (resource_json); null after a delete.';
COMMENT ON COLUMN resource_event.previous IS 'The resource before the change, the same way; null when it was created.';
CREATE UNIQUE INDEX resource_event_position_idx ON resource_event (position) WHERE position > 0;
CREATE INDEX resource_event_unnumbered_idx ON resource_event (seq) WHERE position IS NULL;
CREATE INDEX resource_event_resource_position_idx ON resource_event (resource_id, position) WHERE position > 0;

-- A write that changed nothing but updated_at is not news.
CREATE FUNCTION resource_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND to_jsonb(OLD) - 'updated_at' = to_jsonb(NEW) - 'updated_at' THEN
    RETURN NULL;
  END IF;
  INSERT INTO resource_event (type, resource_id, resource_type, data, previous)
  VALUES (
    CASE TG_OP WHEN 'INSERT' THEN 'resource.created' WHEN 'UPDATE' THEN 'resource.updated' ELSE 'resource.deleted' END,
    CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
    CASE WHEN TG_OP = 'DELETE' THEN OLD.type ELSE NEW.type END,
    CASE WHEN TG_OP <> 'DELETE' THEN resource_json(NEW) END,
    CASE WHEN TG_OP <> 'INSERT' THEN resource_json(OLD) END);
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION resource_record_event() IS
  'Records a change to a resource (resource_event), its event in the change feed, in the same transaction.';
CREATE TRIGGER resource_record_event AFTER INSERT OR UPDATE OR DELETE ON resource
  FOR EACH ROW EXECUTE FUNCTION resource_record_event();

-- A resource's allocations are deleted before its row goes, rather than by ON DELETE
-- CASCADE after it: their history (and allocation.deleted events) still find the
-- resource's type, and come before its resource.deleted event.
CREATE FUNCTION resource_delete_allocations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM allocation WHERE resource_id = OLD.id;
  RETURN OLD;
END
$$;
COMMENT ON FUNCTION resource_delete_allocations() IS
  'Deletes a resource''s allocations just before the resource, so that their history and events still see it.';
CREATE TRIGGER resource_delete_allocations BEFORE DELETE ON resource
  FOR EACH ROW EXECUTE FUNCTION resource_delete_allocations();

-- The change feed, as GET /api/events and webhooks send it: every numbered change to an
-- allocation or a resource. Read it in order: SELECT * FROM event WHERE position > 0 ORDER BY position.
CREATE VIEW event AS
  SELECT h.position, h.event_id AS id,
         CASE h.operation
           WHEN 'insert' THEN 'allocation.created' WHEN 'update' THEN 'allocation.updated'
           WHEN 'confirm' THEN 'allocation.confirmed' WHEN 'cancel' THEN 'allocation.cancelled'
           WHEN 'expire' THEN 'allocation.expired' ELSE 'allocation.deleted'
         END AS type,
         h.at AS occurred_at, h.actor_id,
         (coalesce(h.new_row, h.old_row)->>'resource_id')::uuid AS resource_id,
         coalesce(h.new_row, h.old_row)->>'resource_type' AS resource_type,
         h.allocation_id, allocation_json(h.new_row) AS data, allocation_json(h.old_row) AS previous
  FROM allocation_event h
  WHERE h.position > 0
  UNION ALL
  SELECT r.position, r.id, r.type, r.occurred_at, r.actor_id, r.resource_id, r.resource_type,
         NULL::uuid, r.data, r.previous
  FROM resource_event r
  WHERE r.position > 0;
COMMENT ON VIEW event IS 'The change feed (GET /api/events): every change to an allocation (from its history) or a resource, numbered in the order it became visible. data and previous are the thing after and before the change, as the API represents it.';

-- An event as the feed and webhooks send it: the one place its JSON is made, so that a
-- webhook's body is the feed's item.
CREATE FUNCTION event_json(e event) RETURNS json
LANGUAGE sql STABLE AS $$
  SELECT json_build_object(
    'position', e.position, 'id', e.id, 'type', e.type, 'occurred_at', utc_text(e.occurred_at),
    'actor_id', e.actor_id, 'resource_id', e.resource_id, 'resource_type', e.resource_type,
    'allocation_id', e.allocation_id, 'data', e.data, 'previous', e.previous)
$$;
COMMENT ON FUNCTION event_json(event) IS
  'An event as GET /api/events and webhooks send it. E.g. SELECT event_json(e) FROM event e WHERE position > 0 ORDER BY position LIMIT 10.';

-- The feed's own state: the last position given (so that positions never go back) and
-- the first one still served.
CREATE TABLE event_feed (
  only_row       boolean PRIMARY KEY DEFAULT true CONSTRAINT event_feed_one_row CHECK (only_row),
  last_position  bigint NOT NULL DEFAULT 0,
  kept_from      bigint NOT NULL DEFAULT 1
);
COMMENT ON TABLE event_feed IS 'The change feed''s state (one row): the last position given and the first still served.';
COMMENT ON COLUMN event_feed.only_row IS 'Always true: keeps the table to one row.';
COMMENT ON COLUMN event_feed.last_position IS 'The last position event_number_committed() gave; the next run continues after it.';
COMMENT ON COLUMN event_feed.kept_from IS 'The first position the feed still serves: events before it are past EVENT_RETENTION_DAYS (resource_event rows deleted; allocation history kept as history), and GET /api/events?after= below kept_from - 1 is 410 CURSOR_EXPIRED.';
INSERT INTO event_feed DEFAULT VALUES;

-- Numbers the committed changes that have no position yet, oldest written first, after the
-- last position given; at most `batch` of them. Returns how many it numbered. Locking the
-- event_feed row makes callers take turns, and each run reads (in statements after the
-- lock) what the previous one committed: positions only grow, and a position is never
-- given to a change that has not committed. NOTIFY invsys_events (the last position) wakes
-- long-polling readers and webhook workers. Only this notifies: a NOTIFY in every booking
-- would make their commits queue (PostgreSQL serialises notifying commits).
CREATE FUNCTION event_number_committed(batch integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  last bigint;
  numbered integer;
BEGIN
  SELECT last_position INTO last FROM event_feed FOR UPDATE;
  WITH waiting AS (
    SELECT w.kind, w.seq, last + row_number() OVER (ORDER BY w.seq) AS given
    FROM ((SELECT 'allocation' AS kind, id AS seq FROM allocation_event WHERE position IS NULL ORDER BY id LIMIT batch)
          UNION ALL
          (SELECT 'resource', seq FROM resource_event WHERE position IS NULL ORDER BY seq LIMIT batch)) AS w
    ORDER BY w.seq LIMIT batch
  ), allocations AS (
    UPDATE allocation_event h SET position = w.given FROM waiting w WHERE w.kind = 'allocation' AND h.id = w.seq RETURNING 1
  ), resources AS (
    UPDATE resource_event r SET position = w.given FROM waiting w WHERE w.kind = 'resource' AND r.seq = w.seq RETURNING 1
  )
  SELECT (SELECT count(*) FROM allocations) + (SELECT count(*) FROM resources) INTO numbered;
  IF numbered > 0 THEN
    UPDATE event_feed SET last_position = last + numbered;
    PERFORM pg_notify('invsys_events', (last + numbered)::text);
  END IF;
  RETURN numbered;
END
$$;
COMMENT ON FUNCTION event_number_committed(integer) IS
  'Gives committed changes without a position the next positions in the feed (at most batch of them), and returns how many. The API runs it; SELECT event_number_committed(1000) does it by hand.';

-- Holds that have run out, for the sweep that writes them as expired (allocation.expired).
CREATE INDEX allocation_held_expires_at_idx ON allocation (expires_at) WHERE status = 'held';

-- Webhooks: endpoints an admin registers, and the events owed to each. Delivery is the
-- API's (plugins/webhooks.ts): at least once, in order per resource, leased so that two
-- replicas never send the same event at the same time.
CREATE TABLE webhook_endpoint (
  id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  url                         text NOT NULL CONSTRAINT webhook_endpoint_url_http CHECK (url ~ '^https?://'),
  types                       text[] CONSTRAINT webhook_endpoint_types_known CHECK (cardinality(types) > 0 AND types <@ ARRAY[
                                'allocation.created', 'allocation.updated', 'allocation.confirmed', 'allocation.cancelled',
                                'allocation.expired', 'allocation.deleted', 'resource.created', 'resource.updated', 'resource.deleted']),
  resource_type               text REFERENCES resource_type (name) ON UPDATE CASCADE ON DELETE CASCADE,
  description                 text,
  enabled                     boolean NOT NULL DEFAULT true,
  disabled_reason             text,
  disabled_at                 timestamptz,
  secret                      text NOT NULL CONSTRAINT webhook_endpoint_secret_format CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{43}=$'),
  previous_secret             text CONSTRAINT webhook_endpoint_previous_secret_format CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]{43}=$'),
  previous_secret_expires_at  timestamptz,
  fanned_out_through          bigint NOT NULL DEFAULT 0,
  created_at                  timestamptz NOT NULL DEFAULT now(),
  updated_at                  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhook_endpoint_disabled_explained CHECK (enabled = (disabled_at IS NULL) AND enabled = (disabled_reason IS NULL)),
  CONSTRAINT webhook_endpoint_previous_secret_expires CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);
COMMENT ON TABLE webhook_endpoint IS 'Where events are POSTed (Standard Webhooks v1), managed by admins through /api/webhooks.';
COMMENT ON COLUMN webhook_endpoint.id IS 'Generated by the database.';
COMMENT ON COLUMN webhook_endpoint.url IS 'The http(s) URL events are POSTed to; its host must not resolve to a loopback, private, link-local, multicast or unspecified address (unless WEBHOOK_ALLOWED_CIDRS allows it), checked at every connection.';
COMMENT ON COLUMN webhook_endpoint.types IS 'The event types it receives; null: every type.';
COMMENT ON COLUMN webhook_endpoint.resource_type IS 'Only events of resources of this type; null: every type.';
COMMENT ON COLUMN webhook_endpoint.description IS 'Free text: whose it is, what it is for.';
COMMENT ON COLUMN webhook_endpoint.enabled IS 'Whether events are sent. False after a 410 Gone, after an event failed every attempt of the retry schedule, or when an admin says so; set true again, it resumes where it stopped.';
COMMENT ON COLUMN webhook_endpoint.disabled_reason IS 'Why it was disabled; null while enabled.';
COMMENT ON COLUMN webhook_endpoint.disabled_at IS 'When it was disabled; null while enabled.';
COMMENT ON COLUMN webhook_endpoint.secret IS 'The signing secret (whsec_ and base64 of 32 random bytes). Kept in the clear because signing needs it; never shown again after the reply that made it, never logged.';
COMMENT ON COLUMN webhook_endpoint.previous_secret IS 'The secret before the last rotation; deliveries carry a signature with it too until previous_secret_expires_at.';
COMMENT ON COLUMN webhook_endpoint.previous_secret_expires_at IS 'When previous_secret stops signing: 24 hours after the rotation.';
COMMENT ON COLUMN webhook_endpoint.fanned_out_through IS 'The feed position up to which events have been queued for it (webhook_delivery); starts at the head of the feed when the endpoint is made.';
COMMENT ON COLUMN webhook_endpoint.created_at IS 'When the endpoint was registered.';
COMMENT ON COLUMN webhook_endpoint.updated_at IS 'When the API last changed it (its url, filters, description, enabled state or secret).';

CREATE TABLE webhook_delivery (
  endpoint_id      uuid NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
  position         bigint NOT NULL,
  resource_id      uuid NOT NULL,
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  lease            uuid,
  lease_until      timestamptz,
  delivered_at     timestamptz,
  PRIMARY KEY (endpoint_id, position),
  CONSTRAINT webhook_delivery_lease_whole CHECK ((lease IS NULL) = (lease_until IS NULL))
);
COMMENT ON TABLE webhook_delivery IS 'An event owed to an endpoint, until the endpoint acknowledges it with a 2xx. Deleted, with its attempts, once the feed no longer serves the event (EVENT_RETENTION_DAYS).';
COMMENT ON COLUMN webhook_delivery.endpoint_id IS 'The endpoint it is for.';
COMMENT ON COLUMN webhook_delivery.position IS 'The event (its position in the feed, the view event): per resource, an event is sent only once every earlier one has been acknowledged.';
COMMENT ON COLUMN webhook_delivery.resource_id IS 'The event''s resource: the unit of ordering.';
COMMENT ON COLUMN webhook_delivery.attempts IS 'Attempts since it was queued or since its endpoint was last re-enabled; the retry schedule says how long to wait after each.';
COMMENT ON COLUMN webhook_delivery.next_attempt_at IS 'Not sent before this.';
COMMENT ON COLUMN webhook_delivery.lease IS 'The attempt in flight, if any: set by the replica sending it, so that no other sends it at the same time.';
COMMENT ON COLUMN webhook_delivery.lease_until IS 'When the lease lapses: a replica killed mid-delivery leaves it to lapse, and the event is sent again (same webhook-id).';
COMMENT ON COLUMN webhook_delivery.delivered_at IS 'When the endpoint acknowledged it (2xx); null while owed.';
-- What is due, and the head of each (endpoint, resource) line.
CREATE INDEX webhook_delivery_due_idx ON webhook_delivery (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX webhook_delivery_resource_idx ON webhook_delivery (endpoint_id, resource_id, position) WHERE delivered_at IS NULL;

CREATE TABLE webhook_attempt (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  endpoint_id      uuid NOT NULL,
  position         bigint NOT NULL,
  attempted_at     timestamptz NOT NULL,
  response_status  integer,
  error            text,
  duration_ms      integer NOT NULL CONSTRAINT webhook_attempt_duration_not_negative CHECK (duration_ms >= 0),
  next_attempt_at  timestamptz,
  CONSTRAINT webhook_attempt_delivery_fkey FOREIGN KEY (endpoint_id, position) REFERENCES webhook_delivery ON DELETE CASCADE,
  CONSTRAINT webhook_attempt_outcome_known CHECK (response_status IS NOT NULL OR error IS NOT NULL)
);
COMMENT ON TABLE webhook_attempt IS 'Every attempt to deliver an event to an endpoint (GET /api/webhooks/{id}/deliveries).';
COMMENT ON COLUMN webhook_attempt.id IS 'Generated by the database; later attempts have larger ids.';
COMMENT ON COLUMN webhook_attempt.endpoint_id IS 'The endpoint.';
COMMENT ON COLUMN webhook_attempt.position IS 'The event''s position in the feed.';
COMMENT ON COLUMN webhook_attempt.attempted_at IS 'When the request was sent.';
COMMENT ON COLUMN webhook_attempt.response_status IS 'The HTTP status the endpoint answered; null when there was no answer (see error).';
COMMENT ON COLUMN webhook_attempt.error IS 'What went wrong without an answer (refused address, connection error, timeout), or why an answer counts as a failure; null for a 2xx.';
COMMENT ON COLUMN webhook_attempt.duration_ms IS 'How long the attempt took, in milliseconds.';
COMMENT ON COLUMN webhook_attempt.next_attempt_at IS 'When the event is tried again; null when it was delivered or the endpoint was disabled.';
CREATE INDEX webhook_attempt_endpoint_id_idx ON webhook_attempt (endpoint_id, id);
CREATE INDEX webhook_attempt_delivery_idx ON webhook_attempt (endpoint_id, position);
