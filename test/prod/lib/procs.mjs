// Child processes of the prod test: each in its own process group (so a
// signal reaches its children too), with its output in a log file, and all of
// them killed however the test ends (normal end, exception, Ctrl-C, tap's
// timeout).
import { spawn } from 'node:child_process'
import { openSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import process from 'node:process'
import { setTimeout } from 'node:timers'
import { untapped } from '../../../scripts/lib/local.mjs'

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export function tail (file, lines = 25) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

export class Processes {
  /** @param {string} work directory for the logs; removed by cleanup() unless KEEP_WORKDIR=1 */
  constructor (work, { comment = () => {} } = {}) {
    this.work = work
    this.comment = comment
    this.children = new Map() // name -> record
    this.cleanedUp = false
    process.on('exit', () => this.cleanupSync())
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
      process.on(sig, () => {
        this.cleanupSync()
        process.exit(130)
      })
    }
  }

  start (name, cmd, args, { cwd, env, uid, gid } = {}) {
    const log = join(this.work, `${name}.log`)
    const fd = openSync(log, 'a')
    const child = spawn(...untapped(cmd, args), { cwd, env, uid, gid, detached: true, stdio: ['ignore', fd, fd] })
    const rec = { name, child, exited: false, code: null, signal: null, log, stopping: false }
    rec.done = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        Object.assign(rec, { exited: true, code, signal })
        // Something else on the machine stopping our processes explains odd failures.
        if (!rec.stopping) this.comment(`WARNING: ${name} exited by itself or by another process's signal (exit ${code}, signal ${signal})`)
        resolve()
      })
      child.on('error', (e) => {
        Object.assign(rec, { exited: true, error: e })
        resolve()
      })
    })
    this.children.set(name, rec)
    return rec
  }

  kill (rec, signal) {
    if (!rec || rec.exited || !rec.child.pid) return
    rec.stopping = true
    try {
      process.kill(-rec.child.pid, signal)
    } catch {
      /* already gone */
    }
  }

  /** Signal, wait up to waitMs, then SIGKILL. Returns the exit code. */
  async stop (rec, signal = 'SIGTERM', waitMs = 10_000) {
    if (!rec || rec.exited) return rec?.code
    this.kill(rec, signal)
    await Promise.race([rec.done, sleep(waitMs)])
    if (!rec.exited) {
      this.kill(rec, 'SIGKILL')
      await Promise.race([rec.done, sleep(3000)])
    }
    return rec.code
  }

  running () {
    return [...this.children.values()].filter((c) => !c.exited).map((c) => c.name)
  }

  cleanupSync () {
    if (this.cleanedUp) return
    this.cleanedUp = true
    for (const rec of this.children.values()) this.kill(rec, 'SIGKILL')
    if (process.env.KEEP_WORKDIR === '1') this.comment(`kept ${this.work}`)
    else rmSync(this.work, { recursive: true, force: true, maxRetries: 3 })
  }

  /** Orderly: the given names first, in order (nginx, APIs, then PostgreSQL, which must stop the server it spawned). */
  async cleanup (order = []) {
    for (const step of order) {
      await Promise.all(step.names.map((n) => this.stop(this.children.get(n), step.signal, step.waitMs)))
    }
    this.cleanupSync()
  }
}
