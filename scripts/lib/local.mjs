// What the tests, the prod-topology test and the benchmark each need from the local
// machine, written once: a free loopback port and a temp dir PostgreSQL can use.
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
