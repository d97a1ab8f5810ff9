/**
 * The API as production runs it: the compiled server (npm run build), started with
 * node as a child process, configured by environment only.
 */
import fs from 'node:fs'
import path from 'node:path'
import { repoRoot } from '../../src/config.js'
import { freePort } from '../../../../scripts/lib/local.mjs'
import { memoryOf, sleep, startChild, type Child } from './processes.js'

const SERVER = path.join(repoRoot, 'services/api/dist/server.js')

/** The Node flags production runs the API with: package.json's config.nodeFlags, as the image's CMD and npm start read them. */
export function nodeFlags (): string[] {
  const { config } = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { config: { nodeFlags: string } }
  return config.nodeFlags.split(/\s+/).filter(Boolean)
}

export interface ApiProcess {
  pid: number
  /** http://127.0.0.1:<port> */
  url: string
  memory: () => ReturnType<typeof memoryOf>
  stop: () => Promise<void>
}

/**
 * Starts the API at `logLevel` (production ships info). Its log goes to a file in `logDir`,
 * as a container's goes to its log driver, not through this process.
 */
export async function startApi (databaseUrl: string, adminToken: string, logLevel: string, logDir: string): Promise<ApiProcess> {
  const port = await freePort()
  const logFile = path.join(logDir, `api-${port}.log`)
  const child: Child = startChild('API', process.execPath, [...nodeFlags(), SERVER], {
    cwd: repoRoot,
    stdoutFile: logFile,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'production',
      LOG_LEVEL: logLevel,
      DATABASE_URL: databaseUrl,
      BOOTSTRAP_ADMIN_TOKEN: adminToken,
      HOST: '127.0.0.1',
      PORT: String(port)
    }
  })
  const url = `http://127.0.0.1:${port}`
  let exited = false
  void child.exited.then(() => { exited = true })
  for (const started = Date.now(); ; await sleep(100)) {
    if (exited) throw new Error(`the API exited during start:\n${child.output()}`)
    const ready = await fetch(`${url}/ready`).then((res) => res.ok, () => false)
    if (ready) break
    if (Date.now() - started > 30_000) {
      await child.stop()
      throw new Error(`the API was not ready within 30 s:\n${child.output()}`)
    }
  }
  const pid = child.process.pid!
  return {
    pid,
    url,
    memory: () => memoryOf(pid),
    stop: async () => {
      await child.stop()
      // Its standard error (a crash, a warning from Node) is worth seeing; its log is in logFile.
      const output = child.output().trim()
      if (output) process.stderr.write(`API (pid ${pid}) wrote on stderr:\n${output.split('\n').slice(-20).join('\n')}\n`)
    }
  }
}
