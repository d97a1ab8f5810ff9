// The production topology, without Docker (see lib/topology.mjs): built once,
// then probed by the subtests in topology/, in order; the last ones take it
// down. A step that the rest needs (the image, PostgreSQL, a replica, nginx)
// failing skips the steps after it. KEEP_WORKDIR=1 keeps the work directory
// (every process's log) for a look afterwards.
import process from 'node:process'
import { setTimeout } from 'node:timers'
import t from 'tap'
import { Topology } from './lib/topology.mjs'
import build from './topology/build.mjs'
import config from './topology/config.mjs'
import failures from './topology/failures.mjs'
import limits, { ownErrors } from './topology/limits.mjs'
import proxy from './topology/proxy.mjs'
import start from './topology/start.mjs'
import tls from './topology/tls.mjs'
import upgrade from './topology/upgrade.mjs'

const HARD_LIMIT_MS = 570_000 // under tap's --timeout (600 s), so that this file cleans up itself

const topo = new Topology({ comment: (m) => t.comment(m) })
t.comment(`work directory ${topo.work}`)
t.teardown(() => topo.cleanup())
const hardTimer = setTimeout(() => {
  t.fail(`the whole test took over ${HARD_LIMIT_MS / 1000}s: aborted`)
  topo.procs.cleanupSync()
  process.exit(1)
}, HARD_LIMIT_MS)
hardTimer.unref()

async function step (name, fn) {
  if (topo.fatal) {
    t.skip(`${name} (skipped: ${topo.fatal})`)
    return
  }
  await t.test(name, async (t) => {
    try {
      await fn(t, topo)
    } catch (e) {
      topo.fatal = `${name} did not run to its end`
      t.fail(`${name}: ran to its end`, { reason: e.stack })
    }
  })
}

await topo.allocatePorts()
await step('the runtime image (services/api/Dockerfile replayed)', build)
await step('the topology comes up', start)
await step('production settings', config)
await step('probes through nginx', proxy)
await step("nginx's limits", limits)
await step("nginx's own errors, as JSON", ownErrors)
await step('HTTPS (conf.d/tls.conf)', tls)
await step('a rolling upgrade: migrate, then replace the replicas one at a time', upgrade)
await step('failures', failures)
if (!t.passing()) t.comment(topo.logsDigest())
