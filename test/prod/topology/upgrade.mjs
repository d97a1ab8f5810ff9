// A release upgrade as docs/deployment.md tells it: migrations first (the image's
// migrate command, while the old replicas serve), then the replicas replaced one at
// a time behind nginx, under steady traffic, with no request failing.
import { spawnSync } from 'node:child_process'
import process from 'node:process'
import { brief } from '../lib/http.mjs'
import { untapped } from '../../../scripts/lib/local.mjs'
import { sleep } from '../lib/procs.mjs'

export default async function upgrade (t, topo) {
  const migrate = spawnSync(...untapped(process.execPath, ['services/api/dist/cli/migrate.js']), {
    cwd: topo.image.appDir,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', DATABASE_URL: topo.dbUrl },
    encoding: 'utf8',
    timeout: 60_000
  })
  t.equal(migrate.status, 0, "the image's migrate command runs against the live database", { stderr: migrate.stderr })
  t.match(migrate.stderr, /schema version \d+, nothing to do/, '... and finds it migrated by the replicas that booted on it')

  // Steady traffic through nginx (under its rate limit): reads, and bookings of slots
  // no one else takes, so every answer but a 2xx is a failure of the upgrade.
  const answers = []
  const load = { running: true }
  const traffic = (async () => {
    for (let i = 0; load.running && i < 2000; i++) {
      const r = i % 3 === 0
        ? await topo.via('POST', `/api/resources/${topo.carId}/allocations`, {
          body: { starts_at: new Date(Date.UTC(2035, 0, 1) + i * 3_600_000).toISOString(), ends_at: new Date(Date.UTC(2035, 0, 1) + i * 3_600_000 + 1_800_000).toISOString() }
        })
        : await topo.via('GET', i % 2 ? '/api/sites?limit=5' : `/api/resources/${topo.carId}/allocations?limit=5`)
      answers.push(r)
      await sleep(80)
    }
  })()

  for (const [key, name] of [['apiA', 'api-a'], ['apiB', 'api-b']]) {
    const port = key === 'apiA' ? topo.ports.a : topo.ports.b
    await sleep(1000)
    const code = await topo.procs.stop(topo[key], 'SIGTERM', 15_000)
    t.equal(code, 0, `${name} drains its requests and exits 0 on SIGTERM`)
    // The new release's replica leaves migrating to the operator (done above).
    topo[key] = topo.startApi(`${name}-new`, port, { overrides: { MIGRATE_ON_START: 'false' } })
    await topo.waitReady(topo[key], port)
    t.pass(`${name} replaced, ready on the same address`)
    // nginx skips an address that refused a connection for fail_timeout (3 s): only
    // then is the new replica back in its rotation, and the next may stop.
    await sleep(4000)
  }
  await sleep(1000)
  load.running = false
  await traffic

  const failed = answers.filter((r) => !(r.status >= 200 && r.status < 300))
  t.ok(answers.length >= 30, `traffic ran throughout (${answers.length} requests)`)
  t.same(failed.map(brief), [], 'no request failed while both replicas were replaced one at a time')
}
