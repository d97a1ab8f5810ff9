-- invsys schema: the whole data model, and every rule that can live in the database.
--
-- DEVELOPMENT ONLY: this script drops and recreates everything it owns.
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f postgres_scripts/create_tables.sql
-- It is the readable whole of what the numbered migrations in migrations/ build, which
-- is how the API itself creates and upgrades a database; CI checks the two agree.
-- A change to the schema is a new migration AND the same change here.

BEGIN;

DROP VIEW IF EXISTS instrument, vehicle, resource_booking, effective_rule CASCADE;
DROP TABLE IF EXISTS schemaversion, schema_version, calendar_feed, idempotency_key, allocation_event, container, allocation, series, resource_rule, resource_type_rule, resource, resource_type, site, api_token, account CASCADE;
DROP FUNCTION IF EXISTS touch_updated_at() CASCADE;
DROP FUNCTION IF EXISTS allocation_range(timestamptz, timestamptz) CASCADE;
DROP FUNCTION IF EXISTS site_keep_id_sequence_ahead() CASCADE;
DROP FUNCTION IF EXISTS allocation_blocks(text, timestamptz) CASCADE;
DROP FUNCTION IF EXISTS allocation_current_status(text, timestamptz) CASCADE;
DROP FUNCTION IF EXISTS allocation_expire_overlapping_holds() CASCADE;
DROP FUNCTION IF EXISTS allocation_check_status_change() CASCADE;
DROP FUNCTION IF EXISTS utc_text(timestamptz) CASCADE;
DROP FUNCTION IF EXISTS allocation_record_event() CASCADE;
DROP FUNCTION IF EXISTS resource_free_time(uuid, tstzrange) CASCADE;
DROP FUNCTION IF EXISTS iso_duration(interval) CASCADE;
DROP FUNCTION IF EXISTS allocation_blocked_range(tstzrange, interval, interval) CASCADE;
DROP FUNCTION IF EXISTS resource_blocked_range(uuid, tstzrange) CASCADE;
DROP FUNCTION IF EXISTS allocation_apply_buffers() CASCADE;
DROP FUNCTION IF EXISTS booking_rule_violations(uuid, tstzrange, timestamptz) CASCADE;
DROP FUNCTION IF EXISTS member_booking_span(uuid, tstzrange, timestamptz) CASCADE;
DROP FUNCTION IF EXISTS member_booking_window(tstzrange, interval, interval, timestamptz) CASCADE;
DROP FUNCTION IF EXISTS allocation_starts(tstzrange) CASCADE;
DROP FUNCTION IF EXISTS allocation_ends(tstzrange) CASCADE;
DROP FUNCTION IF EXISTS allocation_overlaps(tstzrange, tstzrange) CASCADE;
DROP FUNCTION IF EXISTS notify_credentials_changed() CASCADE;

-- Lets one GiST index hold both the uuid equality and the range overlap of the
-- exclusion constraint on allocation.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Keeps updated_at honest for changes made by hand in psql too, not only through the API.
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

-- The half-open range [starts_at, ends_at) an allocation takes; null means unbounded.
-- An inverted pair gives the empty range instead of an error, so that the
-- allocation_during_not_empty check reports it by name, whether it came from an
-- insert or from a move.
CREATE FUNCTION allocation_range(starts_at timestamptz, ends_at timestamptz) RETURNS tstzrange
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN starts_at >= ends_at THEN 'empty'::tstzrange
              ELSE tstzrange(starts_at, ends_at, '[)') END
$$;
COMMENT ON FUNCTION allocation_range(timestamptz, timestamptz) IS
  'Half-open [starts_at, ends_at); null is unbounded; empty when starts_at >= ends_at. E.g. allocation_range(now(), now() + interval ''2 hours'').';

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

-- An interval as the API writes durations, whatever the session's IntervalStyle.
CREATE FUNCTION iso_duration(i interval) RETURNS text
LANGUAGE sql IMMUTABLE SET IntervalStyle = 'iso_8601' AS $$
  SELECT i::text
$$;
COMMENT ON FUNCTION iso_duration(interval) IS
  'An interval as an ISO 8601 duration (PT30M, P3D, P1DT2H), whatever the session''s IntervalStyle; null stays null.';

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

-- Who may use the API. Authorisation is by role: admins manage the inventory and may
-- change any allocation; members read everything and change only what they own.
-- Every generated id (accounts, sites, history events) stops at 2^53 - 1, the largest
-- integer a JSON number holds exactly, so clients read every id the API hands out as it is.
CREATE TABLE account (
  id          bigint GENERATED BY DEFAULT AS IDENTITY (MAXVALUE 9007199254740991) PRIMARY KEY
              CONSTRAINT account_id_range CHECK (id BETWEEN 1 AND 9007199254740991),
  name        text NOT NULL
              CONSTRAINT account_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$'),
  role        text NOT NULL DEFAULT 'member'
              CONSTRAINT account_role_known CHECK (role IN ('admin', 'member')),
  created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE account IS 'Someone (or something) that calls the API with a token. Never deleted by the API: revoke its tokens instead.';
COMMENT ON COLUMN account.id IS 'Generated by the database.';
COMMENT ON COLUMN account.name IS 'Unique, ignoring case; letters, digits and . _ @ - (at most 100).';
COMMENT ON COLUMN account.role IS 'admin (manages sites, resources, containers, maintenance; changes any allocation) or member (reads everything, books, changes only its own allocations).';
COMMENT ON COLUMN account.created_at IS 'When the row was inserted.';
-- Case-insensitive, so "Alice" and "alice" cannot be two people.
CREATE UNIQUE INDEX account_name_unique ON account (lower(name));

-- API tokens. Only a SHA-256 hash of each token is stored: a stolen dump of this table
-- does not let anyone in. A fast hash is right here (a slow KDF is for passwords): the
-- tokens are 256 random bits, so there is nothing to guess by trying hashes.
CREATE TABLE api_token (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  account_id    bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
  token_hash    bytea NOT NULL
                CONSTRAINT api_token_hash_is_sha256 CHECK (octet_length(token_hash) = 32),
  prefix        text NOT NULL
                CONSTRAINT api_token_prefix_format CHECK (prefix ~ '^invsys_[A-Za-z0-9_-]{4}$'),
  label         text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz,
  CONSTRAINT api_token_hash_unique UNIQUE (token_hash)
);
COMMENT ON TABLE api_token IS 'Bearer tokens (invsys_...). The token itself is shown once, when created, and never stored.';
COMMENT ON COLUMN api_token.id IS 'Generated by the database.';
COMMENT ON COLUMN api_token.account_id IS 'The account the token acts as.';
COMMENT ON COLUMN api_token.token_hash IS 'SHA-256 of the whole token string; how a presented token is looked up.';
COMMENT ON COLUMN api_token.prefix IS 'The first characters of the token (not secret), so a person can tell their tokens apart.';
COMMENT ON COLUMN api_token.label IS 'Free text given at creation, e.g. "laptop" or "CI".';
COMMENT ON COLUMN api_token.created_at IS 'When the token was created.';
COMMENT ON COLUMN api_token.last_used_at IS 'When it last authenticated a request, to the minute (it is written at most once a minute).';
COMMENT ON COLUMN api_token.revoked_at IS 'When it was revoked; a revoked token authenticates nothing. Revocation is final.';
CREATE INDEX api_token_account_id_idx ON api_token (account_id);

-- Tells API replicas which token or account changed (revoked, deleted, its role...), so
-- that they drop the token lookups they keep for it; a TRUNCATE drops them all. The
-- payload is 'token <id>', 'account <id>' or '*'.
CREATE FUNCTION notify_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('invsys_credentials', CASE
    WHEN TG_LEVEL = 'STATEMENT' THEN '*'
    WHEN TG_TABLE_NAME = 'api_token' THEN 'token ' || OLD.id
    ELSE 'account ' || OLD.id
  END);
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION notify_credentials_changed() IS
  'NOTIFY invsys_credentials with the token or account that changed: API replicas forget what they keep about it.';
-- Not when only last_used_at moved: every lookup the database answers stamps it (at most
-- once a minute), and a notice then would only make the replica drop the lookup it had
-- just kept, and look the token up again.
CREATE TRIGGER api_token_notify_credentials_changed AFTER UPDATE ON api_token
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
  EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER api_token_notify_credentials_deleted AFTER DELETE ON api_token
  FOR EACH ROW EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER api_token_notify_credentials_truncated AFTER TRUNCATE ON api_token
  FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER account_notify_credentials_changed AFTER UPDATE OR DELETE ON account
  FOR EACH ROW EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER account_notify_credentials_truncated AFTER TRUNCATE ON account
  FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();

CREATE TABLE site (
  id               bigint GENERATED BY DEFAULT AS IDENTITY (MAXVALUE 9007199254740991) PRIMARY KEY
                   CONSTRAINT site_id_range CHECK (id BETWEEN 1 AND 9007199254740991),
  name             text NOT NULL CONSTRAINT site_name_not_blank CHECK (btrim(name) <> ''),
  contact          text,
  address          text,
  state_or_region  text,
  country          text,
  postcode_or_zip  text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE site IS 'A place where resources are kept. Addresses are free text because they are international.';
COMMENT ON COLUMN site.id IS 'Generated on POST; PUT may choose one, and the sequence is moved past it so later POSTs never collide.';
COMMENT ON COLUMN site.name IS 'Display name; not unique (two companies may both have a "Main depot").';
COMMENT ON COLUMN site.contact IS 'Person or team responsible for the site.';
COMMENT ON COLUMN site.address IS 'Street address lines.';
COMMENT ON COLUMN site.state_or_region IS 'State, province, county or region, as written locally.';
COMMENT ON COLUMN site.country IS 'Country name or code, as the operator writes it.';
COMMENT ON COLUMN site.postcode_or_zip IS 'Postal code; text, since many are not numbers.';
COMMENT ON COLUMN site.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN site.updated_at IS 'When the row last changed (maintained by a trigger).';
CREATE TRIGGER site_touch_updated_at BEFORE UPDATE ON site
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- A site inserted with a chosen id (PUT /api/sites/:id, or psql) moves the id
-- sequence past it, so later generated ids do not run into it. The advisory lock
-- keeps two such inserts from moving the sequence backwards past each other.
CREATE FUNCTION site_keep_id_sequence_ahead() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  seq regclass := pg_get_serial_sequence('site', 'id')::regclass;
BEGIN
  IF NEW.id > (SELECT last_value FROM site_id_seq) THEN
    PERFORM pg_advisory_xact_lock(seq::oid::bigint);
    IF NEW.id > (SELECT last_value FROM site_id_seq) THEN
      PERFORM setval(seq, NEW.id);
    END IF;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER site_keep_id_sequence_ahead AFTER INSERT ON site
  FOR EACH ROW EXECUTE FUNCTION site_keep_id_sequence_ahead();

CREATE TABLE resource_type (
  name      text PRIMARY KEY CONSTRAINT resource_type_name_format CHECK (name ~ '^[a-z][a-z0-9_]*$'),
  plural    text NOT NULL UNIQUE CONSTRAINT resource_type_plural_format CHECK (plural ~ '^[a-z][a-z0-9_-]*$'),
  category  text NOT NULL CONSTRAINT resource_type_category_known CHECK (category IN ('vehicle', 'instrument'))
);
COMMENT ON TABLE resource_type IS 'Kinds of bookable resource. Changed only through SQL; the API serves one route family per row (/api/<plural>), read at boot.';
COMMENT ON COLUMN resource_type.name IS 'Singular name, e.g. car; referenced by resource.type.';
COMMENT ON COLUMN resource_type.plural IS 'Plural name, used as the URL path segment, e.g. /api/cars.';
COMMENT ON COLUMN resource_type.category IS 'vehicle or instrument; the instrument view lists the latter.';

INSERT INTO resource_type (name, plural, category) VALUES
  ('car',      'cars',      'vehicle'),
  ('lorry',    'lorries',   'vehicle'),
  ('truck',    'trucks',    'vehicle'),
  ('computer', 'computers', 'instrument'),
  ('freezer',  'freezers',  'instrument');

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

CREATE TABLE resource (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  type        text NOT NULL REFERENCES resource_type (name) ON UPDATE CASCADE,
  name        text NOT NULL CONSTRAINT resource_name_not_blank CHECK (btrim(name) <> ''),
  site_id     bigint REFERENCES site (id) ON DELETE RESTRICT,
  mac         macaddr,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT resource_type_name_unique UNIQUE (type, name),
  CONSTRAINT resource_mac_unique UNIQUE (mac),
  CONSTRAINT resource_mac_only_on_computers CHECK (mac IS NULL OR type = 'computer'),
  -- Target of container's composite foreign key, which is how "containers live only
  -- in freezers" is enforced without a trigger.
  CONSTRAINT resource_id_type_unique UNIQUE (id, type)
);
COMMENT ON TABLE resource IS 'A bookable thing: a vehicle or an instrument.';
COMMENT ON COLUMN resource.id IS 'Generated on POST; PUT may choose it.';
COMMENT ON COLUMN resource.type IS 'The resource_type it is; decides its route family and whether it may have a MAC.';
COMMENT ON COLUMN resource.name IS 'Unique among resources of the same type.';
COMMENT ON COLUMN resource.site_id IS 'Where it is kept; null when unassigned. A site cannot be deleted while resources are there.';
COMMENT ON COLUMN resource.mac IS 'Network MAC address; unique, and allowed only on computers.';
COMMENT ON COLUMN resource.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN resource.updated_at IS 'When the row last changed (maintained by a trigger).';
CREATE INDEX resource_site_id_idx ON resource (site_id);
CREATE TRIGGER resource_touch_updated_at BEFORE UPDATE ON resource
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

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

-- What a new allocation of the resource over during would block, with the buffers in force now.
CREATE FUNCTION resource_blocked_range(resource_id uuid, during tstzrange) RETURNS tstzrange
LANGUAGE sql STABLE AS $$
  SELECT allocation_blocked_range(during, e.buffer_before, e.buffer_after)
  FROM effective_rule e
  WHERE e.resource_id = resource_blocked_range.resource_id
$$;
COMMENT ON FUNCTION resource_blocked_range(uuid, tstzrange) IS
  'during widened by the resource''s buffers in force now: the range a new allocation over during would block.';

CREATE TABLE container (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  freezer_id   uuid NOT NULL,
  -- Always 'freezer': pairs with freezer_id in the foreign key below, so the database
  -- refuses a container in anything but a freezer, and refuses turning a freezer that
  -- holds containers into another type.
  freezer_type text NOT NULL DEFAULT 'freezer' CONSTRAINT container_in_freezer CHECK (freezer_type = 'freezer'),
  description  text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT container_freezer_fkey FOREIGN KEY (freezer_id, freezer_type)
    REFERENCES resource (id, type) ON DELETE RESTRICT
);
COMMENT ON TABLE container IS 'A box or rack kept inside a freezer.';
COMMENT ON COLUMN container.id IS 'Generated by the database.';
COMMENT ON COLUMN container.freezer_id IS 'The freezer holding it.';
COMMENT ON COLUMN container.freezer_type IS 'Constant ''freezer''; exists only for the foreign key that enforces "freezers only".';
COMMENT ON COLUMN container.description IS 'What is in it.';
COMMENT ON COLUMN container.created_at IS 'When the row was inserted.';
CREATE INDEX container_freezer_id_idx ON container (freezer_id);

-- A recurring booking made in one request (POST /api/resources/:id/series); each
-- occurrence is an ordinary allocation naming it, judged by the same exclusion constraint.
CREATE TABLE series (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id  uuid NOT NULL REFERENCES resource (id) ON DELETE CASCADE,
  rrule        text NOT NULL,
  time_zone    text NOT NULL,
  mode         text NOT NULL
               CONSTRAINT series_mode_known CHECK (mode IN ('all_or_nothing', 'skip_conflicts')),
  starts_at    timestamptz NOT NULL,
  ends_at      timestamptz NOT NULL,
  kind         text NOT NULL DEFAULT 'booking'
               CONSTRAINT series_kind_known CHECK (kind IN ('booking', 'maintenance')),
  description  text,
  data         jsonb NOT NULL DEFAULT '{}'
               CONSTRAINT series_data_is_object CHECK (jsonb_typeof(data) = 'object'),
  skipped      jsonb NOT NULL DEFAULT '[]'
               CONSTRAINT series_skipped_is_array CHECK (jsonb_typeof(skipped) = 'array'),
  owner_id     bigint REFERENCES account (id),
  created_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT series_first_occurrence_not_empty CHECK (starts_at < ends_at)
);
COMMENT ON TABLE series IS 'A recurring booking made in one request: its rule, and what it skipped. Its occurrences are the allocations whose series_id names it.';
COMMENT ON COLUMN series.id IS 'Generated by the database.';
COMMENT ON COLUMN series.resource_id IS 'The resource every occurrence takes. Deleting the resource deletes its series.';
COMMENT ON COLUMN series.rrule IS 'The RFC 5545 recurrence rule as the client sent it (FREQ, INTERVAL, BYDAY, BYMONTHDAY, COUNT or UNTIL).';
COMMENT ON COLUMN series.time_zone IS 'IANA time zone whose wall-clock time every occurrence keeps, e.g. Europe/Lisbon.';
COMMENT ON COLUMN series.mode IS 'all_or_nothing (every occurrence was booked, or the request failed) or skip_conflicts (the free ones were booked).';
COMMENT ON COLUMN series.starts_at IS 'Start of the first occurrence, as asked.';
COMMENT ON COLUMN series.ends_at IS 'End of the first occurrence, as asked; every occurrence lasts as long.';
COMMENT ON COLUMN series.kind IS 'booking or maintenance, as every occurrence was created.';
COMMENT ON COLUMN series.description IS 'Free text, copied to every occurrence.';
COMMENT ON COLUMN series.data IS 'Client-defined JSON object, copied to every occurrence; never interpreted by invsys.';
COMMENT ON COLUMN series.skipped IS 'The occurrences skip_conflicts left out when the series was created, each with the allocations then in its way (JSON, as the API reported them).';
COMMENT ON COLUMN series.owner_id IS 'The account that created it through the API; members may cancel only their own series.';
COMMENT ON COLUMN series.created_at IS 'When the series was booked.';
CREATE INDEX series_resource_id_idx ON series (resource_id);
CREATE INDEX series_owner_id_idx ON series (owner_id);

CREATE TABLE allocation (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  resource_id   uuid NOT NULL REFERENCES resource (id) ON DELETE CASCADE,
  during        tstzrange NOT NULL,
  kind          text NOT NULL DEFAULT 'booking'
                CONSTRAINT allocation_kind_known CHECK (kind IN ('booking', 'maintenance')),
  status        text NOT NULL DEFAULT 'confirmed'
                CONSTRAINT allocation_status_known CHECK (status IN ('held', 'confirmed', 'cancelled', 'expired')),
  description   text,
  data          jsonb NOT NULL DEFAULT '{}'
                CONSTRAINT allocation_data_is_object CHECK (jsonb_typeof(data) = 'object'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  cancelled_at  timestamptz,
  expires_at    timestamptz,
  -- Null for rows made outside the API (psql, mock data). Accounts are never deleted
  -- through the API; deleting one by hand is refused while allocations name it.
  owner_id      bigint REFERENCES account (id),
  updated_by    bigint REFERENCES account (id),
  -- The buffers in force when the row was inserted or last moved, filled by the trigger
  -- allocation_apply_buffers from effective_rule; later rule changes leave them be.
  buffer_before interval NOT NULL DEFAULT '0',
  buffer_after  interval NOT NULL DEFAULT '0',
  -- Deleting a series by hand deletes its occurrences (the history keeps them); the API
  -- never deletes a series, it cancels occurrences.
  series_id     uuid REFERENCES series (id) ON DELETE CASCADE,
  CONSTRAINT allocation_during_not_empty CHECK (NOT isempty(during)),
  -- One spelling per range: bounded ends are [start, end), so back-to-back
  -- allocations touch without overlapping.
  -- Both shape checks pass an empty range, so that allocation_during_not_empty is the
  -- one that names that mistake.
  CONSTRAINT allocation_during_half_open CHECK (isempty(during) OR (
    (lower_inf(during) OR lower_inc(during)) AND (upper_inf(during) OR NOT upper_inc(during)))),
  -- An open end is an unbounded range end, never the infinity timestamp, so that
  -- "until further notice" has one representation for psql users and the API alike.
  CONSTRAINT allocation_during_finite CHECK (isempty(during) OR (
    (lower_inf(during) OR isfinite(lower(during))) AND (upper_inf(during) OR isfinite(upper(during))))),
  CONSTRAINT allocation_cancelled_at_matches_status CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
  CONSTRAINT allocation_expires_at_matches_status CHECK ((status IN ('held', 'expired')) = (expires_at IS NOT NULL)),
  -- A hold is short by design: it reserves a slot while someone decides, not instead of booking.
  CONSTRAINT allocation_hold_length CHECK (expires_at IS NULL OR
    (expires_at > created_at AND expires_at <= created_at + interval '1 hour')),
  CONSTRAINT allocation_buffers_not_negative CHECK (buffer_before >= '0' AND buffer_after >= '0'),
  -- The promise of the product: no two live allocations of one resource overlap, once
  -- each is widened by its own buffers (so the gap between neighbours is at least the
  -- earlier one's buffer_after plus the later one's buffer_before).
  -- Cancelled and expired rows stay as history and stop blocking their slot. A hold
  -- whose expires_at has passed is still in this index until it is written as expired
  -- (the predicate cannot mention now()); allocation_expire_overlapping_holds does that
  -- before anything is checked against it, and reads ask allocation_blocks().
  CONSTRAINT allocation_no_overlap EXCLUDE USING gist (resource_id WITH =, allocation_blocked_range(during, buffer_before, buffer_after) WITH &&)
    WHERE (status IN ('held', 'confirmed'))
);
COMMENT ON TABLE allocation IS 'A resource taken for a span of time: a booking or a maintenance block. Never two live ones overlap.';
COMMENT ON COLUMN allocation.id IS 'Generated by the database.';
COMMENT ON COLUMN allocation.resource_id IS 'The resource taken. Deleting the resource deletes its allocations.';
COMMENT ON COLUMN allocation.during IS 'Half-open [start, end) time range; an unbounded end means from the beginning of time / until further notice.';
COMMENT ON COLUMN allocation.kind IS 'booking (someone uses it) or maintenance (nobody can).';
COMMENT ON COLUMN allocation.status IS 'confirmed blocks the slot; held blocks it until expires_at, then counts as expired; cancelled and expired are kept as history and block nothing.';
COMMENT ON COLUMN allocation.description IS 'Free text: who, why.';
COMMENT ON COLUMN allocation.data IS 'Client-defined JSON object (e.g. a job number); never interpreted by invsys.';
COMMENT ON COLUMN allocation.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN allocation.updated_at IS 'When the row last changed (maintained by a trigger).';
COMMENT ON COLUMN allocation.cancelled_at IS 'When it was cancelled; set exactly when status is cancelled.';
COMMENT ON COLUMN allocation.expires_at IS 'When a hold stops blocking unless confirmed; set exactly when status is held or expired, at most an hour after created_at.';
COMMENT ON COLUMN allocation.owner_id IS 'The account that created it through the API; members may change only their own. Null when made outside the API.';
COMMENT ON COLUMN allocation.updated_by IS 'The account that created it or last changed it through the API (the same statement sets it).';
COMMENT ON COLUMN allocation.buffer_before IS 'Time kept free before it: the resource''s buffer_before rule when it was inserted or last moved (set by a trigger). Changing a rule does not rewrite it.';
COMMENT ON COLUMN allocation.buffer_after IS 'Time kept free after it: the resource''s buffer_after rule when it was inserted or last moved (set by a trigger). Changing a rule does not rewrite it.';
COMMENT ON COLUMN allocation.series_id IS 'The recurring series this allocation is an occurrence of; null for a single booking.';
CREATE INDEX allocation_owner_id_idx ON allocation (owner_id);
CREATE INDEX allocation_series_id_idx ON allocation (series_id) WHERE series_id IS NOT NULL;
CREATE INDEX allocation_during_idx ON allocation USING gist (during);
-- One resource's allocations by time, whatever their status (reads ask
-- allocation_overlaps). Ends first: a window asks for ends after its start and starts
-- before its end, and the first is the bound that cuts a resource's past away.
CREATE INDEX allocation_resource_span_idx ON allocation (resource_id, allocation_ends(during), allocation_starts(during));
-- Every allocation by start, then id: the order lists are in, so a page of the list across
-- resources is read from here and no further than the page.
CREATE INDEX allocation_starts_idx ON allocation (allocation_starts(during), id);
CREATE TRIGGER allocation_touch_updated_at BEFORE UPDATE ON allocation
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Whether an allocation blocks its slot now. A hold past its expires_at does not, even
-- while its row still says held: no background job is needed for correctness, because
-- every read asks this instead of looking at status alone.
CREATE FUNCTION allocation_blocks(status text, expires_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT status = 'confirmed' OR (status = 'held' AND expires_at > now())
$$;
COMMENT ON FUNCTION allocation_blocks(text, timestamptz) IS
  'True for confirmed allocations and holds that have not run out. E.g. SELECT * FROM allocation WHERE allocation_blocks(status, expires_at).';

-- The status as of now: a run-out hold reads as expired before anyone has written it so.
CREATE FUNCTION allocation_current_status(status text, expires_at timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN status = 'held' AND expires_at <= now() THEN 'expired' ELSE status END
$$;
COMMENT ON FUNCTION allocation_current_status(text, timestamptz) IS
  'status, except that a held row past its expires_at reads as expired.';

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

-- Before a row starts (or keeps) blocking a slot, run-out holds of the same resource whose
-- buffered ranges meet its own are written as expired, so they leave the exclusion constraint's index before
-- the row is checked against it. This runs inside the inserting or moving statement, so
-- INSERT ... ON CONFLICT DO NOTHING still judges only live rows, psql writes included.
-- Locks are taken in id order so two writers expiring the same holds cannot deadlock.
CREATE FUNCTION allocation_expire_overlapping_holds() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER allocation_expire_overlapping_holds BEFORE INSERT OR UPDATE OF resource_id, during, status, buffer_before, buffer_after ON allocation
  FOR EACH ROW WHEN (NEW.status IN ('held', 'confirmed')) EXECUTE FUNCTION allocation_expire_overlapping_holds();

-- A hold is born held and leaves that state once: confirmed while it lasts, cancelled,
-- or expired once it has run out. Expired is history, like cancelled.
CREATE FUNCTION allocation_check_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = OLD.status THEN
    RETURN NEW;
  END IF;
  IF OLD.status = 'held' AND NEW.status = 'confirmed' AND OLD.expires_at <= now() THEN
    RAISE EXCEPTION 'the hold expired at %; it can no longer be confirmed', OLD.expires_at
      USING ERRCODE = 'check_violation', CONSTRAINT = 'allocation_hold_expired';
  END IF;
  IF NEW.status = 'held' OR OLD.status = 'expired'
     OR (NEW.status = 'expired' AND (OLD.status <> 'held' OR OLD.expires_at > now())) THEN
    RAISE EXCEPTION 'an allocation cannot change from % to %', OLD.status, NEW.status
      USING ERRCODE = 'check_violation', CONSTRAINT = 'allocation_status_transition';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER allocation_check_status_change BEFORE UPDATE OF status ON allocation
  FOR EACH ROW EXECUTE FUNCTION allocation_check_status_change();

-- When a resource is free within span: where a new allocation could go now. That is span
-- minus the union of what blocks it, as a multirange, so back-to-back and overlapping
-- allocations merge and open ends need no special case; each blocking allocation is
-- widened by its own buffers and by the new one's (its buffer_after on the near side of
-- the neighbour's start, its buffer_before past the neighbour's end). Used by the
-- free-time and slot routes, and handy in psql:
--   SELECT unnest(resource_free_time(id, tstzrange(now(), now() + interval '7 days'))) FROM resource;
CREATE FUNCTION resource_free_time(resource_id uuid, span tstzrange) RETURNS tstzmultirange
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
-- judged_at + max_advance). The window alone, for queries that have the rules at hand
-- (inlined there); the span of one resource, for psql.
CREATE FUNCTION member_booking_window(span tstzrange, min_notice interval, max_advance interval, judged_at timestamptz) RETURNS tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN judged_at + min_notice >= judged_at + max_advance THEN 'empty'::tstzrange
              ELSE span * tstzrange(judged_at + min_notice, judged_at + max_advance, '[)') END
$$;
COMMENT ON FUNCTION member_booking_window(tstzrange, interval, interval, timestamptz) IS
  'The part of span in which a member may book as of judged_at under the given min_notice and max_advance (null: no rule).';

CREATE FUNCTION member_booking_span(resource_id uuid, span tstzrange, judged_at timestamptz) RETURNS tstzrange
LANGUAGE sql STABLE AS $$
  SELECT member_booking_window(span, e.min_notice, e.max_advance, judged_at)
  FROM effective_rule e
  WHERE e.resource_id = member_booking_span.resource_id
$$;
COMMENT ON FUNCTION member_booking_span(uuid, tstzrange, timestamptz) IS
  'The part of span in which a member may book the resource as of judged_at: from judged_at + min_notice to judged_at + max_advance.';

-- RFC 3339 in UTC with Z, as the API writes times, whatever the session's TimeZone (the
-- era after it for years BC, which only psql can store). Without a SET clause, so that
-- the planner inlines it: the history trigger calls it eight times per row.
CREATE FUNCTION utc_text(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN NOT isfinite(t) THEN to_json(t AT TIME ZONE 'UTC') #>> '{}'
    WHEN t < '0001-01-01T00:00:00Z' THEN replace(to_json(t AT TIME ZONE 'UTC') #>> '{}', ' BC', 'Z BC')
    ELSE (to_json(t AT TIME ZONE 'UTC') #>> '{}') || 'Z'
  END
$$;

CREATE TABLE allocation_event (
  id             bigint GENERATED ALWAYS AS IDENTITY (MAXVALUE 9007199254740991) PRIMARY KEY,
  -- No foreign key: the history of an allocation outlives it (deleting a resource
  -- deletes its allocations, and that is recorded too).
  allocation_id  uuid NOT NULL,
  operation      text NOT NULL CONSTRAINT allocation_event_operation_known
                 CHECK (operation IN ('insert', 'update', 'confirm', 'cancel', 'expire', 'delete')),
  at             timestamptz NOT NULL DEFAULT clock_timestamp(),
  db_user        text NOT NULL DEFAULT current_user,
  application    text NOT NULL DEFAULT current_setting('application_name'),
  -- The API names the account acting in each write transaction (set_config('invsys.actor',
  -- id, true)); a change made in psql without that setting has no actor. No foreign key,
  -- for the same reason as allocation_id.
  actor_id       bigint DEFAULT nullif(current_setting('invsys.actor', true), '')::bigint,
  old_row        jsonb CONSTRAINT allocation_event_old_row_unless_insert CHECK ((old_row IS NULL) = (operation = 'insert')),
  new_row        jsonb CONSTRAINT allocation_event_new_row_unless_delete CHECK ((new_row IS NULL) = (operation = 'delete'))
);
COMMENT ON TABLE allocation_event IS 'Every change to an allocation, from the API or by hand, written by a trigger. Read it oldest first: ORDER BY id.';
COMMENT ON COLUMN allocation_event.id IS 'Increases with every recorded change: the order to read history in.';
COMMENT ON COLUMN allocation_event.allocation_id IS 'The allocation changed; it may since have been deleted along with its resource.';
COMMENT ON COLUMN allocation_event.operation IS 'insert, update (times, kind, description, data), confirm, cancel, expire (a run-out hold written as expired) or delete.';
COMMENT ON COLUMN allocation_event.at IS 'Clock time when the change was written.';
COMMENT ON COLUMN allocation_event.db_user IS 'The PostgreSQL role that made the change.';
COMMENT ON COLUMN allocation_event.application IS 'The client''s application_name: invsys-api for the API, psql for psql, and so on.';
COMMENT ON COLUMN allocation_event.actor_id IS 'The account that made the change through the API; null for changes made by hand.';
COMMENT ON COLUMN allocation_event.old_row IS 'The allocation before the change, shaped like the API representation (starts_at/ends_at, UTC times), status as stored; null for insert.';
COMMENT ON COLUMN allocation_event.new_row IS 'The allocation after the change, same shape; null for delete.';
CREATE INDEX allocation_event_allocation_id_idx ON allocation_event (allocation_id, id);

-- The stored row, shaped like the API's allocation (during split into starts_at and
-- ends_at, times in UTC with Z), so history reads the same whoever wrote it.
CREATE FUNCTION allocation_snapshot(a allocation) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', a.id, 'resource_id', a.resource_id,
    'starts_at', utc_text(lower(a.during)), 'ends_at', utc_text(upper(a.during)),
    'kind', a.kind, 'status', a.status, 'description', a.description, 'data', a.data,
    'created_at', utc_text(a.created_at), 'updated_at', utc_text(a.updated_at),
    'cancelled_at', utc_text(a.cancelled_at), 'expires_at', utc_text(a.expires_at),
    'owner_id', a.owner_id, 'updated_by', a.updated_by,
    'series_id', a.series_id)
$$;

CREATE FUNCTION allocation_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN allocation_snapshot(OLD) END;
  new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN allocation_snapshot(NEW) END;
BEGIN
  -- A write that changed nothing but updated_at (a PATCH with the same values) is not history.
  IF TG_OP = 'UPDATE' AND old_row - 'updated_at' = new_row - 'updated_at' THEN
    RETURN NULL;
  END IF;
  INSERT INTO allocation_event (allocation_id, operation, old_row, new_row)
  VALUES (
    CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
    CASE
      WHEN TG_OP = 'INSERT' THEN 'insert'
      WHEN TG_OP = 'DELETE' THEN 'delete'
      WHEN NEW.status IS DISTINCT FROM OLD.status AND NEW.status = 'cancelled' THEN 'cancel'
      WHEN NEW.status IS DISTINCT FROM OLD.status AND NEW.status = 'expired' THEN 'expire'
      WHEN NEW.status IS DISTINCT FROM OLD.status AND OLD.status = 'held' AND NEW.status = 'confirmed' THEN 'confirm'
      ELSE 'update'
    END,
    old_row, new_row);
  RETURN NULL;
END
$$;
CREATE TRIGGER allocation_record_event AFTER INSERT OR UPDATE OR DELETE ON allocation
  FOR EACH ROW EXECUTE FUNCTION allocation_record_event();

CREATE TABLE idempotency_key (
  -- Keys are the caller's own: two accounts may pick the same key without meeting,
  -- and nobody can replay another account's response by guessing its key.
  account_id    bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
  key           text NOT NULL CONSTRAINT idempotency_key_format CHECK (key ~ '^[!-~]{1,255}$'),
  method        text NOT NULL,
  path          text NOT NULL,
  request_hash  text NOT NULL,
  -- Which request holds the key, so that only it stores its response or lets the key go.
  claim         uuid NOT NULL,
  status_code   integer CONSTRAINT idempotency_key_status_code_valid CHECK (status_code BETWEEN 100 AND 599),
  location      text,
  body          text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL DEFAULT now() + interval '24 hours',
  PRIMARY KEY (account_id, key, method, path),
  CONSTRAINT idempotency_key_response_whole CHECK ((status_code IS NULL) = (body IS NULL))
);
COMMENT ON TABLE idempotency_key IS 'Idempotency-Key headers of creating POSTs and the first response to each, replayed to retries until expires_at.';
COMMENT ON COLUMN idempotency_key.account_id IS 'The account that sent the key: keys are scoped to it.';
COMMENT ON COLUMN idempotency_key.key IS 'The client''s Idempotency-Key: 1 to 255 visible ASCII characters.';
COMMENT ON COLUMN idempotency_key.method IS 'The HTTP method of the request that used the key (POST).';
COMMENT ON COLUMN idempotency_key.path IS 'The request path without its query string; a key is scoped to one method and path.';
COMMENT ON COLUMN idempotency_key.request_hash IS 'SHA-256 of the body with its keys sorted: the same key with another body is refused.';
COMMENT ON COLUMN idempotency_key.status_code IS 'The first response''s status; null while that request is still running.';
COMMENT ON COLUMN idempotency_key.location IS 'The first response''s Location header, if any.';
COMMENT ON COLUMN idempotency_key.body IS 'The first response''s body, exactly as sent.';
COMMENT ON COLUMN idempotency_key.claim IS 'Which request holds the key, so only it stores its response or releases the key.';
COMMENT ON COLUMN idempotency_key.created_at IS 'When the key was first used.';
COMMENT ON COLUMN idempotency_key.expires_at IS 'After this the key is forgotten and may be used again; expired rows are purged as new keys arrive.';
CREATE INDEX idempotency_key_expires_at_idx ON idempotency_key (expires_at);

-- Calendar subscriptions. A calendar application fetches a feed from a URL and can send
-- no Authorization header, so each feed has its own secret address, /feeds/<secret>.ics,
-- separate from API tokens and revocable on its own.
-- Like api_token, only a SHA-256 hash of each secret is stored: the secret is shown once,
-- in the reply that creates the feed. A fast hash is right for 256 random bits.
CREATE TABLE calendar_feed (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  account_id   bigint NOT NULL REFERENCES account (id) ON DELETE CASCADE,
  label        text NOT NULL CONSTRAINT calendar_feed_label_not_blank CHECK (btrim(label) <> ''),
  secret_hash  bytea NOT NULL
               CONSTRAINT calendar_feed_secret_hash_is_sha256 CHECK (octet_length(secret_hash) = 32),
  -- The scope: exactly one of the four is set (calendar_feed_one_scope). A feed of a
  -- thing that is deleted goes with it: its address answers 404 from then on.
  resource_id  uuid REFERENCES resource (id) ON DELETE CASCADE,
  site_id      bigint REFERENCES site (id) ON DELETE CASCADE,
  type         text REFERENCES resource_type (name) ON UPDATE CASCADE ON DELETE CASCADE,
  mine         boolean CONSTRAINT calendar_feed_mine_is_true CHECK (mine),
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz,
  CONSTRAINT calendar_feed_secret_hash_unique UNIQUE (secret_hash),
  CONSTRAINT calendar_feed_one_scope CHECK (num_nonnulls(resource_id, site_id, type, mine) = 1)
);
COMMENT ON TABLE calendar_feed IS 'Calendar subscriptions: each is served publicly at /feeds/<secret>.ics; the secret is shown once and never stored.';
COMMENT ON COLUMN calendar_feed.id IS 'Generated by the database; names the feed in the API (never the secret).';
COMMENT ON COLUMN calendar_feed.account_id IS 'The account that created it and owns it: it or an admin may revoke it; a mine feed shows this account''s allocations.';
COMMENT ON COLUMN calendar_feed.label IS 'The name given at creation; calendar applications show it as the calendar''s name.';
COMMENT ON COLUMN calendar_feed.secret_hash IS 'SHA-256 of the secret in the feed''s address; how a fetched address is looked up.';
COMMENT ON COLUMN calendar_feed.resource_id IS 'Scope: the allocations of this one resource; null for another scope.';
COMMENT ON COLUMN calendar_feed.site_id IS 'Scope: the allocations of the resources now at this site; null for another scope.';
COMMENT ON COLUMN calendar_feed.type IS 'Scope: the allocations of every resource of this type; null for another scope.';
COMMENT ON COLUMN calendar_feed.mine IS 'Scope: true for the allocations account_id owns, wherever they are; null for another scope.';
COMMENT ON COLUMN calendar_feed.created_at IS 'When the feed was created.';
COMMENT ON COLUMN calendar_feed.revoked_at IS 'When it was revoked; a revoked feed''s address answers 404. Revocation is final.';
CREATE INDEX calendar_feed_account_id_idx ON calendar_feed (account_id);
CREATE INDEX calendar_feed_resource_id_idx ON calendar_feed (resource_id);
CREATE INDEX calendar_feed_site_id_idx ON calendar_feed (site_id);

-- Views for ad-hoc psql; the API reads instrument for GET /api/instruments.
CREATE VIEW instrument AS
  SELECT r.id, r.type, r.name, r.site_id, s.name AS site_name, r.mac
  FROM resource r
  JOIN resource_type rt ON rt.name = r.type
  LEFT JOIN site s ON s.id = r.site_id
  WHERE rt.category = 'instrument';
COMMENT ON VIEW instrument IS 'Instrument-category resources (computers, freezers, ...) with the name of their site.';

CREATE VIEW vehicle AS
  SELECT r.id, r.type, r.name, r.site_id, s.name AS site_name
  FROM resource r
  JOIN resource_type rt ON rt.name = r.type
  LEFT JOIN site s ON s.id = r.site_id
  WHERE rt.category = 'vehicle';
COMMENT ON VIEW vehicle IS 'Vehicle-category resources (cars, lorries, trucks, ...) with the name of their site.';

CREATE VIEW resource_booking AS
  SELECT a.id AS allocation_id, r.type, r.name AS resource_name, s.name AS site_name,
         lower(a.during) AS starts_at, upper(a.during) AS ends_at,
         a.kind, allocation_current_status(a.status, a.expires_at) AS status, a.expires_at, a.description
  FROM allocation a
  JOIN resource r ON r.id = a.resource_id
  LEFT JOIN site s ON s.id = r.site_id;
COMMENT ON VIEW resource_booking IS 'Every allocation with its resource and site by name; null starts_at / ends_at mean unbounded; status as of now (a run-out hold reads expired).';

-- Which migrations this database has had (postgres_scripts/migrations/NNN.do.*.sql,
-- applied by the API at start or by npm run migrate; postgrator's table). This script
-- is the whole schema as of the newest migration, so it records every one of them as
-- applied; a null md5 tells postgrator there is no checksum to compare.
CREATE TABLE schemaversion (
  version  bigint PRIMARY KEY,
  name     text,
  md5      text,
  run_at   timestamptz
);
COMMENT ON TABLE schemaversion IS 'One row per applied migration (postgres_scripts/migrations); the highest version is the schema''s.';
COMMENT ON COLUMN schemaversion.version IS 'The migration''s number, from its file name.';
COMMENT ON COLUMN schemaversion.name IS 'The migration''s name, from its file name.';
COMMENT ON COLUMN schemaversion.md5 IS 'Checksum of the migration file as applied; null when create_tables.sql made the schema.';
COMMENT ON COLUMN schemaversion.run_at IS 'When it was applied.';
INSERT INTO schemaversion (version, name, md5, run_at) VALUES
  (1, 'first-release', NULL, now()),
  (2, 'numbered-migrations', NULL, now()),
  (4, 'booking-rules', NULL, now()),
  (5, 'recurring-series', NULL, now()),
  (6, 'calendar-feeds', NULL, now()),
  (7, 'safe-integer-ids', NULL, now()),
  (8, 'indexed-reads', NULL, now()),
  (9, 'credential-notifications', NULL, now());

-- Dropping account and api_token fires none of their triggers: tell running API replicas
-- to forget every token lookup they keep (sent when this transaction commits).
SELECT pg_notify('invsys_credentials', '*');

COMMIT;
