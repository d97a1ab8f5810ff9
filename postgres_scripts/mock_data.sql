-- Example data for development and demos: a small operation across three countries.
-- Run after create_tables.sql:
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f postgres_scripts/mock_data.sql
-- Booking times are relative to the moment it runs, so "past" and "future" stay true.

BEGIN;

INSERT INTO site (name, contact, address, state_or_region, country, postcode_or_zip) VALUES
  ('Site 1',            'John Smith',     '123 Muffin Lane',                 'MI',             'USA',            '48103'),
  ('Cambridge Lab',     'Priya Raman',    '21 Station Road',                 'Cambridgeshire', 'United Kingdom', 'CB1 2JD'),
  ('Hamburg Depot',     'Jonas Becker',   'Am Sandtorkai 50',                'Hamburg',        'Germany',        '20457'),
  ('Osaka Field Office', 'Yuki Tanaka',   '2-4-9 Umeda, Kita-ku',            'Osaka',          'Japan',          '530-0001');

-- Resources are inserted by name so the script reads as the operation it describes.
INSERT INTO resource (type, name, site_id, mac)
SELECT v.type, v.name, s.id, v.mac::macaddr
FROM (VALUES
  ('car',      'AV-01 Aurora',     'Site 1',            NULL),
  ('car',      'AV-02 Borealis',   'Site 1',            NULL),
  ('car',      'AV-03 Cirrus',     'Hamburg Depot',     NULL),
  ('lorry',    'LR-7 Elbe',        'Hamburg Depot',     NULL),
  ('lorry',    'LR-9 Alster',      'Hamburg Depot',     NULL),
  ('truck',    'TR-1 Big Blue',    'Site 1',            NULL),
  ('truck',    'TR-2 Kansai',      'Osaka Field Office', NULL),
  ('computer', 'seq-ws-01',        'Cambridge Lab',     '08:00:2b:01:02:03'),
  ('computer', 'seq-ws-02',        'Cambridge Lab',     '08:00:2b:01:02:04'),
  ('computer', 'gpu-node-1',       'Site 1',            'a4:bb:6d:10:20:30'),
  ('freezer',  'Freezer -20C A',   'Cambridge Lab',     NULL),
  ('freezer',  'Freezer -40C B',   'Cambridge Lab',     NULL),
  ('freezer',  'Freezer -20C Osaka', 'Osaka Field Office', NULL)
) AS v (type, name, site_name, mac)
JOIN site s ON s.name = v.site_name;

INSERT INTO container (freezer_id, description)
SELECT r.id, v.description
FROM (VALUES
  ('Freezer -20C A', 'Rack 1: reagent kits (lot 2291)'),
  ('Freezer -20C A', 'Rack 2: primer plates'),
  ('Freezer -40C B', 'Box 14: patient-derived cell lines'),
  ('Freezer -40C B', 'Box 15: enzyme stocks'),
  ('Freezer -20C Osaka', 'Field samples, batch K-03')
) AS v (freezer_name, description)
JOIN resource r ON r.type = 'freezer' AND r.name = v.freezer_name;

-- Booking rules, as examples (no type has any). The lorry LR-7 Elbe is inspected for half
-- an hour after every trip and goes out for a week at most; the GPU node is booked at
-- least an hour at a time, two hours ahead, and at most 30 days out. Set before the
-- bookings below, so the lorry's booking keeps its half hour free after it.
INSERT INTO resource_rule (resource_id, max_duration, buffer_after)
SELECT id, interval 'P7D', interval 'PT30M' FROM resource WHERE type = 'lorry' AND name = 'LR-7 Elbe';
INSERT INTO resource_rule (resource_id, min_duration, min_notice, max_advance)
SELECT id, interval 'PT1H', interval 'PT2H', interval 'P30D' FROM resource WHERE type = 'computer' AND name = 'gpu-node-1';

-- The calendar-shaped rules, as examples. Each member may have the computers for at most 20
-- hours a week and in at most three bookings a day, counted in UK time; the sequencer
-- workstation seq-ws-02 is booked in half hours within the Cambridge lab's opening hours.
INSERT INTO resource_type_rule (type, time_zone, quotas) VALUES
  ('computer', 'Europe/London', '[{"period": "week", "max_duration": "PT20H", "max_bookings": null}, {"period": "day", "max_duration": null, "max_bookings": 3}]');
INSERT INTO resource_rule (resource_id, opening_hours, slot_grid)
SELECT id, '{"mon": [["08:00", "18:00"]], "tue": [["08:00", "18:00"]], "wed": [["08:00", "18:00"]], "thu": [["08:00", "18:00"]], "fri": [["08:00", "18:00"]]}',
       interval 'PT30M'
FROM resource WHERE type = 'computer' AND name = 'seq-ws-02';

INSERT INTO allocation (resource_id, during, kind, status, description, data, cancelled_at)
SELECT r.id,
       tstzrange(date_trunc('hour', now()) + v.starts, date_trunc('hour', now()) + v.ends, '[)'),
       v.kind, v.status, v.description, v.data::jsonb,
       CASE WHEN v.status = 'cancelled' THEN now() END
FROM (VALUES
  ('car',      'AV-01 Aurora',   interval '-3 days',  interval '-3 days' + interval '4 hours', 'booking', 'confirmed', 'Airport shuttle trial',      '{"job": "J-1001"}'),
  ('car',      'AV-01 Aurora',   interval '1 day',    interval '1 day 6 hours',                 'booking', 'confirmed', 'Downtown mapping run',       '{"job": "J-1042"}'),
  ('car',      'AV-01 Aurora',   interval '1 day 6 hours', interval '1 day 8 hours',            'booking', 'confirmed', 'Back-to-back: sensor calibration drive', '{}'),
  ('car',      'AV-02 Borealis', interval '2 days',   interval '2 days 3 hours',                'booking', 'cancelled', 'Cancelled demo for investors', '{}'),
  ('lorry',    'LR-7 Elbe',      interval '-1 day',   interval '2 days',                        'booking', 'confirmed', 'Port of Hamburg container run', '{"driver": "K. Wolf"}'),
  ('truck',    'TR-1 Big Blue',  interval '5 days',   interval '6 days',                        'booking', 'confirmed', 'Equipment move to Detroit',  '{}'),
  ('computer', 'seq-ws-01',      interval '-7 days',  interval '-6 days',                       'booking', 'confirmed', 'Genome assembly, run 88',    '{"project": "GA-88"}'),
  ('computer', 'gpu-node-1',     interval '3 hours',  interval '27 hours',                      'booking', 'confirmed', 'Model training',             '{"project": "vision-3"}'),
  ('freezer',  'Freezer -40C B', interval '7 days',   interval '7 days 2 hours',                'maintenance', 'confirmed', 'Defrost and seal check', '{}')
) AS v (type, name, starts, ends, kind, status, description, data)
JOIN resource r ON r.type = v.type AND r.name = v.name;

-- An open-ended maintenance block: the truck is off the road until further notice.
INSERT INTO allocation (resource_id, during, kind, description)
SELECT id, tstzrange(date_trunc('hour', now()) - interval '2 days', NULL, '[)'), 'maintenance',
       'Brake recall: off the road until further notice'
FROM resource WHERE type = 'truck' AND name = 'TR-2 Kansai';

COMMIT;
