import os from 'node:os'
import path from 'node:path'
import fs from 'node:fs/promises'

/**
 * One PostgreSQL cluster serves a whole test run (tap's `before` starts it, its `after`
 * stops it), and each test file gets a database of its own copied from a migrated
 * template, instead of a cluster of its own per file: a copy costs a fraction of a
 * second, a cluster a few seconds of initdb, start and migrations.
 *
 * The run is named by the tap runner's pid, the parent of the before/after scripts and
 * of every test file, so two runs (two worktrees, or a run and a one-file loop) never
 * share a cluster, and a test file run on its own (node, not tap) finds none and starts
 * a cluster of its own as before.
 */
export interface SharedCluster {
  /** The daemon that owns the cluster: it stops it when told, or when the run is gone. */
  pid: number
  /** The cluster's maintenance database (`postgres`), for CREATE DATABASE. */
  url: string
  dataDir: string
}

/** The migrated template (no data) and the template with the mock data on top. */
export const TEMPLATES = { migrated: 'invsys_template', seeded: 'invsys_template_seeded' } as const

export function clusterFile (runnerPid: number): string {
  return path.join(os.tmpdir(), `invsys-test-cluster-${runnerPid}.json`)
}

export function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The cluster of the tap run this process belongs to, when there is one and its daemon lives. */
export async function findSharedCluster (runnerPid = process.ppid): Promise<SharedCluster | undefined> {
  const text = await fs.readFile(clusterFile(runnerPid), 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  const cluster = JSON.parse(text) as SharedCluster
  return alive(cluster.pid) ? cluster : undefined
}
