import fs from 'node:fs/promises'
import t from 'tap'
import { ERROR_CODES, type ErrorInfo } from '../src/plugins/errors.js'
import { ERRORS_DOC, renderErrorsDoc } from '../../../scripts/error-docs.js'

t.test('docs/errors.md is made from ERROR_CODES and up to date (npm run docs)', async (t) => {
  const written = await fs.readFile(ERRORS_DOC, 'utf8').catch(() => '')
  t.equal(written, renderErrorsDoc(), 'run `npm run docs` and commit docs/errors.md')
})

t.test('every code says what a client should do about it', async (t) => {
  const without = Object.entries<ErrorInfo>(ERROR_CODES).filter(([, info]) => !info.action).map(([code]) => code)
  t.same(without, [], 'add an action to these codes in ERROR_CODES (plugins/errors.ts)')
})
