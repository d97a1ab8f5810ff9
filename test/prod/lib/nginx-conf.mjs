// A small reader for nginx configuration files: enough to find directives by
// name (with their block, e.g. "server" inside "upstream") and to replace them
// in the text, leaving everything else (comments, layout) as it was.
//
// The prod test uses it to make its throw-away copy of nginx/: the same files,
// with only the directives that name this machine's resources changed (pid and
// log paths, listen ports, the upstream servers, certificate paths).
import { basename, posix } from 'node:path'

/** Splits nginx syntax into words (quoted or not), '{', '}' and ';', with offsets. */
export function tokenize (text) {
  const tokens = []
  let i = 0
  const lineOf = (pos) => text.slice(0, pos).split('\n').length
  while (i < text.length) {
    const c = text[i]
    if (/\s/.test(c)) {
      i++
    } else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++
    } else if (c === '{' || c === '}' || c === ';') {
      tokens.push({ type: c, start: i, end: i + 1 })
      i++
    } else if (c === '"' || c === "'") {
      const start = i
      let value = ''
      i++
      while (i < text.length && text[i] !== c) {
        if (text[i] === '\\' && i + 1 < text.length) {
          value += text[i] + text[i + 1]
          i += 2
        } else value += text[i++]
      }
      if (i >= text.length) throw new Error(`nginx config: unterminated string from line ${lineOf(start)}`)
      i++
      tokens.push({ type: 'word', value, quoted: true, start, end: i })
    } else {
      const start = i
      while (i < text.length && !/[\s;{}]/.test(text[i])) {
        if (text[i] === '\\' && i + 1 < text.length) i += 2
        else if (text[i] === '$' && text[i + 1] === '{') {
          const close = text.indexOf('}', i)
          if (close < 0) throw new Error(`nginx config: unterminated \${ on line ${lineOf(i)}`)
          i = close + 1
        } else i++
      }
      tokens.push({ type: 'word', value: text.slice(start, i), start, end: i })
    }
  }
  return { tokens, lineOf }
}

/**
 * Parses into directives: { name, args, start, end, line, children? }, where
 * [start, end) is the directive's text from its name to its ';' or closing '}'.
 */
export function parseNginx (text) {
  const { tokens, lineOf } = tokenize(text)
  let k = 0
  const block = (depth) => {
    const list = []
    while (k < tokens.length) {
      const tk = tokens[k]
      if (tk.type === '}') {
        if (depth === 0) throw new Error(`nginx config: unexpected '}' on line ${lineOf(tk.start)}`)
        k++
        return list
      }
      if (tk.type !== 'word') throw new Error(`nginx config: unexpected '${tk.type}' on line ${lineOf(tk.start)}`)
      const d = { name: tk.value, args: [], start: tk.start, line: lineOf(tk.start) }
      k++
      while (k < tokens.length && tokens[k].type === 'word') d.args.push(tokens[k++].value)
      const stop = tokens[k]
      if (!stop) throw new Error(`nginx config: "${d.name}" on line ${d.line} is not terminated`)
      k++
      if (stop.type === ';') d.end = stop.end
      else if (stop.type === '{') {
        d.children = block(depth + 1)
        d.end = tokens[k - 1].end
      } else throw new Error(`nginx config: unexpected '}' after "${d.name}" on line ${d.line}`)
      list.push(d)
    }
    if (depth > 0) throw new Error('nginx config: a block is not closed')
    return list
  }
  return block(0)
}

/** Calls fn(directive, parents) for every directive, depth first, in file order. */
export function walk (directives, fn, parents = []) {
  for (const d of directives) {
    fn(d, parents)
    if (d.children) walk(d.children, fn, [...parents, d])
  }
}

/** All directives named `name` (optionally: whose innermost block is named `inside`). */
export function findDirectives (text, name, inside) {
  const out = []
  walk(parseNginx(text), (d, parents) => {
    if (d.name === name && (inside === undefined || parents.at(-1)?.name === inside)) out.push({ ...d, parents: parents.map((p) => p.name) })
  })
  return out
}

/**
 * Replaces directives: fn(directive, parents) returns the new text for that
 * directive (from its name to its ';'), or undefined to keep it. Returns the new
 * text and the names of the directives replaced.
 */
export function rewriteNginx (text, fn) {
  const edits = []
  walk(parseNginx(text), (d, parents) => {
    if (edits.some((e) => d.start >= e.start && d.end <= e.end)) return // inside a replaced block
    const r = fn(d, parents)
    if (r !== undefined) edits.push({ start: d.start, end: d.end, text: r, name: d.name })
  })
  let out = text
  for (const e of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end)
  return { text: out, replaced: edits.map((e) => e.name) }
}

/** The port of a listen directive's first argument: "80", "127.0.0.1:8080", "[::]:443". */
export function listenPort (arg) {
  const m = String(arg).match(/(?:^|:)(\d+)$/)
  return m ? Number(m[1]) : undefined
}

/** The nginx version as [major, minor, patch] from `nginx -v` output. */
export function parseNginxVersion (text) {
  const m = String(text).match(/nginx\/(\d+)\.(\d+)\.(\d+)/)
  return m ? m.slice(1).map(Number) : undefined
}
export const versionAtLeast = (v, min) => {
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i] > min[i]
  return true
}

/**
 * This machine's copy of one nginx config file. Changed, by directive name:
 * - pid, and error_log / access_log file paths: into `dir`;
 * - listen: the port mapped through `ports` ({ 1337: 41234, ... }) on 127.0.0.1,
 *   other parameters (default_server, ssl) kept;
 * - server inside upstream NAME: replaced by one server line per address in
 *   `upstreams[NAME]`, parameters kept, less "resolve" when `dropResolve`
 *   (nginx before 1.27.3 does not know it);
 * - ssl_certificate / ssl_certificate_key: `tls.cert` / `tls.key`.
 * `include` paths are left alone: relative ones resolve against the directory of
 * the main file, so the copy keeps nginx/'s layout.
 */
export function localNginxConfig (text, { dir, ports = {}, upstreams = {}, dropResolve = false, tls } = {}) {
  const keepParams = (args) => args.slice(1).filter((a) => !(dropResolve && a === 'resolve'))
  const seenUpstream = new Set()
  return rewriteNginx(text, (d, parents) => {
    const parent = parents.at(-1)
    switch (d.name) {
      case 'pid':
        return `pid ${dir}/nginx.pid;`
      case 'error_log':
      case 'access_log': {
        const [file, ...rest] = d.args
        if (!file || file === 'off' || file === 'stderr' || file.startsWith('syslog:')) return undefined
        return `${d.name} ${posix.join(dir, basename(file))}${rest.length ? ` ${rest.map(quoteIfNeeded).join(' ')}` : ''};`
      }
      case 'listen': {
        const port = listenPort(d.args[0])
        if (!(port in ports)) throw new Error(`nginx config line ${d.line}: no local port given for "listen ${d.args[0]}"`)
        return ['listen', `127.0.0.1:${ports[port]}`, ...d.args.slice(1)].join(' ') + ';'
      }
      case 'server': {
        if (parent?.name !== 'upstream') return undefined
        const name = parent.args[0]
        const addrs = upstreams[name]
        if (!addrs) throw new Error(`nginx config line ${d.line}: no local servers given for upstream ${name}`)
        if (seenUpstream.has(name)) return '' // the first server line stands for all of them
        seenUpstream.add(name)
        return addrs.map((a, i) => `${i ? '\n        ' : ''}server ${[a, ...keepParams(d.args)].join(' ')};`).join('')
      }
      case 'ssl_certificate':
      case 'ssl_certificate_key':
        if (!tls) throw new Error(`nginx config line ${d.line}: ${d.name} needs a local certificate`)
        return `${d.name} ${d.name === 'ssl_certificate' ? tls.cert : tls.key};`
      default:
        return undefined
    }
  })
}

const quoteIfNeeded = (a) => (/[\s;{}'"]/.test(a) ? `'${a.replace(/'/g, "\\'")}'` : a)

/**
 * The directives of two configs compared, leaving out the ignored ones: names
 * ("pid") or "block>name" ("upstream>server": a server line in an upstream, not
 * a server block). Returns the first difference as a string, or null.
 */
export function diffIgnoring (a, b, ignored) {
  const isIgnored = (d, parents) =>
    ignored.some((e) => (e.includes('>') ? e === `${parents.at(-1)?.name}>${d.name}` : e === d.name))
  const flat = (text) => {
    const out = []
    walk(parseNginx(text), (d, parents) => {
      if (!isIgnored(d, parents)) out.push(`${parents.map((p) => p.name).join('/')}/${d.name} ${d.args.join(' ')}`)
    })
    return out
  }
  const x = flat(a)
  const y = flat(b)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] !== y[i]) return `${x[i] ?? '(nothing)'} <> ${y[i] ?? '(nothing)'}`
  }
  return null
}
