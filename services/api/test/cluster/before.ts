import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { untapped } from '../../../../scripts/lib/local.mjs'
import { alive, findSharedCluster } from './shared.js'

/**
 * tap's `before` (package.json): starts the run's cluster daemon, detached so that it
 * outlives this script, and returns once the cluster is ready. Its output goes to a log
 * file, printed here only when it fails.
 */
const runnerPid = process.ppid
const log = path.join(os.tmpdir(), `invsys-test-cluster-${runnerPid}.log`)
const out = fs.openSync(log, 'w')
// The daemon runs outside tap's instrumentation: its coverage is not the tests'.
const daemon = spawn(...untapped(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'daemon.ts'), String(runnerPid)]), {
  detached: true,
  stdio: ['ignore', out, out]
})
daemon.unref()

const deadline = Date.now() + 120_000
while (!await findSharedCluster(runnerPid)) {
  if (!alive(daemon.pid!) || Date.now() > deadline) {
    process.stderr.write(`${fs.readFileSync(log, 'utf8')}\nthe shared test cluster did not start; see above\n`)
    process.exit(1)
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
}
