import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { repoRoot } from '../src/config.js'
import { ERROR_CODES } from '../src/plugins/errors.js'

t.test("the README's error table lists exactly the codes a client can see, with their statuses", async (t) => {
  const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8')
  const rows = [...readme.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \| (.+) \|$/gm)]
  t.same(Object.fromEntries(rows.map(([, code, status]) => [code, Number(status)])),
    Object.fromEntries(Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status])))
})
