import type { Db } from '../database/db.js'
import { allResourceTypes } from '../database/resource-types.js'

/**
 * One family of resource routes: the generic `/api/resources`, or `/api/<plural>` for
 * one type (as the original service had one blueprint per vehicle type). The route
 * plugins of every per-resource area are registered once per family in app.ts.
 */
export interface Family {
  /** `/api/resources`, or `/api/<plural>` for one type. */
  base: string
  /** The type every resource of the family has; undefined for the generic family. */
  type: string | undefined
  tags: string[]
  /** Every type name, for the generic family's `type` enums. */
  typeNames: string[]
}

/** The generic family and one per resource_type row, read at boot: a type added in SQL appears after a restart. */
export async function resourceFamilies (db: Db): Promise<Family[]> {
  const types = await allResourceTypes(db)
  const typeNames = types.map((t) => t.name)
  return [
    { base: '/api/resources', type: undefined, tags: ['resources'], typeNames },
    ...types.map(({ name, plural }) => ({ base: `/api/${plural}`, type: name, tags: [plural], typeNames }))
  ]
}
