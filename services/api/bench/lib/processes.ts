/**
 * Everything the benchmark starts is registered here and undone on exit, on an error,
 * on SIGINT or SIGTERM, and when the run exceeds its time limit: child processes are
 * stopped by their own pid, the PostgreSQL cluster is stopped, temp dirs are removed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fsSync from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { tempDir as scratchDir } from '../../../../scripts/lib/local.mjs'

type Cleanup = () => unknown

const cleanups: Array<{ name: string, run: Cleanup }> = []
let cleaning: Promise<void> | undefined

// The last line of defence, whatever way the process ends (process.exit included): kill
// what is still running and delete the temp dirs, synchronously, newest first.
const atExit: Array<() => void> = []
process.on('exit', () => {
  for (const undo of atExit.reverse()) {
    try { undo() } catch { /* best effort */ }
  }
})

/** Stops a PostgreSQL still running on `dataDir` at exit (immediate shutdown), if the cleanup could not. */
export function stopPostgresAtExit (dataDir: string): void {
  atExit.push(() => {
    const pid = Number(fsSync.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
    if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGQUIT')
  })
}

/** Registers an undo step; returns a function that runs it now (and forgets it). */
export function defer (name: string, run: Cleanup): () => Promise<void> {
  const entry = { name, run }
  cleanups.push(entry)
  return async () => {
    const at = cleanups.indexOf(entry)
    if (at === -1) return
    cleanups.splice(at, 1)
    await entry.run()
  }
}

/** Runs every registered undo step, newest first, each bounded, whatever fails. */
export function cleanupAll (): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const { name, run } = cleanups.pop()!
      try {
        await Promise.race([run(), sleep(20_000).then(() => { throw new Error('timed out') })])
        if (process.env.BENCH_DEBUG) process.stderr.write(`bench: cleanup "${name}" done\n`)
      } catch (error) {
        process.stderr.write(`bench: cleanup "${name}" failed: ${(error as Error).message}\n`)
      }
    }
  })()
  return cleaning
}

/** SIGINT/SIGTERM and a hard time limit both clean up and exit. */
export function installExitHandlers (limitMs: number): void {
  const stop = (why: string, code: number) => {
    process.stderr.write(`\nbench: ${why}: stopping everything it started\n`)
    // Stopping PostgreSQL ends the connections still open: nothing to report any more.
    process.on('uncaughtException', () => undefined)
    process.on('unhandledRejection', () => undefined)
    void cleanupAll().finally(() => process.exit(code))
  }
  process.once('SIGINT', () => stop('interrupted', 130))
  process.once('SIGTERM', () => stop('terminated', 143))
  setTimeout(() => stop(`time limit of ${Math.round(limitMs / 1000)} s reached`, 1), limitMs).unref()
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A temp dir the `postgres` user can enter (the cluster runs as postgres when we are root), removed at cleanup. */
export async function tempDir (prefix: string): Promise<string> {
  const dir = await scratchDir(prefix)
  defer(`remove ${dir}`, () => fs.rm(dir, { recursive: true, force: true }))
  atExit.push(() => fsSync.rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface Child {
  process: ChildProcess
  /** The last lines it wrote, for error messages. */
  output: () => string
  exited: Promise<number | null>
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop: (graceMs?: number) => Promise<void>
}

/** Starts a child process that is stopped at cleanup if it is still running. */
export function startChild (name: string, command: string, args: string[], options: { env?: NodeJS.ProcessEnv, cwd?: string, stdoutFile?: string } = {}): Child {
  // A chatty child (the API logging every request) writes straight to a file rather than
  // through this process, which would spend the machine's cores reading it.
  const stdout = options.stdoutFile === undefined ? 'pipe' : fsSync.openSync(options.stdoutFile, 'a')
  const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', stdout, 'pipe'] })
  if (typeof stdout === 'number') fsSync.closeSync(stdout)
  const lines: string[] = []
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    if (lines.length > 200) lines.splice(0, lines.length - 200)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code))
    child.once('error', (error) => { lines.push(String(error)); resolve(-1) })
  })
  let running = true
  void exited.then(() => { running = false })
  atExit.push(() => { if (running) child.kill('SIGKILL') })
  const stop = async (graceMs = 10_000) => {
    if (running && child.pid !== undefined) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => { if (running) child.kill('SIGKILL') }, graceMs)
      await exited
      clearTimeout(timer)
    }
  }
  const undo = defer(`stop ${name} (pid ${child.pid})`, () => stop())
  return {
    process: child,
    output: () => lines.join('\n'),
    exited,
    stop: async (graceMs?: number) => { await stop(graceMs); await undo() }
  }
}

/** Runs a command to completion (bounded), inheriting the terminal. */
export function runToEnd (command: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): void {
  const result = spawnSync(command, args, { stdio: 'inherit', timeout: timeoutMs, env })
  if (result.error) throw result.error
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`)
}

/** Peak and current resident memory of a live process, in kB (Linux /proc). */
export async function memoryOf (pid: number): Promise<{ peakRssKb: number, rssKb: number } | undefined> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined)
  if (!status) return undefined
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { peakRssKb: field('VmHWM'), rssKb: field('VmRSS') }
}
