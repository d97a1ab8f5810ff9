import { withTransaction, type Db, type Page } from './db.js'
import type { Site, SiteInput, SiteListQuery, SitePatch } from '../schemas/sites.js'
import { DomainError } from './outcomes.js'

const COLUMNS = 'id, name, contact, address, state_or_region, country, postcode_or_zip, created_at, updated_at'

const LIST = `
  SELECT ${COLUMNS}
  FROM site
  WHERE $1::text IS NULL OR strpos(lower(name), lower($1)) > 0
  ORDER BY id
  LIMIT $2 OFFSET $3`

const GET = `SELECT ${COLUMNS} FROM site WHERE id = $1`

// ON CONFLICT: a generated id may land on one a PUT chose; the caller simply asks again.
// A trigger moves the sequence past every id a PUT chooses, so this happens only to ids
// written by hand in psql, and each retry draws a new id.
const INSERT = `
  INSERT INTO site (name, contact, address, state_or_region, country, postcode_or_zip)
  VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (id) DO NOTHING
  RETURNING ${COLUMNS}`

// xmax is 0 only on a freshly inserted row version: that is how created is told from replaced.
const UPSERT = `
  INSERT INTO site (id, name, contact, address, state_or_region, country, postcode_or_zip)
  VALUES ($1, $2, $3, $4, $5, $6, $7)
  ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, contact = EXCLUDED.contact, address = EXCLUDED.address,
    state_or_region = EXCLUDED.state_or_region, country = EXCLUDED.country,
    postcode_or_zip = EXCLUDED.postcode_or_zip
  RETURNING ${COLUMNS}, (xmax = 0) AS created`

const UPDATE = `
  UPDATE site SET
    name = $2, contact = $3, address = $4, state_or_region = $5, country = $6, postcode_or_zip = $7
  WHERE id = $1
  RETURNING ${COLUMNS}`

const LOCK = `SELECT ${COLUMNS} FROM site WHERE id = $1 FOR UPDATE`

const DELETE = 'DELETE FROM site WHERE id = $1'

function values (site: SiteInput) {
  return [site.name, site.contact ?? null, site.address ?? null, site.state_or_region ?? null,
    site.country ?? null, site.postcode_or_zip ?? null]
}

export async function listSites (db: Db, query: SiteListQuery, page: Page): Promise<Site[]> {
  return (await db.query<Site>(LIST, [query.q ?? null, page.limit + 1, page.offset])).rows
}

export async function getSite (db: Db, id: number): Promise<Site | undefined> {
  return (await db.query<Site>(GET, [id])).rows[0]
}

async function lockSite (db: Db, id: number): Promise<Site | undefined> {
  return (await db.query<Site>(LOCK, [id])).rows[0]
}

/** Tries a few sequence values; each try that lands on a taken id draws the next. */
const SITE_ID_TRIES = 100

export async function createSite (db: Db, site: SiteInput): Promise<Site> {
  for (let attempt = 1; attempt <= SITE_ID_TRIES; attempt++) {
    const row = (await db.query<Site>(INSERT, values(site))).rows[0]
    if (row) return row
  }
  throw new DomainError('ID_SPACE_CROWDED', `${SITE_ID_TRIES} site ids in a row were taken (ids written by hand?); try again, or move site_id_seq past them`)
}

export async function upsertSite (db: Db, id: number, site: SiteInput): Promise<{ site: Site, created: boolean }> {
  const { created, ...row } = (await db.query<Site & { created: boolean }>(UPSERT, [id, ...values(site)])).rows[0]!
  return { site: row, created }
}

async function updateSite (db: Db, id: number, site: SiteInput): Promise<Site | undefined> {
  return (await db.query<Site>(UPDATE, [id, ...values(site)])).rows[0]
}

/** Merges the given fields onto the stored site under a row lock. Undefined when there is no such site. */
export async function patchSite (db: Db, id: number, patch: SitePatch): Promise<Site | undefined> {
  return withTransaction(db, async (client) => {
    const current = await lockSite(client, id)
    return current && updateSite(client, id, { ...current, ...patch })
  })
}

/** False when there was no such site. Refused by the database (IN_USE) while resources are there. */
export async function deleteSite (db: Db, id: number): Promise<boolean> {
  return ((await db.query(DELETE, [id])).rowCount ?? 0) > 0
}
