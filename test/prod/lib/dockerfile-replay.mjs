// Replays a Dockerfile's COPY and RUN instructions on this machine, without
// Docker, so that CI runs the image's own build steps (npm ci, npm run build,
// npm prune) and then the API from exactly the files the runtime
// image would hold. Used by the prod test (test/prod/).
//
// What it understands: ARG (defaults),
// FROM <image|stage> [AS name], WORKDIR, ENV, COPY [--from=stage] [--chown=..]
// src... dest, RUN (shell form), USER, EXPOSE, HEALTHCHECK [opts] CMD [json],
// STOPSIGNAL, CMD [json]. Each stage gets a directory standing for its root
// file system; absolute paths in the Dockerfile are taken inside it. The base
// image itself is not replayed: RUN uses this machine's node and npm.
// COPY from the build context honours .dockerignore (the common subset of its
// syntax: *, **, ?, leading !, directory prefixes).
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join, posix, relative } from 'node:path'
import process from 'node:process'

export function parseDockerfile (text) {
  const lines = []
  let cur = ''
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '')
    if (!cur && /^\s*#/.test(line)) continue
    if (/\\\s*$/.test(line)) {
      cur += line.replace(/\\\s*$/, ' ')
      continue
    }
    cur += line
    if (cur.trim()) lines.push(cur.trim())
    cur = ''
  }
  if (cur.trim()) lines.push(cur.trim())

  const globalArgs = {}
  const stages = []
  for (const line of lines) {
    const m = line.match(/^(\w+)\s*(.*)$/s)
    if (!m) throw new Error(`Dockerfile: cannot parse line: ${line}`)
    const op = m[1].toUpperCase()
    const rest = m[2].trim()
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=')
      globalArgs[k.trim()] = v === undefined ? '' : v.trim()
      continue
    }
    if (op === 'FROM') {
      const fm = rest.match(/^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i)
      if (!fm) throw new Error(`Dockerfile: cannot parse FROM ${rest}`)
      const from = fm[1].replace(/\$\{?(\w+)\}?/g, (_, k) => globalArgs[k] ?? '')
      stages.push({ name: fm[2] ?? String(stages.length), from, ops: [] })
      continue
    }
    if (stages.length === 0) throw new Error(`Dockerfile: ${op} before FROM`)
    stages.at(-1).ops.push({ op, rest })
  }
  return { globalArgs, stages }
}

function splitFlags (rest) {
  const flags = {}
  let s = rest
  for (;;) {
    const m = s.match(/^--([\w-]+)(?:=(\S+))?\s+/)
    if (!m) break
    flags[m[1]] = m[2] ?? true
    s = s.slice(m[0].length)
  }
  return { flags, rest: s.trim() }
}

function parseExecForm (s) {
  try {
    const v = JSON.parse(s)
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v
  } catch {
    /* fall through */
  }
  return ['/bin/sh', '-c', s] // shell form
}

function parseEnv (rest) {
  const env = {}
  if (!rest.includes('=')) {
    const [k, ...v] = rest.split(/\s+/)
    env[k] = v.join(' ')
    return env
  }
  for (const m of rest.matchAll(/(\w+)=("([^"]*)"|\S*)/g)) env[m[1]] = m[3] ?? m[2]
  return env
}

// ---- .dockerignore ---------------------------------------------------------
function globToRegExp (glob) {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++
        if (glob[i + 1] === '/') {
          i++
          re += '(?:.*/)?'
        } else re += '.*'
      } else re += '[^/]*'
    } else if (c === '?') re += '[^/]'
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

export function loadDockerignore (contextDir) {
  const file = join(contextDir, '.dockerignore')
  const rules = []
  if (existsSync(file)) {
    for (let line of readFileSync(file, 'utf8').split('\n')) {
      line = line.trim()
      if (!line || line.startsWith('#')) continue
      const negate = line.startsWith('!')
      if (negate) line = line.slice(1).trim()
      line = posix.normalize(line.replace(/^\/+/, '')).replace(/\/+$/, '')
      rules.push({ negate, re: globToRegExp(line) })
    }
  }
  // Docker: a path is excluded when the last matching rule (on the path or on
  // one of its parent directories) is not a negation.
  return (relPath) => {
    const parts = relPath.split('/')
    let excluded = false
    for (const { negate, re } of rules) {
      for (let n = 1; n <= parts.length; n++) {
        if (re.test(parts.slice(0, n).join('/'))) {
          excluded = !negate
          break
        }
      }
    }
    return excluded
  }
}

// ---- replay -----------------------------------------------------------------
function listMatches (contextDir, srcPattern) {
  const clean = posix.normalize(srcPattern.replace(/^\.\//, '')).replace(/\/+$/, '')
  if (clean === '.') return ['.']
  if (!/[*?]/.test(clean)) return existsSync(join(contextDir, clean)) ? [clean] : []
  const dir = posix.dirname(clean)
  const re = globToRegExp(posix.basename(clean))
  if (/[*?]/.test(dir)) throw new Error(`COPY: wildcards only in the last path element: ${srcPattern}`)
  const abs = join(contextDir, dir)
  if (!existsSync(abs)) return []
  return readdirSync(abs)
    .filter((n) => re.test(n))
    .sort()
    .map((n) => (dir === '.' ? n : `${dir}/${n}`))
}

function copyFromContext (contextDir, isIgnored, rel, destAbs, destIsDir) {
  const srcAbs = join(contextDir, rel)
  const st = statSync(srcAbs)
  if (st.isDirectory()) {
    // The contents of the directory are copied, as Docker does.
    let n = 0
    const walk = (relDir, toDir) => {
      mkdirSync(toDir, { recursive: true })
      for (const name of readdirSync(join(contextDir, relDir))) {
        const r = relDir === '.' ? name : `${relDir}/${name}`
        if (isIgnored(r)) continue
        const s = lstatSync(join(contextDir, r))
        if (s.isDirectory()) walk(r, join(toDir, name))
        else {
          cpSync(join(contextDir, r), join(toDir, name), { verbatimSymlinks: true })
          n++
        }
      }
    }
    walk(rel, destAbs)
    return n
  }
  const target = destIsDir ? join(destAbs, basename(rel)) : destAbs
  mkdirSync(dirname(target), { recursive: true })
  cpSync(srcAbs, target)
  return 1
}

function sh (cmd, cwd, env, log) {
  const r = spawnSync('/bin/sh', ['-c', cmd], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 })
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`
  log(out.trimEnd().split('\n').filter((l) => !/npm warn (EBADENGINE|Unknown user config)/.test(l)).slice(-6).map((l) => `      ${l}`).join('\n'))
  if (r.status !== 0) throw new Error(`RUN ${cmd}: exit ${r.status ?? r.signal}\n${out.slice(-4000)}`)
}

/**
 * Replays `target` (default: the last stage) of `dockerfilePath` with build
 * context `contextDir`, into fresh directories under `workDir`.
 * Returns { root, workdir, appDir, env, user, cmd, healthcheck, stages }.
 */
export function replayDockerfile ({ dockerfilePath, contextDir, workDir, target, log = () => {}, env = process.env }) {
  const { stages } = parseDockerfile(readFileSync(dockerfilePath, 'utf8'))
  const byName = new Map(stages.map((s) => [s.name, s]))
  const targetStage = target ? byName.get(target) : stages.at(-1)
  if (!targetStage) throw new Error(`Dockerfile: no stage ${target}`)

  // Stages the target needs, and how many needed stages build FROM each.
  const needed = new Set()
  const children = new Map()
  const need = (s) => {
    if (needed.has(s.name)) return
    needed.add(s.name)
    if (byName.has(s.from)) {
      children.set(s.from, (children.get(s.from) ?? 0) + 1)
      need(byName.get(s.from))
    }
    for (const o of s.ops) {
      const f = o.op === 'COPY' && splitFlags(o.rest).flags.from
      if (f) {
        if (!byName.has(f)) throw new Error(`COPY --from=${f}: only stages are supported`)
        need(byName.get(f))
      }
    }
  }
  need(targetStage)

  const isIgnored = loadDockerignore(contextDir)
  const state = new Map()
  for (const stage of stages) {
    if (!needed.has(stage.name)) continue
    log(`  stage ${stage.name} (FROM ${stage.from})`)
    let st
    if (byName.has(stage.from)) {
      const parent = state.get(stage.from)
      const root = join(workDir, stage.name)
      if (children.get(stage.from) === 1) {
        spawnSync('mv', [parent.root, root]) // the only child takes it over
      } else {
        const r = spawnSync('cp', ['-a', parent.root, root])
        if (r.status !== 0) throw new Error(`cannot copy stage ${stage.from}`)
      }
      st = { ...parent, root, env: { ...parent.env } }
    } else {
      const root = join(workDir, stage.name)
      mkdirSync(root, { recursive: true })
      st = { root, workdir: '/', env: {}, user: 'root', cmd: null, healthcheck: null, from: stage.from }
    }
    const abs = (p) => join(st.root, p.startsWith('/') ? p : posix.join(st.workdir, p))
    for (const { op, rest } of stage.ops) {
      switch (op) {
        case 'WORKDIR':
          st.workdir = rest.startsWith('/') ? rest : posix.join(st.workdir, rest)
          mkdirSync(abs(st.workdir), { recursive: true })
          break
        case 'ENV':
          Object.assign(st.env, parseEnv(rest))
          break
        case 'USER':
          st.user = rest
          break
        case 'CMD':
          st.cmd = parseExecForm(rest)
          break
        case 'HEALTHCHECK': {
          const { rest: r } = splitFlags(rest)
          st.healthcheck = r.toUpperCase() === 'NONE' ? null : parseExecForm(r.replace(/^CMD\s+/i, ''))
          break
        }
        case 'ARG':
        case 'EXPOSE':
        case 'STOPSIGNAL':
        case 'LABEL':
          break
        case 'RUN': {
          log(`    RUN ${rest}`)
          sh(rest, abs(st.workdir), { ...env, ...st.env }, log)
          break
        }
        case 'COPY': {
          const { flags, rest: r } = splitFlags(rest)
          const parts = r.startsWith('[') ? JSON.parse(r) : r.split(/\s+/)
          const dest = parts.pop()
          const destAbs = abs(dest)
          const destIsDir = dest.endsWith('/') || dest === '.' || parts.length > 1
          log(`    COPY ${r}${flags.from ? ` (from ${flags.from})` : ''}`)
          if (flags.from) {
            const fromRoot = state.get(flags.from).root
            for (const src of parts) {
              const s = join(fromRoot, src)
              if (!existsSync(s)) throw new Error(`COPY --from=${flags.from} ${src}: not found`)
              const t = destIsDir && !statSync(s).isDirectory() ? join(destAbs, basename(src)) : destAbs
              mkdirSync(dirname(t), { recursive: true })
              // Same file system: hard links are as good as a copy here and fast.
              const c = statSync(s).isDirectory()
                ? spawnSync('sh', ['-c', 'mkdir -p "$2" && cp -al "$1"/. "$2"/ 2>/dev/null || cp -a "$1"/. "$2"/', 'sh', s, t])
                : spawnSync('cp', ['-a', s, t])
              if (c.status !== 0) throw new Error(`COPY --from=${flags.from} ${src}: copy failed ${c.stderr}`)
            }
          } else {
            for (const pattern of parts) {
              const matches = listMatches(contextDir, pattern).filter((m) => m === '.' || !isIgnored(m))
              if (matches.length === 0) {
                throw new Error(`COPY ${pattern}: not found in the build context (missing, or excluded by .dockerignore)`)
              }
              for (const m of matches) copyFromContext(contextDir, isIgnored, m, destAbs, destIsDir || matches.length > 1)
            }
          }
          break
        }
        default:
          throw new Error(`Dockerfile replay: unsupported instruction ${op}`)
      }
    }
    state.set(stage.name, st)
  }
  const st = state.get(targetStage.name)
  return {
    root: st.root,
    workdir: st.workdir,
    appDir: join(st.root, st.workdir),
    env: st.env,
    user: st.user,
    cmd: st.cmd,
    healthcheck: st.healthcheck,
    stages: [...needed],
    relative: (p) => relative(st.root, p),
  }
}
