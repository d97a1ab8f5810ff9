import fs from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { repoRoot } from '../src/config.js'

/**
 * The parts of the service and what each may import. Knowledge flows one way: entries →
 * app → HTTP layer (plugins, routes) → policy → schemas and database → leaves. Above
 * all, nothing in database/ may import what chooses an HTTP status.
 */
const PARTS: Array<{ part: string, files: RegExp, mayImport: string[] }> = [
  { part: 'entry', files: /^(server\.ts|cli\/)/, mayImport: ['entry', 'boot', 'app', 'http', 'policy', 'schemas', 'database', 'leaf'] },
  { part: 'boot', files: /^boot\//, mayImport: ['boot', 'database', 'schemas', 'leaf'] },
  { part: 'app', files: /^app\.ts$/, mayImport: ['http', 'policy', 'schemas', 'database', 'leaf'] },
  { part: 'http', files: /^(plugins|routes)\/|^validation\.ts$|^ics\.ts$/, mayImport: ['http', 'policy', 'schemas', 'database', 'leaf'] },
  { part: 'policy', files: /^policy\.ts$/, mayImport: ['schemas', 'database', 'leaf'] },
  { part: 'database', files: /^database\//, mayImport: ['database', 'schemas', 'leaf'] },
  { part: 'schemas', files: /^schemas\//, mayImport: ['schemas', 'leaf'] },
  { part: 'leaf', files: /^(config|tokens|logging|recurrence|outbound)\.ts$/, mayImport: ['leaf'] }
]

const SRC = path.join(repoRoot, 'services', 'api', 'src')

async function sourceFiles (dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true })
  const nested = await Promise.all(entries.map((entry) =>
    entry.isDirectory() ? sourceFiles(path.join(dir, entry.name)) : Promise.resolve(entry.name.endsWith('.ts') ? [path.join(dir, entry.name)] : [])))
  return nested.flat()
}

function partOf (file: string): string | undefined {
  return PARTS.find(({ files }) => files.test(file))?.part
}

/** file (relative to src) → the src files it imports, type-only imports included. */
async function importGraph (): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>()
  for (const absolute of await sourceFiles(SRC)) {
    const file = path.relative(SRC, absolute)
    const text = await fs.readFile(absolute, 'utf8')
    const targets = [...text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)]
      .map(([, spec]) => path.relative(SRC, path.resolve(path.dirname(absolute), spec!.replace(/\.js$/, '.ts'))))
    graph.set(file, targets)
  }
  return graph
}

const graph = await importGraph()

t.test('every source file belongs to a part of the picture', async (t) => {
  t.ok(graph.size > 30 && graph.get('database/allocations.ts')?.includes('database/outcomes.ts'), 'the graph is read (sanity)')
  t.same([...graph.keys()].filter((file) => !partOf(file)), [], 'files outside every part')
})

t.test('each part imports only the parts below it (database/ knows nothing of HTTP)', async (t) => {
  const violations: string[] = []
  for (const [file, targets] of graph) {
    const rule = PARTS.find(({ part }) => part === partOf(file))
    for (const target of targets) {
      if (rule && !rule.mayImport.includes(partOf(target) ?? '?')) violations.push(`${file} (${rule.part}) imports ${target} (${partOf(target)})`)
    }
  }
  t.same(violations, [])
})

t.test('there are no import circles', async (t) => {
  const cycles: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (file: string, trail: string[]) => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'visiting') {
      cycles.push([...trail.slice(trail.indexOf(file)), file].join(' → '))
      return
    }
    state.set(file, 'visiting')
    for (const target of graph.get(file) ?? []) visit(target, [...trail, file])
    state.set(file, 'done')
  }
  for (const file of graph.keys()) visit(file, [])
  t.same(cycles, [])
})
