import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { repoRoot } from '../src/config.js'
import { ERROR_CODES, type ErrorInfo } from '../src/plugins/errors.js'
import { ERRORS_DOC, renderErrorsDoc } from '../../../scripts/error-docs.js'

t.test("the README's error table lists exactly the codes a client can see, with their statuses", async (t) => {
  const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8')
  const rows = [...readme.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \| (.+) \|$/gm)]
  t.same(Object.fromEntries(rows.map(([, code, status]) => [code, Number(status)])),
    Object.fromEntries(Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status])))
})

t.test('docs/errors.md is made from ERROR_CODES and up to date (npm run docs)', async (t) => {
  const written = await fs.readFile(ERRORS_DOC, 'utf8').catch(() => '')
  t.equal(written, renderErrorsDoc(), 'run `npm run docs` and commit docs/errors.md')
})

t.test('every code says what a client should do about it', async (t) => {
  const without = Object.entries<ErrorInfo>(ERROR_CODES).filter(([, info]) => !info.action).map(([code]) => code)
  t.same(without, [], 'add an action to these codes in ERROR_CODES (plugins/errors.ts)')
})
