// What the tests, the prod-topology test and the benchmark each need from the local
// machine, written once: a free loopback port, a temp dir PostgreSQL can use, and a way
// to start a child process outside tap's instrumentation.
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/**
 * A TCP port free on 127.0.0.1 right now (the OS picks it).
 * @returns {Promise<number>}
 */
export function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = /** @type {net.AddressInfo} */ (server.address())
      server.close(() => resolve(address.port))
    })
  })
}

/**
 * A new temp dir that the `postgres` user can enter: as root, the embedded PostgreSQL
 * runs as that user (PostgreSQL refuses root).
 * @param {string} prefix
 * @returns {Promise<string>}
 */
export async function tempDir (prefix) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
  await fs.chmod(dir, 0o755)
  return dir
}

// Under tap, child_process is wrapped (@tapjs/processinfo) so that every child, whatever
// env it is given, gets tap's loader in NODE_OPTIONS and writes V8 coverage. A child
// that is not under test (a server from the build, the test cluster, a CLI, a linter)
// would then load and instrument everything again, at several times its own CPU, and
// its coverage maps onto the sources through other source maps than the tests'.
// env(1) drops those variables after the wrapper added them.
const TAP_VARIABLES = ['NODE_OPTIONS', 'NODE_V8_COVERAGE', '_TAPJS_PROCESSINFO_EXCLUDE_', '_TAPJS_PROCESSINFO_EXTERNAL_ID_']

/**
 * The [command, args] that run `command args` without tap's variables in its environment.
 * @param {string} command
 * @param {readonly string[]} args
 * @returns {[string, string[]]}
 */
export function untapped (command, args) {
  return ['/usr/bin/env', [...TAP_VARIABLES.flatMap((v) => ['-u', v]), command, ...args]]
}
