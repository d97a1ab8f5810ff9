import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { repoRoot } from '../src/config.js'
import { buildTestApp } from './helpers.js'

const app = await buildTestApp(t, { seed: true })
const db = app.pg.pool

t.test('every table, view and column of the schema is commented for psql users', async (t) => {
  const { rows: relations } = await db.query(`
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') AND obj_description(c.oid, 'pg_class') IS NULL`)
  t.same(relations, [], 'tables and views without a comment')
  const { rows: columns } = await db.query(`
    SELECT c.relname || '.' || a.attname AS column FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
      AND col_description(c.oid, a.attnum) IS NULL`)
  t.same(columns, [], 'table columns without a comment')
  const { rows: functions } = await db.query(`
    SELECT p.proname FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`)
  t.same(functions, [], 'functions without a comment (their reason: create_tables.sql keeps only COMMENT ON)')
})

t.test('the mock data reads like a small real operation', async (t) => {
  const { rows: [site1] } = await db.query('SELECT * FROM site WHERE id = 1')
  t.match(site1, { name: 'Site 1', contact: 'John Smith', address: '123 Muffin Lane', state_or_region: 'MI', country: 'USA', postcode_or_zip: '48103' })
  const { rows: types } = await db.query('SELECT type, count(*)::int AS n FROM resource GROUP BY type ORDER BY type')
  t.same(types.map((r) => r.type), ['car', 'computer', 'freezer', 'lorry', 'truck'], 'every type is represented')
  const { rows: [macs] } = await db.query("SELECT count(*)::int AS n FROM resource WHERE type = 'computer' AND mac IS NOT NULL")
  t.ok(macs.n >= 2, 'computers have MACs')
  const { rows: freezers } = await db.query("SELECT name FROM resource WHERE type = 'freezer' AND (name LIKE '%-20C%' OR name LIKE '%-40C%')")
  t.ok(freezers.length >= 2, '-20C and -40C freezers')
  const { rows: [containers] } = await db.query('SELECT count(*)::int AS n FROM container')
  t.ok(containers.n > 0, 'freezers hold containers')
  const { rows: [when] } = await db.query(`
    SELECT count(*) FILTER (WHERE upper(during) < now())::int AS past,
           count(*) FILTER (WHERE lower(during) > now())::int AS future,
           count(*) FILTER (WHERE upper_inf(during) AND kind = 'maintenance')::int AS open_maintenance
    FROM allocation WHERE status = 'confirmed'`)
  t.ok(when.past > 0 && when.future > 0, 'past and future bookings')
  t.equal(when.open_maintenance, 1, 'an open-ended maintenance block')
  const { rows: rules } = await db.query(`
    SELECT resource_name, iso_duration(max_duration) AS max_duration, iso_duration(buffer_after) AS buffer_after,
           iso_duration(min_notice) AS min_notice, buffer_after_source
    FROM effective_rule WHERE min_duration IS NOT NULL OR max_duration IS NOT NULL OR buffer_after IS NOT NULL ORDER BY resource_name`)
  t.match(rules, [
    { resource_name: 'LR-7 Elbe', max_duration: 'P7D', buffer_after: 'PT30M', buffer_after_source: 'resource' },
    { resource_name: 'gpu-node-1', min_notice: 'PT2H' }
  ], 'two resources have booking rules, as examples')
  const { rows: [lorry] } = await db.query(`
    SELECT iso_duration(a.buffer_after) AS buffer_after FROM allocation a JOIN resource r ON r.id = a.resource_id WHERE r.name = 'LR-7 Elbe'`)
  t.equal(lorry.buffer_after, 'PT30M', 'and the lorry\'s booking keeps its buffer')
  const { rows: calendar } = await db.query(`
    SELECT resource_name, time_zone, opening_hours IS NOT NULL AS hours, iso_duration(slot_grid) AS slot_grid, quotas_source
    FROM effective_rule WHERE opening_hours IS NOT NULL OR slot_grid IS NOT NULL ORDER BY resource_name`)
  t.same(calendar, [{ resource_name: 'seq-ws-02', time_zone: 'Europe/London', hours: true, slot_grid: 'PT30M', quotas_source: 'type' }],
    'one resource has opening hours and a slot grid, and its type a quota, as examples')
})

t.test('create_tables.sql can be run again on a populated database (it is the dev reset)', async (t) => {
  const client = await db.connect()
  try {
    for (const script of ['create_tables.sql', 'mock_data.sql']) {
      await client.query(await fs.readFile(path.join(repoRoot, 'postgres_scripts', script), 'utf8'))
    }
  } finally {
    client.release()
  }
  const { rows: [count] } = await db.query("SELECT count(*)::int AS n FROM site WHERE name = 'Site 1'")
  t.equal(count.n, 1, 'recreated, not duplicated')
})
