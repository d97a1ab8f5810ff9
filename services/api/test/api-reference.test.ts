import fs from 'node:fs/promises'
import t from 'tap'
import { REFERENCE_DOC, renderApiReference } from '../../../scripts/api-reference.js'
import { buildTestApp } from './helpers.js'

const app = await buildTestApp(t)

t.test('docs/api.md is the reference made from the OpenAPI document the app serves, up to date (npm run docs)', async (t) => {
  const written = await fs.readFile(REFERENCE_DOC, 'utf8').catch(() => '')
  const made = renderApiReference(app.swagger())
  t.equal(written, made, 'run `npm run docs` and commit docs/api.md')
  const operations = Object.values(app.swagger().paths ?? {}).flatMap((item) => Object.keys(item ?? {}))
  t.ok(operations.length > 100, `the document has ${operations.length} operations`)
  for (const needle of ['### POST `/api/resources/{id}/allocations`', '`ALLOCATION_CONFLICT`', '### Allocation', '`/api/lorries`']) {
    t.ok(made.includes(needle), `the reference shows ${needle}`)
  }
})
