/**
 * npm run docs: writes the generated pages of docs/: the API reference (docs/api.md, from
 * the OpenAPI document of an app built on a throwaway embedded database) and the error
 * codes (docs/errors.md, from ERROR_CODES). Tests fail while either is not current.
 */
import fs from 'node:fs/promises'
import path from 'node:path'
import { buildApp } from '../services/api/src/app.js'
import { prepareDatabase } from '../services/api/src/boot/prepare.js'
import { loadConfig, repoRoot } from '../services/api/src/config.js'
import { freePort, tempDir } from './lib/local.mjs'
import { REFERENCE_DOC, renderApiReference } from './api-reference.js'
import { ERRORS_DOC, renderErrorsDoc } from './error-docs.js'

const dir = await tempDir('invsys-docs-')
try {
  const config = loadConfig({
    LOG_LEVEL: 'silent', EMBEDDED_PG_DIR: path.join(dir, 'data'), EMBEDDED_PG_PORT: String(await freePort()), SEED_MOCK_DATA: 'false', AUTH_CACHE_SIZE: '0'
  })
  const database = await prepareDatabase(config, { fast: true })
  try {
    const app = await buildApp({ ...config, databaseUrl: database.url })
    const document = app.swagger()
    await app.close()
    await fs.writeFile(REFERENCE_DOC, renderApiReference(document))
    await fs.writeFile(ERRORS_DOC, renderErrorsDoc())
    for (const file of [REFERENCE_DOC, ERRORS_DOC]) console.log(`wrote ${path.relative(repoRoot, file)}`)
  } finally {
    await database.stop()
  }
} finally {
  await fs.rm(dir, { recursive: true, force: true })
}
