// Settings the API must refuse in production.
import { join } from 'node:path'
import { freePort, parseEnvFile } from '../lib/http.mjs'
import { ROOT } from '../lib/paths.mjs'
import { sleep, tail } from '../lib/procs.mjs'

export default async function config (t, topo) {
  await t.test("the API refuses to start with .env.prod.example's placeholder password", async (t) => {
    // The example's DATABASE_URL as it is, pointed at the test's PostgreSQL: the
    // password is still CHANGE_ME_…, which must stop the boot before any connection.
    const settings = parseEnvFile(join(ROOT, '.env.prod.example'))
    const url = new URL(settings.DATABASE_URL)
    url.host = new URL(topo.dbUrl).host
    const rec = topo.startApi('api-placeholder', await freePort(), { overrides: { DATABASE_URL: url.href, BOOTSTRAP_ADMIN_TOKEN: '' } })
    await Promise.race([rec.done, sleep(15_000)])
    const exited = rec.exited
    await topo.procs.stop(rec, 'SIGKILL', 1000)
    t.ok(exited && rec.code !== 0, `exits non-zero by itself (exit ${rec.code ?? rec.signal})`)
    const log = tail(rec.log, 20)
    const lines = log.split('\n').filter((l) => /CHANGE_ME|placeholder/i.test(l))
    t.ok(lines.length === 1 && /DATABASE_URL/.test(lines[0]), 'with one line naming DATABASE_URL and the placeholder', { log })
  })
}
