// curl against 127.0.0.1, for requests node's http client would not send as
// they are (a 20 kB URI or header line).
import { spawnSync } from 'node:child_process'

/** Returns { status, headers, text, json } of the final answer. */
export function curl (port, path, args = [], { timeoutS = 10 } = {}) {
  const r = spawnSync('curl', ['-sS', '-i', '--max-time', String(timeoutS), ...args, `http://127.0.0.1:${port}${path}`],
    { encoding: 'utf8', maxBuffer: 16 << 20 })
  const out = r.stdout ?? ''
  const at = out.indexOf('\r\n\r\n')
  const head = at >= 0 ? out.slice(0, at) : out
  const text = at >= 0 ? out.slice(at + 4) : ''
  const headers = {}
  for (const line of head.split('\r\n').slice(1)) {
    const i = line.indexOf(':')
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: Number(head.match(/^HTTP\/[\d.]+ (\d{3})/)?.[1] ?? 0), headers, text, json, stderr: r.stderr }
}
