import fs from 'node:fs/promises'
import path from 'node:path'
import { alive, clusterFile, findSharedCluster } from './shared.js'

/** tap's `after` (package.json): stops the run's cluster, waits until it is gone, and makes sure its files are. */
const cluster = await findSharedCluster(process.ppid)
if (cluster) {
  process.kill(cluster.pid, 'SIGUSR2')
  const deadline = Date.now() + 30_000
  while (alive(cluster.pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
  await fs.rm(path.dirname(cluster.dataDir), { recursive: true, force: true })
}
await fs.rm(clusterFile(process.ppid), { force: true })
await fs.rm(clusterFile(process.ppid).replace(/\.json$/, '.log'), { force: true })
